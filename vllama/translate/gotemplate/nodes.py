"""The parse tree of a template (Go's text/template/parse nodes, the subset supported) and
Go's String() of a node for error messages.

Pure: standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# --- parse tree ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Text:
    pos: int
    text: str


@dataclass(frozen=True, slots=True)
class _Field:
    pos: int
    idents: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Variable:
    pos: int
    name: str
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Chain:
    pos: int
    node: _Operand
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Dot:
    pos: int


@dataclass(frozen=True, slots=True)
class _Nil:
    pos: int


@dataclass(frozen=True, slots=True)
class _Literal:
    pos: int
    value: Any
    raw: str


@dataclass(frozen=True, slots=True)
class _Ident:
    pos: int
    name: str


@dataclass(frozen=True, slots=True)
class _Command:
    pos: int
    args: tuple[_Operand, ...]


@dataclass(frozen=True, slots=True)
class _Pipe:
    pos: int
    decls: tuple[str, ...]
    is_assign: bool
    cmds: tuple[_Command, ...]


@dataclass(frozen=True, slots=True)
class _Action:
    pos: int
    pipe: _Pipe


@dataclass(frozen=True, slots=True)
class _Branch:
    kind: str  # if, range, with
    pos: int
    pipe: _Pipe
    body: tuple[_Node, ...]
    orelse: tuple[_Node, ...] | None


@dataclass(frozen=True, slots=True)
class _Break:
    pos: int


@dataclass(frozen=True, slots=True)
class _Continue:
    pos: int


_Operand = _Field | _Variable | _Chain | _Dot | _Nil | _Literal | _Ident | _Pipe
_Node = _Text | _Action | _Branch | _Break | _Continue


def _node_str(node: _Operand | _Command) -> str:
    """Go's String() of a node, for error messages."""
    if isinstance(node, _Field):
        return "".join("." + i for i in node.idents)
    if isinstance(node, _Variable):
        return node.name + "".join("." + f for f in node.fields)
    if isinstance(node, _Chain):
        inner = _node_str(node.node)
        if isinstance(node.node, _Pipe):
            inner = f"({inner})"
        return inner + "".join("." + f for f in node.fields)
    if isinstance(node, _Dot):
        return "."
    if isinstance(node, _Nil):
        return "nil"
    if isinstance(node, _Literal):
        return node.raw
    if isinstance(node, _Ident):
        return node.name
    if isinstance(node, _Command):
        return " ".join(f"({_node_str(a)})" if isinstance(a, _Pipe) else _node_str(a) for a in node.args)
    decl = ""
    if node.decls:
        decl = ", ".join(node.decls) + (" = " if node.is_assign else " := ")
    return decl + " | ".join(_node_str(c) for c in node.cmds)
