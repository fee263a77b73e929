"""Go's `fmt.Sprintf` for the `printf` template function: flags, width, precision and the
verbs of each kind of value, with Go's `%!verb(...)` complaints.

Pure: standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vllama.translate.gotemplate.values import (
    _STRINGERS,
    _float_special,
    _float_v,
    _fmt_v,
    _go_quote,
    _sorted_keys,
    _type_name,
)


@dataclass(slots=True)
class _Spec:
    minus: bool = False
    plus: bool = False
    sharp: bool = False
    space: bool = False
    zero: bool = False
    width: int | None = None
    precision: int | None = None


def _pad(text: str, spec: _Spec, numeric: bool = False) -> str:
    if spec.width is None or len(text) >= spec.width:
        return text
    fill = spec.width - len(text)
    if spec.minus:
        return text + " " * fill
    if spec.zero:
        if numeric and text[:1] in ("+", "-", " "):
            return text[0] + "0" * fill + text[1:]
        return "0" * fill + text
    return " " * fill + text


def _bad_verb(verb: str, value: Any) -> str:
    if value is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({_type_name(value)}={_fmt_v(value)})"


def _fmt_arg(value: Any, verb: str, spec: _Spec) -> str:
    """Go's fmt of one operand with a verb of printf."""
    if verb == "T":
        return _pad(_type_name(value), spec)
    if value is None:
        return _pad("<nil>", spec) if verb == "v" else _bad_verb(verb, value)
    if isinstance(value, _STRINGERS) and verb in "vsqxX":
        return _fmt_arg(str(value), verb, spec)
    if isinstance(value, bool):
        if verb in "vt":
            return _pad("true" if value else "false", spec)
        return _bad_verb(verb, value)
    if isinstance(value, int):
        return _fmt_int(value, verb, spec)
    if isinstance(value, float):
        return _fmt_float(value, verb, spec)
    if isinstance(value, str):
        if verb in "vs":
            text = value if spec.precision is None else value[: spec.precision]
            return _pad(text, spec)
        if verb == "q":
            return _pad(_go_quote(value), spec)
        if verb in "xX":
            text = value.encode().hex()
            return _pad(text.upper() if verb == "X" else text, spec)
        return _bad_verb(verb, value)
    if isinstance(value, Mapping):
        parts = (f"{_fmt_arg(k, verb, spec)}:{_fmt_arg(value[k], verb, spec)}" for k in _sorted_keys(value))
        return "map[" + " ".join(parts) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_fmt_arg(v, verb, spec) for v in value) + "]"
    if verb in "vs":
        return _pad(str(value), spec)
    return _bad_verb(verb, value)


def _fmt_int(value: int, verb: str, spec: _Spec) -> str:
    if verb == "c":
        return _pad(chr(value), spec)
    if verb == "q":
        return _pad("'" + _go_quote(chr(value))[1:-1].replace("'", "\\'").replace('\\"', '"') + "'", spec)
    if verb == "U":
        return _pad(f"U+{value:04X}", spec)
    bases = {"v": "d", "d": "d", "b": "b", "o": "o", "O": "o", "x": "x", "X": "X"}
    if verb not in bases:
        return _bad_verb(verb, value)
    digits = format(abs(value), bases[verb])
    if spec.precision is not None:
        digits = digits.zfill(spec.precision)
    prefix = ""
    if verb == "O" or (spec.sharp and verb == "o" and not digits.startswith("0")):
        prefix = "0o" if verb == "O" else "0"
    elif spec.sharp and verb in "bxX":
        prefix = {"b": "0b", "x": "0x", "X": "0X"}[verb]
    sign = "-" if value < 0 else ("+" if spec.plus else (" " if spec.space else ""))
    text = sign + prefix + digits
    if spec.precision is not None:
        return _pad(text, _Spec(minus=spec.minus, width=spec.width))
    return _pad(text, spec, numeric=True)


def _fmt_float(value: float, verb: str, spec: _Spec) -> str:
    if verb not in "veEfFgG":
        return _bad_verb(verb, value)
    special = _float_special(value)
    if special is not None:
        if special == "+Inf" and spec.space and not spec.plus:
            special = " Inf"
        return _pad(special, _Spec(minus=spec.minus, width=spec.width))
    if verb in "vgG" and spec.precision is None:
        text = _float_v(value)
        if verb == "G":
            text = text.upper()
    else:
        py_verb = {"v": "g", "F": "f"}.get(verb, verb)
        precision = 6 if spec.precision is None else spec.precision
        text = format(value, f".{precision}{py_verb}")
    if value >= 0 and not text.startswith("-"):
        text = ("+" if spec.plus else (" " if spec.space else "")) + text
    return _pad(text, spec, numeric=True)


_PRINTF_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d*))?(.)?", re.DOTALL)


def _sprintf(format_: str, args: Sequence[Any]) -> str:
    out: list[str] = []
    index = 0
    pos = 0
    while True:
        percent = format_.find("%", pos)
        if percent < 0:
            out.append(format_[pos:])
            break
        out.append(format_[pos:percent])
        match = _PRINTF_VERB.match(format_, percent)
        assert match is not None
        flags, width, precision, verb = match.groups()
        pos = match.end()
        if verb is None:
            out.append("%!(NOVERB)")
            break
        if verb == "%":
            out.append("%")
            continue
        spec = _Spec(
            minus="-" in flags,
            plus="+" in flags,
            sharp="#" in flags,
            space=" " in flags,
            zero="0" in flags and "-" not in flags,
            width=int(width) if width else None,
            precision=(int(precision) if precision else 0) if precision is not None else None,
        )
        if index >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        value = args[index]
        index += 1
        if verb == "v" and spec.sharp and isinstance(value, str):
            out.append(_pad(_go_quote(value), spec))
        else:
            out.append(_fmt_arg(value, verb, spec))
    if index < len(args):
        extra = ", ".join(f"{_type_name(a)}={_fmt_v(a)}" if a is not None else "<nil>" for a in args[index:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)
