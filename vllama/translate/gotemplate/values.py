"""Go values as Ollama's templates see them, and how Go prints them by themselves.

The structs, maps and slices Ollama hands its templates (they print as their JSON), Go's
truth and type names, `%v` printing (shortest floats, maps in key order), `strconv.Quote`,
and `json.Marshal` as Go does it (HTML-safe, structs in field order). The value types and
the JSON encoder refer to each other, so they live together.

Pure: standard library only.
"""

from __future__ import annotations

import json as _stdjson
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# --- values ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Struct:
    """A Go struct Ollama hands its templates (a tool, its function, parameters, properties):
    fields by their Go names for the template, and the JSON it marshals to (json tags,
    omitempty applied) for `json` and for printing. All print as their JSON, as Ollama's tool
    types do through their String methods; `{{ .Function }}` too, as api.ToolFunction's does
    and as templates such as Qwen 2.5's expect (Ollama's templateToolFunction lost it)."""

    type_name: str
    fields: Mapping[str, Any]
    json_fields: tuple[tuple[str, Any], ...]

    def __str__(self) -> str:
        return _to_json(self)


class _JSONObject(dict[str, Any]):
    """A Go map that prints as its JSON (Ollama's templateArgs and templateProperties); `nil`
    is Go's nil map: it prints "{}" and marshals to null."""

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        super().__init__(items or {})
        self.nil = items is None

    def __str__(self) -> str:
        return "{}" if self.nil else _to_json(self)


class _JSONList(list[Any]):
    """A Go slice that prints as its JSON (Ollama's templateTools); `nil` prints null."""

    def __init__(self, items: Iterable[Any] | None = None) -> None:
        super().__init__(items or ())
        self.nil = items is None

    def __str__(self) -> str:
        return _to_json(self)


class _StructDict(dict[str, Any]):
    """A Go struct without json tags as a dict of its fields (Ollama's templateMessage and
    templateToolCall): `json` keeps the field order, where a plain dict, a Go map, is sorted."""


class _PropertyType(tuple[str, ...]):
    """Ollama's api.PropertyType: a JSON schema type, one name or several."""

    def __str__(self) -> str:
        if len(self) < 2:
            return "".join(self)
        return "[" + " ".join(self) + "]"


_STRINGERS = (_Struct, _JSONObject, _JSONList, _PropertyType)


_MISSING: Any = object()


def _is_true(value: Any) -> bool:
    """Go's truth: false, 0, nil and empty strings, slices and maps are false; structs are true."""
    if value is None or value is _MISSING:
        return False
    if isinstance(value, (bool, int, float)):
        return value != 0
    if isinstance(value, (str, list, tuple, Mapping)):
        return len(value) > 0
    return True


def _sorted_keys(mapping: Mapping[Any, Any]) -> list[Any]:
    try:
        return sorted(mapping)
    except TypeError:
        return sorted(mapping, key=str)


def _type_name(value: Any) -> str:
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, _Struct):
        return value.type_name
    if isinstance(value, Mapping):
        return "map[string]interface {}"
    if isinstance(value, (list, tuple)):
        return "[]interface {}"
    return type(value).__name__


# --- formatting (Go's fmt) -------------------------------------------------------------------


def _shortest(x: float) -> tuple[str, int]:
    """The shortest digits that round-trip a positive float, and where the decimal point
    goes: x == 0.DIGITS * 10**point."""
    _, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    text = "".join(map(str, digits))
    assert isinstance(exponent, int)
    return text, len(text) + exponent


def _digits_e(digits: str, point: int, upper: bool = False) -> str:
    exp = point - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{mantissa}{'E' if upper else 'e'}{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _digits_f(digits: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + digits
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def _float_special(x: float) -> str | None:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return None


def _float_v(x: float) -> str:
    """Go's %v (strconv 'g', shortest) of a float64."""
    special = _float_special(x)
    if special is not None:
        return special
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    digits, point = _shortest(abs(x))
    sign = "-" if x < 0 else ""
    if not -4 <= point - 1 < 6:  # shortest 'g' decides with precision 6
        return sign + _digits_e(digits, point)
    return sign + _digits_f(digits, point)


def _fmt_v(value: Any) -> str:
    """Go's %v of a value (fmt.Sprint of one operand)."""
    if value is None or value is _MISSING:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_v(value)
    if isinstance(value, str):
        return value
    if isinstance(value, _STRINGERS):
        return str(value)
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{_fmt_v(k)}:{_fmt_v(value[k])}" for k in _sorted_keys(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_fmt_v(v) for v in value) + "]"
    return str(value)


def _sprint(args: Sequence[Any]) -> str:
    out: list[str] = []
    for i, arg in enumerate(args):
        if i > 0 and not isinstance(arg, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(_fmt_v(arg))
    return "".join(out)


def _go_quote(text: str) -> str:
    """strconv.Quote."""
    out = ['"']
    named = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in named:
            out.append(named[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


# --- JSON (Go's encoding/json) ---------------------------------------------------------------


def _json_float(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        raise ValueError(f"json: unsupported value: {_float_v(x)}")
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    digits, point = _shortest(abs(x))
    sign = "-" if x < 0 else ""
    if abs(x) < 1e-6 or abs(x) >= 1e21:
        text = _digits_e(digits, point)
        return sign + re.sub(r"e-0(\d)$", r"e-\1", text)
    return sign + _digits_f(digits, point)


def _json_string(text: str) -> str:
    encoded = _stdjson.dumps(text, ensure_ascii=False)
    return (
        encoded.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _to_json(value: Any) -> str:
    """json.Marshal: compact, HTML-safe; structs in field order, maps (dicts) in key order."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, _Struct):
        return "{" + ",".join(f"{_json_string(k)}:{_to_json(v)}" for k, v in value.json_fields) + "}"
    if isinstance(value, _PropertyType):
        return _to_json(value[0]) if len(value) == 1 else _to_json(list(value))
    if isinstance(value, (_JSONObject, _JSONList)) and value.nil:
        return "null"
    if isinstance(value, _StructDict):
        return "{" + ",".join(f"{_json_string(k)}:{_to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_json_string(_fmt_v(k))}:{_to_json(value[k])}" for k in _sorted_keys(value)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_to_json(v) for v in value) + "]"
    return _json_string(str(value))
