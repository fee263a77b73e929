"""Ollama requests -> chat messages or raw text, and the features this server refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vllama.engine.params import ChatPrompt, FillInMiddle, TextPrompt
from vllama.errors import InvalidRequest
from vllama.ollama_api.schema import ChatRequest, GenerateRequest
from vllama.translate.prompts import (
    chat_prompt,
    drop_oldest_turn,
    generate_prompt,
    is_load_request,
    ollama_template,
    template_uses,
    unsupported_features,
)

USER = {"role": "user", "content": "hi"}
SYSTEM = {"role": "system", "content": "Def."}
EXAMPLES = ({"role": "user", "content": "Is Toronto in Canada?"}, {"role": "assistant", "content": "yes"})
CHATML = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
LEGACY = "{{ if .System }}S:{{ .System }} {{ end }}P:{{ .Prompt }}"
FIM = "<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>"


def generate(**body: Any) -> GenerateRequest:
    return GenerateRequest.model_validate_json(json.dumps({"model": "m", **body}))


def chat(**body: Any) -> ChatRequest:
    return ChatRequest.model_validate_json(json.dumps({"model": "m", **body}))


# --- unsupported_features -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"messages": [USER]}, None),
        ({"messages": [USER], "think": True}, '"m" does not support thinking'),
        ({"messages": [USER], "think": "true"}, '"m" does not support thinking'),
        ({"messages": [USER], "think": "high"}, '"m" does not support thinking'),
        ({"messages": [USER], "think": False}, None),
        ({"messages": [USER], "think": "false"}, None),
        ({"messages": [USER], "tools": [{"type": "function", "function": {"name": "f"}}]}, "m does not support tools"),
        ({"messages": [USER], "tools": []}, None),
        ({"messages": [{**USER, "images": ["aGk="]}]}, '"m" does not support images'),
        ({"messages": [{**USER, "images": []}]}, None),
        ({"messages": [USER], "format": ""}, None),
        ({"messages": [USER], "format": None}, None),
        ({"messages": [USER], "logprobs": False}, None),
        ({"messages": [USER], "top_logprobs": 0}, None),
    ],
)
def test_unsupported_chat(body: dict[str, Any], expected: str | None) -> None:
    assert unsupported_features(chat(**body), "m") == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"prompt": "hi"}, None),
        ({"prompt": "hi", "think": True}, '"m" does not support thinking'),
        ({"prompt": "hi", "think": "low"}, '"m" does not support thinking'),
        ({"prompt": "hi", "think": False}, None),
        ({"prompt": "hi", "suffix": "end"}, '"m" does not support insert'),
        ({"prompt": "hi", "suffix": ""}, None),
        ({"prompt": "hi", "images": ["aGk="]}, '"m" does not support images'),
        ({"prompt": "hi", "images": []}, None),
        ({"prompt": "hi", "format": ""}, None),
    ],
)
def test_unsupported_generate(body: dict[str, Any], expected: str | None) -> None:
    assert unsupported_features(generate(**body), "m") == expected


TOOL = {"type": "function", "function": {"name": "f"}}
ALL = ("completion", "tools", "thinking", "vision", "insert")


@pytest.mark.parametrize(
    ("request_", "capabilities", "expected"),
    [
        (chat(messages=[USER], think=True), ("completion", "thinking"), None),
        (chat(messages=[USER], think="high"), ("completion", "thinking"), None),
        (chat(messages=[USER], think=True), ("completion", "tools"), '"m" does not support thinking'),
        (chat(messages=[USER], tools=[TOOL]), ("completion", "tools"), None),
        (chat(messages=[USER], tools=[TOOL]), ("completion", "thinking"), "m does not support tools"),
        (chat(messages=[{**USER, "images": ["aGk="]}]), ("completion", "vision"), None),
        (chat(messages=[{**USER, "images": ["aGk="]}]), ("completion", "tools"), '"m" does not support images'),
        (chat(messages=[USER], think=True, tools=[TOOL]), ("completion", "tools"), '"m" does not support thinking'),
        (chat(messages=[USER], think=True, tools=[TOOL]), ("completion", "thinking"), "m does not support tools"),
        (chat(messages=[{**USER, "images": ["aGk="]}], tools=[TOOL], think=True), ALL, None),
        (generate(prompt="hi", think=True), ("completion", "thinking"), None),
        (generate(prompt="hi", suffix="end"), ("completion", "insert"), None),
        (generate(prompt="hi", suffix="end"), ("completion", "vision"), '"m" does not support insert'),
        (generate(prompt="hi", images=["aGk="]), ("completion", "vision"), None),
        (generate(prompt="hi", images=["aGk="]), ("completion", "insert"), '"m" does not support images'),
        # tools are a chat feature: a generate request has none to refuse
        (generate(prompt="hi", suffix="x", images=["aGk="], think="low"), ALL, None),
        (generate(prompt="hi", think=True), (), '"m" does not support thinking'),
        (chat(messages=[USER]), (), None),
    ],
)
def test_unsupported_with_capabilities(
    request_: GenerateRequest | ChatRequest, capabilities: tuple[str, ...], expected: str | None
) -> None:
    assert unsupported_features(request_, "m", capabilities) == expected


@pytest.mark.parametrize("template", ["{{ .Prompt }}", CHATML, "{{ bad"])
def test_generate_template_override_is_served(template: str) -> None:
    # Templates are rendered now (an invalid one fails when the prompt is made, with a 400).
    assert unsupported_features(generate(prompt="hi", template=template), "m") is None
    assert unsupported_features(generate(prompt="hi", template=template), "m", ALL) is None


@pytest.mark.parametrize(
    "body", [{"format": "json"}, {"format": {"type": "object"}}, {"logprobs": True}, {"top_logprobs": 2}]
)
def test_format_and_logprobs_are_served(body: dict[str, Any]) -> None:
    assert unsupported_features(chat(messages=[USER], **body), "m") is None
    assert unsupported_features(generate(prompt="hi", **body), "m") is None


def test_unsupported_uses_model_name() -> None:
    assert unsupported_features(generate(prompt="x", think=True), "qwen2.5:1.5b") == '"qwen2.5:1.5b" does not support thinking'


# --- is_load_request ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        (chat(), True),
        (chat(messages=[]), True),
        (chat(messages=[USER]), False),
        (generate(), True),
        (generate(prompt=""), True),
        (generate(prompt="hi"), False),
        (generate(prompt="", images=["aGk="]), False),
        (generate(keep_alive=0), True),
    ],
)
def test_is_load_request(request_: GenerateRequest | ChatRequest, expected: bool) -> None:
    assert is_load_request(request_) is expected


# --- chat_prompt ---------------------------------------------------------------------------------


def test_chat_prompt_inserts_default_system_first() -> None:
    prompt = chat_prompt(chat(messages=[USER, {"role": "assistant", "content": "hello"}]), "Be brief.")
    assert prompt == ChatPrompt(
        messages=(
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
        )
    )


def test_chat_prompt_keeps_own_system() -> None:
    request = chat(messages=[USER, {"role": "SYSTEM", "content": "Mine."}])
    prompt = chat_prompt(request, "Default.")
    assert prompt.messages == ({"role": "user", "content": "hi"}, {"role": "system", "content": "Mine."})


@pytest.mark.parametrize("default_system", [None, ""])
def test_chat_prompt_without_default_system(default_system: str | None) -> None:
    assert chat_prompt(chat(messages=[USER]), default_system).messages == (USER,)


def test_chat_prompt_messages_carry_what_is_given() -> None:
    request = chat(messages=[{"role": "User", "content": "x", "thinking": "hmm", "tool_name": "t"}])
    prompt = chat_prompt(request, None)
    assert prompt.messages == ({"role": "user", "content": "x", "thinking": "hmm", "tool_name": "t"},)
    assert prompt.context == ()


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"role": "user", "content": "x"}, {"role": "user", "content": "x"}),
        ({"role": "user"}, {"role": "user", "content": ""}),
        ({"role": "user", "content": "look", "images": ["aGk="]}, {"role": "user", "content": "look", "images": ["aGk="]}),
        ({"role": "user", "content": "x", "images": []}, {"role": "user", "content": "x", "images": []}),
        (
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
        ),
        (
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"index": 0, "name": "f", "arguments": {}}}
            ]},
            {"role": "assistant", "content": "", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"index": 0, "name": "f", "arguments": {}}}
            ]},
        ),
        (
            {"role": "tool", "content": "20C", "tool_name": "weather", "tool_call_id": "c1"},
            {"role": "tool", "content": "20C", "tool_name": "weather", "tool_call_id": "c1"},
        ),
        ({"role": "assistant", "content": "a", "thinking": "t"}, {"role": "assistant", "content": "a", "thinking": "t"}),
        ({"role": "TOOL", "content": "r", "unknown": 1}, {"role": "tool", "content": "r"}),
    ],
)
def test_chat_prompt_message_fields(message: dict[str, Any], expected: dict[str, Any]) -> None:
    assert chat_prompt(chat(messages=[message]), None).messages == (expected,)


@pytest.mark.parametrize(
    ("messages", "default_system", "expected"),
    [
        ([USER], None, (*EXAMPLES, USER)),
        ([USER], "Def.", (SYSTEM, *EXAMPLES, USER)),
        ([USER], "", (*EXAMPLES, USER)),
        # The request's own system message replaces the default; the examples stay first, as in Ollama.
        (
            [{"role": "system", "content": "Mine."}, USER],
            "Def.",
            (*EXAMPLES, {"role": "system", "content": "Mine."}, USER),
        ),
        ([], "Def.", (SYSTEM, *EXAMPLES)),
    ],
)
def test_chat_prompt_examples_after_system(
    messages: list[dict[str, Any]], default_system: str | None, expected: tuple[dict[str, Any], ...]
) -> None:
    assert chat_prompt(chat(messages=messages), default_system, EXAMPLES).messages == expected


def test_chat_prompt_copies_examples() -> None:
    examples = [{"role": "user", "content": "ex"}]
    prompt = chat_prompt(chat(messages=[USER]), None, examples)
    prompt.messages[0]["content"] = "changed"
    assert examples == [{"role": "user", "content": "ex"}]


def test_chat_prompt_empty() -> None:
    assert chat_prompt(chat(), "sys").messages == ({"role": "system", "content": "sys"},)


# --- generate_prompt ----------------------------------------------------------------------------


@pytest.mark.parametrize(("prompt", "text"), [("<|im_start|>user\nhi", "<|im_start|>user\nhi"), (None, "")])
def test_generate_raw(prompt: str | None, text: str) -> None:
    assert generate_prompt(generate(prompt=prompt, raw=True), "ignored default") == TextPrompt(text=text)


@pytest.mark.parametrize(
    "extra",
    [{"system": "s"}, {"template": "{{ .Prompt }}"}, {"context": [1, 2]}],
)
def test_generate_raw_rejects_template_system_context(extra: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest, match="raw mode does not support template, system, or context"):
        generate_prompt(generate(prompt="x", raw=True, **extra), None)


@pytest.mark.parametrize(
    ("body", "default_system", "messages"),
    [
        ({"prompt": "hi"}, None, (USER,)),
        ({"prompt": "hi"}, "Def.", ({"role": "system", "content": "Def."}, USER)),
        ({"prompt": "hi", "system": "Own."}, "Def.", ({"role": "system", "content": "Own."}, USER)),
        ({"prompt": "hi", "system": ""}, "Def.", (USER,)),
        ({}, None, ({"role": "user", "content": ""},)),
        ({"prompt": "hi", "raw": False}, None, (USER,)),
    ],
)
def test_generate_chat(body: dict[str, Any], default_system: str | None, messages: tuple[dict[str, Any], ...]) -> None:
    prompt = generate_prompt(generate(**body), default_system)
    assert isinstance(prompt, ChatPrompt)
    assert prompt.messages == messages
    assert prompt.context == ()


def test_generate_carries_context() -> None:
    prompt = generate_prompt(generate(prompt="more", context=[5, 6, 7]), None)
    assert isinstance(prompt, ChatPrompt)
    assert prompt.context == (5, 6, 7)
    assert prompt.messages == ({"role": "user", "content": "more"},)


@pytest.mark.parametrize(
    ("body", "default_system", "expected"),
    [
        ({"prompt": "hi"}, None, ChatPrompt(messages=(*EXAMPLES, USER))),
        ({"prompt": "hi"}, "Def.", ChatPrompt(messages=(SYSTEM, *EXAMPLES, USER))),
        (
            {"prompt": "hi", "system": "Own."},
            "Def.",
            ChatPrompt(messages=({"role": "system", "content": "Own."}, *EXAMPLES, USER)),
        ),
        # A continued conversation (context) already went through the examples.
        ({"prompt": "hi", "context": [1, 2]}, "Def.", ChatPrompt(messages=(SYSTEM, USER), context=(1, 2))),
        ({"prompt": "hi", "raw": True}, "Def.", TextPrompt(text="hi")),
    ],
)
def test_generate_examples(body: dict[str, Any], default_system: str | None, expected: Any) -> None:
    assert generate_prompt(generate(**body), default_system, EXAMPLES) == expected


@pytest.mark.parametrize(("images", "user"), [(["aGk=", "aGk="], {**USER, "images": ["aGk=", "aGk="]}), ([], USER)])
def test_generate_images_go_with_the_prompt(images: list[str], user: dict[str, Any]) -> None:
    assert generate_prompt(generate(prompt="hi", images=images), None) == ChatPrompt(messages=(user,))


@pytest.mark.parametrize(
    ("body", "default_system", "template", "expected"),
    [
        # the request's template
        ({"prompt": "hi", "template": "{{ .Prompt }}"}, "Def.", None, TextPrompt(text="hi")),
        ({"prompt": "hi", "template": LEGACY}, "Def.", None, TextPrompt(text="S:Def. P:hi")),
        ({"prompt": "hi", "template": LEGACY, "system": "Own."}, "Def.", None, TextPrompt(text="S:Own. P:hi")),
        ({"prompt": "hi", "template": LEGACY, "system": ""}, "Def.", None, TextPrompt(text="P:hi")),
        ({"template": LEGACY}, None, None, TextPrompt(text="P:")),
        # the model's template, which the request's replaces
        ({"prompt": "hi"}, None, LEGACY, TextPrompt(text="P:hi")),
        ({"prompt": "hi", "template": "<{{ .Prompt }}>"}, None, LEGACY, TextPrompt(text="<hi>")),
        (
            {"prompt": "hi"},
            "Def.",
            CHATML,
            TextPrompt(text="<|im_start|>system\nDef.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"),
        ),
        ({"prompt": "hi", "context": [3, 4]}, None, LEGACY, TextPrompt(text="P:hi", context=(3, 4))),
        # think values reach the template
        ({"prompt": "p", "think": True}, None, "{{ .Think }} {{ .Prompt }}", TextPrompt(text="true p")),
        ({"prompt": "p"}, None, "{{ .Think }} {{ .Prompt }}", TextPrompt(text="false p")),
        # fill in the middle: a template that uses .Suffix renders it, without one it is FillInMiddle
        ({"prompt": "def f(", "suffix": "return 1"}, None, FIM, TextPrompt(text="<PRE> def f( <SUF>return 1 <MID>")),
        ({"prompt": "def f(", "suffix": "return 1"}, "Def.", None, FillInMiddle(prefix="def f(", suffix="return 1")),
        ({"suffix": "return 1"}, None, None, FillInMiddle(prefix="", suffix="return 1")),
        ({"prompt": "hi", "suffix": ""}, None, None, ChatPrompt(messages=(USER,))),
    ],
)
def test_generate_template(
    body: dict[str, Any], default_system: str | None, template: str | None, expected: Any
) -> None:
    assert generate_prompt(generate(**body), default_system, (), template) == expected


def test_generate_template_gets_examples() -> None:
    prompt = generate_prompt(generate(prompt="hi"), "Def.", EXAMPLES, CHATML)
    assert prompt == TextPrompt(
        text="<|im_start|>system\nDef.<|im_end|>\n"
        "<|im_start|>user\nIs Toronto in Canada?<|im_end|>\n"
        "<|im_start|>assistant\nyes<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_generate_template_skips_examples_with_context() -> None:
    prompt = generate_prompt(generate(prompt="hi", context=[9]), None, EXAMPLES, CHATML)
    assert prompt == TextPrompt(text="<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", context=(9,))


def test_generate_legacy_template_with_examples() -> None:
    # Ollama's legacy collation: one System/Prompt/Response turn per example pair, the last cut.
    assert generate_prompt(generate(prompt="hi"), "S", EXAMPLES, LEGACY) == TextPrompt(
        text="S:S P:Is Toronto in Canada?yesP:hi"
    )


def test_raw_ignores_model_template_and_examples() -> None:
    assert generate_prompt(generate(prompt="x", raw=True), "Def.", EXAMPLES, LEGACY) == TextPrompt(text="x")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ .Prompt", "template:1:1: unclosed action"),
        ("{{ frobnicate .Prompt }}", 'template:1:4: function "frobnicate" not defined'),
        ("{{ .Prompt.X }}", "template:1:4: at <.Prompt.X>: can't evaluate field X in type string"),
    ],
)
@pytest.mark.parametrize("where", ["request", "model"])
def test_generate_invalid_template_is_400(template: str, message: str, where: str) -> None:
    body = {"prompt": "hi", "template": template} if where == "request" else {"prompt": "hi"}
    with pytest.raises(InvalidRequest) as info:
        generate_prompt(generate(**body), None, (), None if where == "request" else template)
    assert info.value.status_code == 400
    assert info.value.message == message


def test_ollama_template_and_uses() -> None:
    assert ollama_template(CHATML, [USER]) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert template_uses(FIM, "Suffix") is True
    assert template_uses(LEGACY, "Suffix") is False
    with pytest.raises(InvalidRequest) as info:
        template_uses("{{ if }}", "Suffix")
    assert info.value.message == "template:1:7: missing value for if"


# --- drop_oldest_turn -----------------------------------------------------------------------------

S = {"role": "system", "content": "s"}
U1 = {"role": "user", "content": "1"}
A1 = {"role": "assistant", "content": "a1"}
U2 = {"role": "user", "content": "2"}


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ((S, U1, A1, U2), (S, A1, U2)),
        ((S, A1, U2), (S, U2)),
        ((U1, A1, U2), (A1, U2)),
        ((S, S, U1, U2), (S, S, U2)),
        ((S, U2), None),
        ((U2,), None),
        ((), None),
        ((S, S, U2), None),
    ],
)
def test_drop_oldest_turn(messages: tuple[dict[str, Any], ...], expected: tuple[dict[str, Any], ...] | None) -> None:
    assert drop_oldest_turn(messages) == expected


def test_drop_oldest_turn_repeats_until_nothing_left() -> None:
    messages: tuple[dict[str, Any], ...] | None = (S, U1, A1, U2)
    seen = []
    while messages is not None:
        seen.append(len(messages))
        messages = drop_oldest_turn(messages)
    assert seen == [4, 3, 2]
