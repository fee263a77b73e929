"""Ollama's template.Execute: the data it gives a template (messages, tools and their Go
structs, the think values, fill-in-the-middle), the collation of messages, and the legacy
System/Prompt/Response turns for templates that do not range over `.Messages`.

Pure: standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from vllama.translate.gotemplate.execute import _execute
from vllama.translate.gotemplate.nodes import _Action, _Branch, _Command, _Field, _Node, _Operand, _Pipe
from vllama.translate.gotemplate.parser import parse
from vllama.translate.gotemplate.values import _JSONList, _JSONObject, _PropertyType, _Struct, _StructDict

# --- Ollama's template.Execute ---------------------------------------------------------------


def _go_any(value: Any) -> Any:
    """A JSON value as Go decodes it into `any`: numbers are float64 (`{{ $v }}` of 1000000
    prints 1e+06, as in Ollama)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, Mapping):
        return {k: _go_any(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_go_any(v) for v in value]
    return value


def _tool_property(prop: Mapping[str, Any]) -> _Struct:
    """api.ToolProperty."""
    any_of = [_tool_property(p) for p in prop.get("anyOf") or ()]
    raw_type = prop.get("type")
    types = _PropertyType((raw_type,) if isinstance(raw_type, str) else tuple(raw_type or ()))
    items = _go_any(prop.get("items"))
    description = prop.get("description") or ""
    enum = [_go_any(v) for v in prop.get("enum") or ()]
    nested = prop.get("properties")
    properties = None
    if nested is not None:
        members = {name: _tool_property(p) for name, p in nested.items()}
        properties = _Struct("ToolPropertiesMap", members, tuple(members.items()))
    required = list(prop.get("required") or ())
    json_fields: list[tuple[str, Any]] = []
    if any_of:
        json_fields.append(("anyOf", any_of))
    if types:
        json_fields.append(("type", types))
    if items is not None:
        json_fields.append(("items", items))
    if description:
        json_fields.append(("description", description))
    if enum:
        json_fields.append(("enum", enum))
    if properties is not None:
        json_fields.append(("properties", properties))
    if required:
        json_fields.append(("required", required))
    fields = {
        "AnyOf": any_of,
        "Type": types,
        "Items": items,
        "Description": description,
        "Enum": enum,
        "Properties": properties,
        "Required": required,
    }
    return _Struct("ToolProperty", fields, tuple(json_fields))


def _template_tool(tool: Mapping[str, Any]) -> _Struct:
    """Ollama's templateTool (convertToolsForTemplate)."""
    function = tool.get("function") or {}
    params = function.get("parameters") or {}
    props = params.get("properties")
    properties = _JSONObject(None if props is None else {name: _tool_property(p) for name, p in props.items()})
    defs, items = _go_any(params.get("$defs")), _go_any(params.get("items"))
    required = list(params.get("required") or ())
    param_json: list[tuple[str, Any]] = [("type", params.get("type") or "")]
    if defs is not None:
        param_json.append(("$defs", defs))
    if items is not None:
        param_json.append(("items", items))
    if required:
        param_json.append(("required", required))
    param_json.append(("properties", properties))
    parameters = _Struct(
        "templateToolFunctionParameters",
        {
            "Type": params.get("type") or "",
            "Defs": defs,
            "Items": items,
            "Required": required,
            "Properties": properties,
        },
        tuple(param_json),
    )
    name, description = function.get("name") or "", function.get("description") or ""
    fn = _Struct(
        "templateToolFunction",
        {"Name": name, "Description": description, "Parameters": parameters},
        (("name", name), ("description", description), ("parameters", parameters)),
    )
    tool_type, tool_items = tool.get("type") or "", _go_any(tool.get("items"))
    tool_json: list[tuple[str, Any]] = [("type", tool_type)]
    if tool_items is not None:
        tool_json.append(("items", tool_items))
    tool_json.append(("function", fn))
    return _Struct("templateTool", {"Type": tool_type, "Items": tool_items, "Function": fn}, tuple(tool_json))


def _template_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """Ollama's templateMessage (convertMessagesForTemplate), as a dict of its Go fields."""
    calls: list[dict[str, Any]] = []
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        arguments = function.get("arguments")
        calls.append(
            _StructDict(
                ID=call.get("id") or "",
                Function=_StructDict(
                    Index=function.get("index") or 0,
                    Name=function.get("name") or "",
                    Arguments=_JSONObject(None if arguments is None else _go_any(arguments)),
                ),
            )
        )
    return _StructDict(
        {
            "Role": message.get("role") or "",
            "Content": message.get("content") or "",
            "Thinking": message.get("thinking") or "",
            "Images": list(message.get("images") or ()),
            "ToolCalls": calls,
            "ToolName": message.get("tool_name") or "",
            "ToolCallID": message.get("tool_call_id") or "",
        }
    )


def _collate(messages: Sequence[Mapping[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Ollama's collate: the system messages joined, and the messages with consecutive ones of
    one role (but "tool") merged, their contents joined by a blank line."""
    system: list[str] = []
    collated: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role") or ""
        content = message.get("content") or ""
        if role == "system":
            system.append(content)
        if collated and collated[-1].get("role") == role and role != "tool":
            collated[-1]["content"] = (collated[-1].get("content") or "") + "\n\n" + content
        else:
            collated.append(dict(message))
    return "\n\n".join(system), collated


def _think_values(think: bool | str | None) -> dict[str, Any]:
    """Ollama's Think (ThinkValue.Bool), ThinkLevel (ThinkValue.String) and IsThinkSet."""
    if isinstance(think, str):
        enabled, level = think in ("high", "medium", "low", "max"), think
    else:
        enabled, level = bool(think), "medium" if think else ""
    return {"Think": enabled, "ThinkLevel": level, "IsThinkSet": think is not None}


def _request_messages(
    messages: Sequence[Mapping[str, Any]], system: str | None, prompt: str | None, suffix: str | None
) -> list[Mapping[str, Any]]:
    """The messages /api/generate builds: a system message, then the given ones, then the
    prompt as a user message (none of it with a suffix: that is fill-in-the-middle)."""
    if suffix:
        return list(messages)
    result: list[Mapping[str, Any]] = []
    if system:
        result.append({"role": "system", "content": system})
    result.extend(messages)
    if prompt is not None:
        result.append({"role": "user", "content": prompt})
    return result


def prompt_data(
    messages: Sequence[Mapping[str, Any]] = (),
    *,
    system: str | None = None,
    prompt: str | None = None,
    suffix: str | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    think: bool | str | None = None,
    response: str = "",
) -> dict[str, Any]:
    """The data Ollama's template.Execute gives a template that uses `.Messages`: System (the
    system messages joined), Messages (collated, Go field names), Tools, Response, Think,
    ThinkLevel, IsThinkSet. With a prompt and a suffix: the fill-in-the-middle data (Prompt,
    Suffix, Response and the Think ones). `messages` are Ollama's message dicts (role,
    content, thinking, images, tool_calls, tool_name, tool_call_id); `system` and `prompt` are
    /api/generate's: a system message first and a user message last."""
    thinking = _think_values(think)
    if prompt and suffix:
        return {"Prompt": prompt, "Suffix": suffix, "Response": response, **thinking}
    system_text, collated = _collate(_request_messages(messages, system, prompt, suffix))
    return {
        "System": system_text,
        "Messages": [_template_message(m) for m in collated],
        "Tools": _JSONList(None if tools is None else [_template_tool(t) for t in tools]),
        "Response": response,
        **thinking,
    }


_RESPONSE = _Action(-1, _Pipe(-1, (), False, (_Command(-1, (_Field(-1, ("Response",)),)),)))


def execute(
    source: str,
    messages: Sequence[Mapping[str, Any]] = (),
    *,
    system: str | None = None,
    prompt: str | None = None,
    suffix: str | None = None,
    tools: Sequence[Mapping[str, Any]] | None = None,
    think: bool | str | None = None,
) -> str:
    """Render a template as Ollama's template.Parse + Template.Execute do: a template that
    mentions neither .Messages nor .Response gets `{{ .Response }}` appended; with a prompt and
    a suffix it gets the fill-in-the-middle data; one that uses .Messages gets `prompt_data`;
    any other (legacy) is executed once per System/Prompt/Response turn of the collated
    messages, the last turn cut after its `.Response`."""
    template = parse(source)
    nodes = template.nodes
    if "messages" not in template.identifiers and "response" not in template.identifiers:
        nodes = (*nodes, _RESPONSE)
    thinking = _think_values(think)
    if prompt and suffix:
        data = prompt_data(messages, prompt=prompt, suffix=suffix, think=think)
        return _execute(source, nodes, data)
    if "messages" in template.identifiers:
        data = prompt_data(messages, system=system, prompt=prompt, tools=tools, think=think)
        return _execute(source, nodes, data)

    _, collated = _collate(_request_messages(messages, system, prompt, suffix))
    out: list[str] = []
    turn = {"System": "", "Prompt": "", "Response": ""}

    def flush() -> None:
        out.append(_execute(source, nodes, {**turn, **thinking}))
        turn.update(System="", Prompt="", Response="")

    for message in collated:
        role, content = message.get("role"), message.get("content") or ""
        if role == "system":
            if turn["Prompt"] or turn["Response"]:
                flush()
            turn["System"] = content
        elif role == "user":
            if turn["Response"]:
                flush()
            turn["Prompt"] = content
        elif role == "assistant":
            turn["Response"] = content
    out.append(_execute(source, _cut_after_response(nodes), {**turn, **thinking}))
    return "".join(out)


def _cut_after_response(nodes: tuple[_Node, ...]) -> tuple[_Node, ...]:
    """Ollama's deleteNode: keep the template up to its first `.Response` field, drop all after
    it (what the model is to write comes next)."""
    cut = False

    def hit(node: object) -> bool:
        nonlocal cut
        if isinstance(node, _Field) and "Response" in node.idents:
            cut = True
            return False
        return cut

    def walk_list(items: Sequence[_Node]) -> tuple[_Node, ...]:
        kept: list[_Node] = []
        for item in items:
            new = walk(item)
            if new is not None:
                kept.append(new)
        return tuple(kept)

    def walk_pipe(pipe: _Pipe) -> _Pipe | None:
        if hit(pipe):
            return None
        cmds: list[_Command] = []
        for cmd in pipe.cmds:
            args: list[_Operand] = []
            for arg in cmd.args:
                new_arg: _Operand | None = walk_pipe(arg) if isinstance(arg, _Pipe) else (None if hit(arg) else arg)
                if new_arg is not None:
                    args.append(new_arg)
            if not args:
                return None
            cmds.append(_Command(cmd.pos, tuple(args)))
        return _Pipe(pipe.pos, pipe.decls, pipe.is_assign, tuple(cmds))

    def walk(node: _Node) -> _Node | None:
        if hit(node):
            return None
        if isinstance(node, _Action):
            pipe = walk_pipe(node.pipe)
            return None if pipe is None else _Action(node.pos, pipe)
        if isinstance(node, _Branch):
            body = walk_list(node.body)
            orelse = None
            if node.orelse is not None and not cut:
                orelse = walk_list(node.orelse)
            return _Branch(node.kind, node.pos, node.pipe, body, orelse)
        return node

    return walk_list(nodes)
