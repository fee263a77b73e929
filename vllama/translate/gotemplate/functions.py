"""The functions a template may call: Go's built-ins (`eq`, `index`, `printf`, `html`, ...)
and Ollama's (`json`, `currentDate`, `yesterdayDate`, `toTypeScriptType`). `and` and `or`
short-circuit, so the evaluator does them itself.

Pure: standard library only.
"""

from __future__ import annotations

import datetime
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vllama.translate.gotemplate.errors import _FuncError
from vllama.translate.gotemplate.printf import _sprintf
from vllama.translate.gotemplate.values import (
    _fmt_v,
    _is_true,
    _JSONList,
    _sprint,
    _Struct,
    _to_json,
    _type_name,
)

# --- functions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Func:
    fn: Callable[..., Any]
    min_args: int
    max_args: int | None


def _basic_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"


def _eq(first: Any, *others: Any) -> bool:
    if not others:
        raise _FuncError("missing argument for comparison")
    k1 = _basic_kind(first)
    for other in others:
        k2 = _basic_kind(other)
        if k1 != k2:
            if first is not None and other is not None:
                raise _FuncError("incompatible types for comparison")
            truth = False
        elif k1 == "other":
            if first is None or other is None:
                truth = first is None and other is None
            elif isinstance(first, (list, tuple, Mapping, _Struct)) or isinstance(
                other, (list, tuple, Mapping, _Struct)
            ):
                raise _FuncError(f"non-comparable type {_fmt_v(first)}: {_type_name(first)}")
            else:
                truth = first == other
        else:
            truth = first == other
        if truth:
            return True
    return False


def _ne(first: Any, second: Any) -> bool:
    return not _eq(first, second)


def _lt(first: Any, second: Any) -> bool:
    k1, k2 = _basic_kind(first), _basic_kind(second)
    if k1 in ("other", "bool") or k2 in ("other", "bool"):
        raise _FuncError("invalid type for comparison")
    if k1 != k2:
        raise _FuncError("incompatible types for comparison")
    return bool(first < second)


def _le(first: Any, second: Any) -> bool:
    return _lt(first, second) or _eq(first, second)


def _gt(first: Any, second: Any) -> bool:
    return not _le(first, second)


def _ge(first: Any, second: Any) -> bool:
    return not _lt(first, second)


def _not(value: Any) -> bool:
    return not _is_true(value)


def _len(value: Any) -> int:
    if value is None:
        raise _FuncError("len of nil pointer")
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, (list, tuple, Mapping)):
        return len(value)
    raise _FuncError(f"len of type {_type_name(value)}")


def _index_arg(index: Any, size: int) -> int:
    if index is None:
        raise _FuncError("cannot index slice/array with nil")
    if isinstance(index, bool) or not isinstance(index, int):
        raise _FuncError(f"cannot index slice/array with type {_type_name(index)}")
    if index < 0 or index > size:
        raise _FuncError(f"index out of range: {index}")
    return index


def _index(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise _FuncError("index of untyped nil")
    for index in indexes:
        if item is None:
            raise _FuncError("index of nil pointer")
        if isinstance(item, (str, list, tuple)):
            sequence: Any = item.encode() if isinstance(item, str) else item
            i = _index_arg(index, len(sequence))
            if i == len(sequence):
                raise _FuncError(f"index out of range: {i}")
            item = sequence[i]
        elif isinstance(item, Mapping):
            if not isinstance(index, str) and (not isinstance(index, (int, float)) or index not in item):
                raise _FuncError(f"value has type {_type_name(index)}; should be string")
            item = item.get(index)
        else:
            raise _FuncError(f"can't index item of type {_type_name(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None:
        raise _FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise _FuncError(f"too many slice indexes: {len(indexes)}")
    if isinstance(item, str):
        if len(indexes) == 3:
            raise _FuncError("cannot 3-index slice a string")
        sequence: Any = item.encode()
    elif isinstance(item, (list, tuple)):
        sequence = item
    else:
        raise _FuncError(f"can't slice item of type {_type_name(item)}")
    bounds = [0, len(sequence)]
    for i, index in enumerate(indexes):
        value = _index_arg(index, len(sequence))
        if i < 2:
            bounds[i] = value
    if bounds[0] > bounds[1]:
        raise _FuncError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    if len(indexes) == 3 and bounds[1] > indexes[2]:
        raise _FuncError(f"invalid slice index: {bounds[1]} > {indexes[2]}")
    result = sequence[bounds[0] : bounds[1]]
    if isinstance(item, str):
        return result.decode("utf-8", errors="replace")
    return _JSONList(list(result)) if isinstance(item, _JSONList) else list(result)


def _printf(format_: Any, *args: Any) -> str:
    if not isinstance(format_, str):
        raise _FuncError(f"wrong type for value; expected string; got {_type_name(format_)}")
    return _sprintf(format_, args)


def _println(*args: Any) -> str:
    return " ".join(_fmt_v(a) for a in args) + "\n"


def _text_of(args: Sequence[Any]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return _sprint(args)


def _html(*args: Any) -> str:
    text = _text_of(args)
    return (
        text.replace("&", "&amp;")
        .replace("'", "&#39;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("\x00", "\ufffd")
    )


def _js(*args: Any) -> str:
    out: list[str] = []
    escapes = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E", "&": "\\u0026", "=": "\\u003D"}
    escapes["`"] = "\\u0060"
    for ch in _text_of(args):
        if ch in escapes:
            out.append(escapes[ch])
        elif ord(ch) < 0x20 or (not ch.isprintable() and ch != " "):
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def _urlquery(*args: Any) -> str:
    return urllib.parse.quote_plus(_text_of(args), safe="")


def _json_func(value: Any) -> str:
    try:
        return _to_json(value)
    except ValueError:
        return ""  # Ollama ignores json.Marshal's error


def _date_args(args: Sequence[Any]) -> None:
    for arg in args:
        if not isinstance(arg, str):
            raise _FuncError(f"wrong type for value; expected string; got {_type_name(arg)}")


def _current_date(*args: Any) -> str:
    _date_args(args)
    return datetime.date.today().isoformat()


def _yesterday_date(*args: Any) -> str:
    _date_args(args)
    return (datetime.date.today() - datetime.timedelta(days=1)).isoformat()


_TS_TYPES = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "array": "any[]",
    "object": "Record<string, any>",
    "null": "null",
}


def _to_typescript_type(value: Any) -> str:
    if not isinstance(value, _Struct) or value.type_name != "ToolProperty":
        return "any"
    any_of = value.fields["AnyOf"]
    if any_of:
        return " | ".join(_to_typescript_type(p) for p in any_of)
    types = value.fields["Type"]
    if not types:
        return "any"
    return " | ".join(_TS_TYPES.get(t, "any") for t in types)


_FUNCS: dict[str, _Func] = {
    "eq": _Func(_eq, 1, None),
    "ne": _Func(_ne, 2, 2),
    "lt": _Func(_lt, 2, 2),
    "le": _Func(_le, 2, 2),
    "gt": _Func(_gt, 2, 2),
    "ge": _Func(_ge, 2, 2),
    "not": _Func(_not, 1, 1),
    "len": _Func(_len, 1, 1),
    "index": _Func(_index, 1, None),
    "slice": _Func(_slice, 1, None),
    "print": _Func(lambda *args: _sprint(args), 0, None),
    "printf": _Func(_printf, 1, None),
    "println": _Func(_println, 0, None),
    "html": _Func(_html, 0, None),
    "js": _Func(_js, 0, None),
    "urlquery": _Func(_urlquery, 0, None),
    # Ollama's
    "json": _Func(_json_func, 1, 1),
    "currentDate": _Func(_current_date, 0, None),
    "yesterdayDate": _Func(_yesterday_date, 0, None),
    "toTypeScriptType": _Func(_to_typescript_type, 1, 1),
}
