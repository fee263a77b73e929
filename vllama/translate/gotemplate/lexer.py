"""Go's text/template lexer: text, actions and their tokens (trim markers, comments), and
Go's string, character and number literals.

Pure: standard library only.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from vllama.translate.gotemplate.errors import _fail
from vllama.translate.gotemplate.values import _go_quote

# --- lexer -----------------------------------------------------------------------------------

_SPACE_CHARS = " \t\r\n"
_KEYWORDS = frozenset({"block", "break", "continue", "define", "else", "end", "if", "range", "nil", "template", "with"})


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # text, ldelim, rdelim, space, field, dot, variable, ident, keyword, bool, number,
    # string, pipe, declare, assign, lparen, rparen, char, eof
    value: Any
    pos: int
    raw: str = ""

    def describe(self) -> str:
        if self.kind == "eof":
            return "EOF"
        if self.kind == "rdelim":
            return '"}}"'
        if self.kind == "keyword":
            return f"<{self.value}>"
        return _go_quote(self.raw if len(self.raw) <= 20 else self.raw[:20] + "...")


def _is_space(ch: str) -> bool:
    return ch != "" and ch in _SPACE_CHARS


def _is_alnum(ch: str) -> bool:
    return ch == "_" or ch.isalnum()


_NUMBER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F_]*(?:\.[0-9a-fA-F_]*)?(?:[pP][+-]?[0-9_]+)?"
    r"|0[oO][0-7_]*|0[bB][01_]*"
    r"|[0-9_]*(?:\.[0-9_]*)?(?:[eE][+-]?[0-9_]+)?)i?"
)


class _Lexer:
    """Go's text/template lexer: text and the tokens of each action, trim markers applied,
    comments dropped. Lazy, so that errors come in source order as in Go."""

    def __init__(self, source: str) -> None:
        self.src = source

    def tokens(self) -> Iterator[_Token]:
        src = self.src
        n = len(src)
        i = 0
        trim_next = False
        while True:
            j = src.find("{{", i)
            end = n if j < 0 else j
            text = src[i:end]
            if trim_next:
                text = text.lstrip(_SPACE_CHARS)
            trim_left = j >= 0 and src[j + 2 : j + 3] == "-" and _is_space(src[j + 3 : j + 4])
            if trim_left:
                text = text.rstrip(_SPACE_CHARS)
            if text:
                yield _Token("text", text, end - len(text), text)
            if j < 0:
                yield _Token("eof", None, n)
                return
            k = j + (4 if trim_left else 2)
            if src.startswith("/*", k):
                close = src.find("*/", k + 2)
                if close < 0:
                    _fail(src, j, "unclosed comment")
                after = close + 2
                if src.startswith("}}", after):
                    i, trim_next = after + 2, False
                elif _is_space(src[after : after + 1]) and src.startswith("-}}", after + 1):
                    i, trim_next = after + 4, True
                else:
                    _fail(src, j, "comment ends before closing delimiter")
                continue
            yield _Token("ldelim", None, j, "{{")
            i, trim_next = yield from self._action(j, k)

    def _action(self, start: int, k: int) -> Generator[_Token, None, tuple[int, bool]]:
        """The tokens of one action from k; returns where the text after it starts and whether
        it is to be trimmed."""
        src = self.src
        n = len(src)
        depth = 0
        while True:
            if k >= n:
                _fail(src, start, "unclosed action")
            if src.startswith("}}", k):
                if depth:
                    _fail(src, k, "unclosed left paren")
                yield _Token("rdelim", None, k, "}}")
                return k + 2, False
            ch = src[k]
            if ch in _SPACE_CHARS:
                m = k
                while m < n and src[m] in _SPACE_CHARS:
                    m += 1
                if src.startswith("-}}", m):
                    if depth:
                        _fail(src, m, "unclosed left paren")
                    if m - 1 > k:
                        yield _Token("space", None, k, src[k : m - 1])
                    yield _Token("rdelim", None, m - 1, " -}}")
                    return m + 3, True
                yield _Token("space", None, k, src[k:m])
                k = m
            elif ch == "=":
                yield _Token("assign", None, k, "=")
                k += 1
            elif ch == ":":
                if src[k + 1 : k + 2] != "=":
                    _fail(src, k, "expected :=")
                yield _Token("declare", None, k, ":=")
                k += 2
            elif ch == "|":
                yield _Token("pipe", None, k, "|")
                k += 1
            elif ch == '"':
                m = k + 1
                while True:
                    if m >= n or src[m] == "\n":
                        _fail(src, k, "unterminated quoted string")
                    if src[m] == "\\":
                        m += 2
                        continue
                    if src[m] == '"':
                        break
                    m += 1
                raw = src[k : m + 1]
                yield _Token("string", _unquote(raw[1:-1], '"', src, k), k, raw)
                k = m + 1
            elif ch == "`":
                m = src.find("`", k + 1)
                if m < 0:
                    _fail(src, k, "unterminated raw quoted string")
                raw = src[k : m + 1]
                yield _Token("string", raw[1:-1].replace("\r", ""), k, raw)
                k = m + 1
            elif ch == "'":
                m = k + 1
                while True:
                    if m >= n or src[m] == "\n":
                        _fail(src, k, "unterminated character constant")
                    if src[m] == "\\":
                        m += 2
                        continue
                    if src[m] == "'":
                        break
                    m += 1
                raw = src[k : m + 1]
                value = _unquote(raw[1:-1], "'", src, k)
                if len(value) != 1:
                    _fail(src, k, f"malformed character constant: {raw}")
                yield _Token("number", ord(value), k, raw)
                k = m + 1
            elif ch == "$":
                m = k + 1
                while m < n and _is_alnum(src[m]):
                    m += 1
                self._terminated(m)
                yield _Token("variable", src[k:m], k, src[k:m])
                k = m
            elif ch == "." and not src[k + 1 : k + 2].isdigit():
                m = k + 1
                while m < n and _is_alnum(src[m]):
                    m += 1
                self._terminated(m)
                if m == k + 1:
                    yield _Token("dot", None, k, ".")
                else:
                    yield _Token("field", src[k + 1 : m], k, src[k:m])
                k = m
            elif ch in "+-." or ch.isdigit():
                match = _NUMBER.match(src, k)
                m = match.end() if match else k
                if m == k or (m < n and _is_alnum(src[m])) or src[m - 1 : m] in ("+", "-"):
                    _fail(src, k, f"bad number syntax: {_go_quote(src[k : m + 1])}")
                raw = src[k:m]
                if raw.endswith("i"):
                    _fail(src, k, f"complex numbers are not supported: {raw}")
                yield _Token("number", _number(raw, src, k), k, raw)
                k = m
            elif _is_alnum(ch):
                m = k
                while m < n and _is_alnum(src[m]):
                    m += 1
                self._terminated(m)
                word = src[k:m]
                if word in _KEYWORDS:
                    yield _Token("keyword", word, k, word)
                elif word in ("true", "false"):
                    yield _Token("bool", word == "true", k, word)
                else:
                    yield _Token("ident", word, k, word)
                k = m
            elif ch == "(":
                depth += 1
                yield _Token("lparen", None, k, "(")
                k += 1
            elif ch == ")":
                depth -= 1
                if depth < 0:
                    _fail(src, k, "unexpected right paren")
                yield _Token("rparen", None, k, ")")
                k += 1
            elif ch.isascii() and ch.isprintable():
                yield _Token("char", ch, k, ch)
                k += 1
            else:
                _fail(src, k, f"unrecognized character in action: {ch!r}")

    def _terminated(self, m: int) -> None:
        """Go's atTerminator: what follows a word must end it."""
        src = self.src
        if m >= len(src) or src[m] in _SPACE_CHARS or src[m] in ".,|:()" or src.startswith("}}", m):
            return
        _fail(src, m, f"bad character {src[m]!r}")


_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _unquote(body: str, quote: str, source: str, pos: int) -> str:
    """Go's escapes in a quoted string or character literal (`\\x` and octal are bytes)."""
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
            continue
        esc = body[i + 1 : i + 2]
        if esc in _SIMPLE_ESCAPES:
            out += _SIMPLE_ESCAPES[esc].encode()
            i += 2
        elif esc == quote:
            out += quote.encode()
            i += 2
        elif esc in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                _fail(source, pos, f"invalid syntax in quoted string: \\{esc}{digits}")
            value = int(digits, 16)
            if esc == "x":
                out.append(value)
            elif value > 0x10FFFF or 0xD800 <= value < 0xE000:
                _fail(source, pos, f"invalid syntax in quoted string: \\{esc}{digits}")
            else:
                out += chr(value).encode()
            i += 2 + width
        elif esc in "01234567" and esc:
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or not all(c in "01234567" for c in digits) or int(digits, 8) > 255:
                _fail(source, pos, f"invalid syntax in quoted string: \\{digits}")
            out.append(int(digits, 8))
            i += 4
        else:
            _fail(source, pos, f"invalid syntax in quoted string: unknown escape \\{esc}")
    return out.decode("utf-8", errors="replace")


def _number(raw: str, source: str, pos: int) -> int | float:
    """A Go number literal as the value it gives a function of `any`: int, or float64 when it
    is written as one."""
    body = raw.lstrip("+-")
    is_hex = body[:2] in ("0x", "0X")
    try:
        if re.fullmatch(r"0[0-7_]+", body):
            return int(raw, 8)
        return int(raw, 0)
    except ValueError:
        pass
    try:
        value = float.fromhex(raw.replace("_", "")) if is_hex else float(raw)
    except ValueError:
        _fail(source, pos, f"illegal number syntax: {_go_quote(raw)}")
    if value.is_integer() and not any(c in body for c in (".pP" if is_hex else ".eEpP")):
        return int(value)
    return value
