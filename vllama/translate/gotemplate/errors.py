"""Errors of the template package: `TemplateError` with Go's `template:LINE:COLUMN:` prefix,
and the error a template function raises for its caller to place.

Pure: standard library only.
"""

from __future__ import annotations

from typing import NoReturn


class TemplateError(ValueError):
    """A template that does not parse, uses what this module does not support, or fails to
    execute. The message says what and where (`template:LINE:COLUMN: ...`)."""


def _where(source: str, pos: int) -> str:
    pos = max(pos, 0)
    line = source.count("\n", 0, pos) + 1
    column = pos - source.rfind("\n", 0, pos)
    return f"template:{line}:{column}"


def _fail(source: str, pos: int, message: str) -> NoReturn:
    raise TemplateError(f"{_where(source, pos)}: {message}")


class _FuncError(Exception):
    """A function's error; the caller adds where and which function."""
