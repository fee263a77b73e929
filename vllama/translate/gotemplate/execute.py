"""Executing a parsed template as Go's text/template does (`missingkey=zero`): variables,
if/with/range with break and continue, pipelines, field chains and function calls; and
`render`, parse and execute over Python data.

Pure: standard library only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NoReturn

from vllama.translate.gotemplate.errors import _fail, _FuncError
from vllama.translate.gotemplate.functions import _FUNCS
from vllama.translate.gotemplate.nodes import (
    _Action,
    _Branch,
    _Break,
    _Chain,
    _Command,
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
from vllama.translate.gotemplate.parser import parse
from vllama.translate.gotemplate.values import (
    _MISSING,
    _fmt_v,
    _is_true,
    _sorted_keys,
    _Struct,
    _type_name,
)

# --- execution -------------------------------------------------------------------------------


class _BreakLoop(Exception):
    pass


class _ContinueLoop(Exception):
    pass


def _execute(source: str, nodes: Sequence[_Node], data: Any) -> str:
    state = _State(source, data)
    state.walk(data, nodes)
    return "".join(state.out)


class _State:
    def __init__(self, source: str, root: Any) -> None:
        self.src = source
        self.vars: list[list[Any]] = [["$", root]]
        self.out: list[str] = []

    def fail(self, node: _Operand | _Command | _Node, message: str) -> NoReturn:
        context = ""
        if isinstance(node, (_Field, _Variable, _Chain, _Dot, _Nil, _Literal, _Ident, _Command, _Pipe)):
            context = f"at <{_node_str(node)}>: "
        _fail(self.src, node.pos, context + message)

    # variables

    def set_var(self, node: _Pipe, name: str, value: Any) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        self.fail(node, f"undefined variable: {name}")

    def var_value(self, node: _Variable) -> Any:
        for name, value in reversed(self.vars):
            if name == node.name:
                return value
        self.fail(node, f"undefined variable: {node.name}")

    # walking

    def walk(self, dot: Any, nodes: Sequence[_Node]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                value = self.eval_pipeline(dot, node.pipe)
                if not node.pipe.decls:
                    self.out.append(_print_value(value))
            elif isinstance(node, _Branch):
                if node.kind == "range":
                    self.walk_range(dot, node)
                else:
                    self.walk_if_or_with(dot, node)
            elif isinstance(node, _Break):
                raise _BreakLoop
            else:
                raise _ContinueLoop

    def walk_if_or_with(self, dot: Any, node: _Branch) -> None:
        mark = len(self.vars)
        try:
            value = self.eval_pipeline(dot, node.pipe)
            if _is_true(value):
                self.walk(value if node.kind == "with" else dot, node.body)
            elif node.orelse is not None:
                self.walk(dot, node.orelse)
        finally:
            del self.vars[mark:]

    def walk_range(self, dot: Any, node: _Branch) -> None:
        outer = len(self.vars)
        pipe = node.pipe
        try:
            value = self.eval_pipeline(dot, pipe)
            mark = len(self.vars)

            def one(index: Any, elem: Any) -> None:
                if pipe.decls:
                    if pipe.is_assign:
                        self.set_var(pipe, pipe.decls[0], index if len(pipe.decls) > 1 else elem)
                    else:
                        self.vars[-1][1] = elem
                if len(pipe.decls) > 1:
                    if pipe.is_assign:
                        self.set_var(pipe, pipe.decls[1], elem)
                    else:
                        self.vars[-2][1] = index
                try:
                    self.walk(elem, node.body)
                except _ContinueLoop:
                    pass
                finally:
                    del self.vars[mark:]

            items: Iterator[tuple[Any, Any]]
            if value is None:
                items = iter(())
            elif isinstance(value, Mapping):
                items = ((k, value[k]) for k in _sorted_keys(value))
            elif isinstance(value, (list, tuple)):
                items = enumerate(value)
            elif isinstance(value, int) and not isinstance(value, bool):
                if len(pipe.decls) > 1:
                    self.fail(pipe, f"can't use {value} to iterate over more than one variable")
                items = ((i, i) for i in range(value))
            else:
                self.fail(pipe, f"range can't iterate over {_fmt_v(value)}")
            ran = False
            try:
                for index, elem in items:
                    ran = True
                    one(index, elem)
            except _BreakLoop:
                pass
            if not ran and node.orelse is not None:
                self.walk(dot, node.orelse)
        finally:
            del self.vars[outer:]

    # evaluation

    def eval_pipeline(self, dot: Any, pipe: _Pipe) -> Any:
        value = _MISSING
        for cmd in pipe.cmds:
            value = self.eval_command(dot, cmd, value)
        for name in pipe.decls:
            if pipe.is_assign:
                self.set_var(pipe, name, value)
            else:
                self.vars.append([name, value])
        return value

    def not_a_function(self, cmd: _Command, final: Any) -> None:
        if len(cmd.args) > 1 or final is not _MISSING:
            self.fail(cmd, f"can't give argument to non-function {_node_str(cmd.args[0])}")

    def eval_command(self, dot: Any, cmd: _Command, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, _Field):
            return self.eval_fields(first, dot, first.idents, cmd, final)
        if isinstance(first, _Chain):
            receiver = self.eval_arg(dot, first.node)
            return self.eval_fields(first, receiver, first.fields, cmd, final)
        if isinstance(first, _Variable):
            value = self.var_value(first)
            if not first.fields:
                self.not_a_function(cmd, final)
                return value
            return self.eval_fields(first, value, first.fields, cmd, final)
        if isinstance(first, _Ident):
            return self.call(dot, first, cmd.args[1:], final, cmd)
        self.not_a_function(cmd, final)
        if isinstance(first, _Pipe):
            return self.eval_pipeline(dot, first)
        if isinstance(first, _Nil):
            self.fail(first, "nil is not a command")
        if isinstance(first, _Dot):
            return dot
        return first.value  # literal

    def eval_fields(self, node: _Operand, receiver: Any, names: Sequence[str], cmd: _Command | None, final: Any) -> Any:
        """Go's evalFieldChain: a nil start gives nil; a nil in the middle is an error."""
        if cmd is not None and (len(cmd.args) > 1 or final is not _MISSING):
            self.fail(node, f"{names[-1]} is not a method but has arguments")
        if receiver is None:
            return None
        for i, name in enumerate(names):
            if receiver is None:
                path = "".join("." + n for n in names[:i])
                if isinstance(node, _Variable):
                    path = node.name + path
                self.fail(node, f"nil pointer evaluating {path}.{name}")
            receiver = self.eval_field(node, receiver, name)
        return receiver

    def eval_field(self, node: _Operand, receiver: Any, name: str) -> Any:
        if isinstance(receiver, _Struct):
            if name not in receiver.fields:
                self.fail(node, f"can't evaluate field {name} in type {receiver.type_name}")
            return receiver.fields[name]
        if isinstance(receiver, Mapping):
            return receiver.get(name)
        self.fail(node, f"can't evaluate field {name} in type {_type_name(receiver)}")

    def eval_arg(self, dot: Any, node: _Operand) -> Any:
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Nil):
            return None
        if isinstance(node, _Field):
            return self.eval_fields(node, dot, node.idents, None, _MISSING)
        if isinstance(node, _Variable):
            value = self.var_value(node)
            return self.eval_fields(node, value, node.fields, None, _MISSING) if node.fields else value
        if isinstance(node, _Pipe):
            return self.eval_pipeline(dot, node)
        if isinstance(node, _Ident):
            return self.call(dot, node, (), _MISSING, node)
        if isinstance(node, _Chain):
            receiver = self.eval_arg(dot, node.node)
            return self.eval_fields(node, receiver, node.fields, None, _MISSING)
        return node.value

    def call(self, dot: Any, ident: _Ident, args: Sequence[_Operand], final: Any, where: _Operand | _Command) -> Any:
        name = ident.name
        count = len(args) + (final is not _MISSING)
        if name in ("and", "or"):
            if count < 1:
                self.fail(ident, f"wrong number of args for {name}: want at least 1 got 0")
            value: Any = None
            for arg in args:
                value = self.eval_arg(dot, arg)
                if _is_true(value) == (name == "or"):
                    return value
            return final if final is not _MISSING else value
        spec = _FUNCS[name]
        if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
            want = spec.min_args if spec.max_args == spec.min_args else None
            if want is not None:
                self.fail(ident, f"wrong number of args for {name}: want {want} got {count}")
            self.fail(ident, f"wrong number of args for {name}: want at least {spec.min_args} got {count}")
        values = [self.eval_arg(dot, arg) for arg in args]
        if final is not _MISSING:
            values.append(final)
        try:
            return spec.fn(*values)
        except _FuncError as exc:
            self.fail(where, f"error calling {name}: {exc}")


def _print_value(value: Any) -> str:
    if value is None or value is _MISSING:
        return "<no value>"
    return _fmt_v(value)


def render(source: str, data: Mapping[str, Any]) -> str:
    """Execute the template over `data` as Go's text/template does (with Ollama's functions
    and `missingkey=zero`: a missing key is nil and prints "<no value>")."""
    template = parse(source)
    return _execute(template.source, template.nodes, data)
