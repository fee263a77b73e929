"""Go's text/template parser over the lexer's tokens, and the parsed `Template`: `parse`
(cached) and `uses` (Ollama's Template.Vars).

Pure: standard library only.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from vllama.translate.gotemplate.errors import _fail
from vllama.translate.gotemplate.functions import _FUNCS
from vllama.translate.gotemplate.lexer import _Lexer, _Token
from vllama.translate.gotemplate.nodes import (
    _Action,
    _Branch,
    _Break,
    _Chain,
    _Command,
    _Continue,
    _Dot,
    _Field,
    _Ident,
    _Literal,
    _Nil,
    _Node,
    _node_str,
    _Operand,
    _Pipe,
    _Text,
    _Variable,
)

# --- parser ----------------------------------------------------------------------------------

_TERM_KINDS = frozenset({"bool", "dot", "field", "ident", "number", "string", "variable", "lparen"})
_REJECTED = {
    "define": "{{define}} is not supported",
    "template": "{{template}} is not supported",
    "block": "{{block}} is not supported",
}


class _Parser:
    def __init__(self, source: str) -> None:
        self.src = source
        self._lexer = _Lexer(source).tokens()
        self._buffer: list[_Token] = []
        self._index = 0
        self.vars: list[str] = ["$"]
        self.range_depth = 0

    # tokens

    def next(self) -> _Token:
        while self._index >= len(self._buffer):
            self._buffer.append(next(self._lexer))
        token = self._buffer[self._index]
        self._index += 1
        return token

    def backup(self, count: int = 1) -> None:
        self._index -= count

    def peek(self) -> _Token:
        token = self.next()
        self.backup()
        return token

    def next_non_space(self) -> _Token:
        token = self.next()
        while token.kind == "space":
            token = self.next()
        return token

    def peek_non_space(self) -> _Token:
        start = self._index
        token = self.next_non_space()
        self._index = start
        return token

    def fail(self, pos: int, message: str) -> NoReturn:
        _fail(self.src, pos, message)

    def unexpected(self, token: _Token, context: str) -> NoReturn:
        if token.kind == "eof":
            self.fail(token.pos, f"unexpected EOF in {context}")
        self.fail(token.pos, f"unexpected {token.describe()} in {context}")

    def expect_rdelim(self, context: str) -> None:
        token = self.next_non_space()
        if token.kind != "rdelim":
            self.unexpected(token, context)

    # structure

    def parse(self) -> tuple[_Node, ...]:
        nodes: list[_Node] = []
        while True:
            token = self.peek()
            if token.kind == "eof":
                return tuple(nodes)
            node = self.text_or_action()
            if isinstance(node, tuple):
                self.fail(node[1], f"unexpected {{{{{node[0]}}}}}")
            nodes.append(node)

    def item_list(self, opener: str, opener_pos: int) -> tuple[tuple[_Node, ...], tuple[str, int]]:
        """Nodes up to an {{end}} or {{else}}: (nodes, (which, position))."""
        nodes: list[_Node] = []
        while True:
            if self.peek().kind == "eof":
                self.fail(opener_pos, f"unexpected EOF: {{{{{opener}}}}} has no {{{{end}}}}")
            node = self.text_or_action()
            if isinstance(node, tuple):
                return tuple(nodes), node
            nodes.append(node)

    def text_or_action(self) -> _Node | tuple[str, int]:
        token = self.next()
        if token.kind == "text":
            return _Text(token.pos, token.value)
        if token.kind == "ldelim":
            return self.action(token.pos)
        self.unexpected(token, "input")

    def action(self, start: int) -> _Node | tuple[str, int]:
        token = self.next_non_space()
        if token.kind == "keyword":
            word = token.value
            if word in _REJECTED:
                self.fail(token.pos, _REJECTED[word])
            if word in ("if", "range", "with"):
                return self.control(word, start)
            if word == "end":
                self.expect_rdelim("end")
                return ("end", start)
            if word == "else":
                following = self.peek_non_space()
                if following.kind == "keyword" and following.value in ("if", "with"):
                    return (f"else {following.value}", start)
                self.expect_rdelim("else")
                return ("else", start)
            if word in ("break", "continue"):
                self.expect_rdelim(word)
                if not self.range_depth:
                    self.fail(start, f"{{{{{word}}}}} outside {{{{range}}}}")
                return _Break(start) if word == "break" else _Continue(start)
        self.backup()
        return _Action(start, self.pipeline("command", "rdelim"))

    def control(self, kind: str, start: int) -> _Branch:
        saved = len(self.vars)
        pipe = self.pipeline(kind, "rdelim")
        if kind == "range":
            self.range_depth += 1
        body, (end, end_pos) = self.item_list(kind, start)
        if kind == "range":
            self.range_depth -= 1
        orelse: tuple[_Node, ...] | None = None
        if end.startswith("else "):
            chained = end[len("else ") :]
            if chained != kind:
                self.fail(end_pos, f"{{{{{end}}}}} is only allowed in {{{{{chained}}}}}")
            self.next_non_space()  # the chained keyword
            orelse = (self.control(kind, end_pos),)
        elif end == "else":
            orelse, (end2, end2_pos) = self.item_list(kind, start)
            if end2 != "end":
                self.fail(end2_pos, f"expected {{{{end}}}}; found {{{{{end2}}}}}")
        del self.vars[saved:]
        return _Branch(kind, start, pipe, body, orelse)

    def pipeline(self, context: str, end: str) -> _Pipe:
        start = self.peek_non_space().pos
        decls: list[str] = []
        is_assign = False
        while True:
            v = self.peek_non_space()
            if v.kind != "variable":
                break
            self.next_non_space()
            following = self.peek_non_space()
            if following.kind in ("assign", "declare"):
                is_assign = following.kind == "assign"
                self.next_non_space()
                decls.append(v.value)
                self.vars.append(v.value)
                break
            if following.kind == "char" and following.value == ",":
                self.next_non_space()
                decls.append(v.value)
                self.vars.append(v.value)
                if context == "range" and len(decls) < 2:
                    if self.peek_non_space().kind in ("variable", "rdelim", "rparen"):
                        continue
                    self.fail(following.pos, "range can only initialize variables")
                self.fail(following.pos, f"too many declarations in {context}")
            self.backup()  # not a declaration: an operand
            break
        cmds: list[_Command] = []
        while True:
            token = self.next_non_space()
            if token.kind == end:
                if not cmds:
                    self.fail(token.pos, f"missing value for {context}")
                for i, cmd in enumerate(cmds[1:], start=2):
                    if isinstance(cmd.args[0], (_Literal, _Dot, _Nil)):
                        self.fail(cmd.pos, f"non executable command in pipeline stage {i}")
                return _Pipe(start, tuple(decls), is_assign, tuple(cmds))
            if token.kind in _TERM_KINDS or (token.kind == "keyword" and token.value == "nil"):
                self.backup()
                cmds.append(self.command())
            else:
                self.unexpected(token, context)

    def command(self) -> _Command:
        start = self.peek_non_space().pos
        args: list[_Operand] = []
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            token = self.next()
            if token.kind == "space":
                continue
            if token.kind in ("rdelim", "rparen"):
                self.backup()
            elif token.kind != "pipe":
                self.unexpected(token, "operand")
            break
        if not args:
            self.fail(start, "empty command")
        return _Command(start, tuple(args))

    def operand(self) -> _Operand | None:
        node = self.term()
        if node is None:
            return None
        if self.peek().kind == "field":
            fields: list[str] = []
            while self.peek().kind == "field":
                fields.append(self.next().value)
            if isinstance(node, _Field):
                return _Field(node.pos, node.idents + tuple(fields))
            if isinstance(node, _Variable):
                return _Variable(node.pos, node.name, node.fields + tuple(fields))
            if isinstance(node, (_Literal, _Nil, _Dot)):
                self.fail(node.pos, f"unexpected . after term {_node_str(node)!r}")
            return _Chain(node.pos, node, tuple(fields))
        return node

    def term(self) -> _Operand | None:
        token = self.next_non_space()
        kind = token.kind
        if kind == "ident":
            if token.value not in _FUNCS and token.value not in ("and", "or"):
                if token.value == "call":
                    self.fail(token.pos, 'function "call" is not supported')
                self.fail(token.pos, f'function "{token.value}" not defined')
            return _Ident(token.pos, token.value)
        if kind == "dot":
            return _Dot(token.pos)
        if kind == "keyword" and token.value == "nil":
            return _Nil(token.pos)
        if kind == "variable":
            if token.value not in self.vars:
                self.fail(token.pos, f'undefined variable "{token.value}"')
            return _Variable(token.pos, token.value, ())
        if kind == "field":
            return _Field(token.pos, (token.value,))
        if kind in ("bool", "number", "string"):
            return _Literal(token.pos, token.value, token.raw)
        if kind == "lparen":
            return self.pipeline("parenthesized pipeline", "rparen")
        self.backup()
        return None


# --- Template --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """A parsed template: its source, its tree, and the names it mentions (Ollama's Vars:
    every field and variable name in it, lowercased)."""

    source: str
    nodes: tuple[_Node, ...] = field(repr=False)
    identifiers: frozenset[str] = field(repr=False)


@functools.lru_cache(maxsize=256)
def parse(source: str) -> Template:
    """Parse a template once; raises TemplateError for a syntax error or what is not supported."""
    nodes = _Parser(source).parse()
    return Template(source, nodes, frozenset(name.lower() for name in _identifiers(nodes)))


def _identifiers(nodes: Sequence[_Node | _Operand]) -> Iterator[str]:
    """Ollama's template.Identifiers: names of fields and variables in actions and in the
    pipelines of if/range/with (not inside a chain `(...).X`, as there)."""
    for node in nodes:
        if isinstance(node, _Action):
            yield from _identifiers([node.pipe])
        elif isinstance(node, _Branch):
            yield from _identifiers([node.pipe])
            yield from _identifiers(node.body)
            if node.orelse is not None:
                yield from _identifiers(node.orelse)
        elif isinstance(node, _Pipe):
            for cmd in node.cmds:
                yield from _identifiers(cmd.args)
        elif isinstance(node, _Field):
            yield from node.idents
        elif isinstance(node, _Variable):
            yield node.name
            yield from node.fields


def uses(source: str, name: str) -> bool:
    """Whether the template mentions `name` (a field such as "Suffix", "Tools", "Messages"),
    case-insensitively, as Ollama's `slices.Contains(tmpl.Vars(), "suffix")` does."""
    return name.lstrip(".").lower() in parse(source).identifiers
