"""Ollama requests -> chat messages or raw text, and the features this server refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vllama.engine.params import ChatPrompt, TextPrompt
from vllama.errors import InvalidRequest
from vllama.ollama_api.schema import ChatRequest, GenerateRequest
from vllama.translate.prompts import chat_prompt, drop_oldest_turn, generate_prompt, is_load_request, unsupported_features

USER = {"role": "user", "content": "hi"}


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


def test_generate_template_override_not_yet() -> None:
    message = unsupported_features(generate(prompt="hi", template="{{ .Prompt }}"), "m")
    assert message is not None and "template" in message


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


def test_chat_prompt_messages_carry_role_and_content_only() -> None:
    request = chat(messages=[{"role": "User", "content": "x", "thinking": "hmm", "tool_name": "t"}])
    prompt = chat_prompt(request, None)
    assert prompt.messages == ({"role": "user", "content": "x"},)
    assert prompt.context == ()


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
