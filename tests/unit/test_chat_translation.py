"""Ollama chat -> the OpenAI chat request vLLM's chat layer takes (images, tool calls, thinking,
sampling), and streamed tool-call pieces -> Ollama's whole tool calls."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import logging
from typing import Any

import pytest

from vllama.engine.params import SamplingSettings, StructuredOutput
from vllama.engine.types import ToolCallDelta
from vllama.errors import InvalidRequest
from vllama.translate.chat import (
    ToolCallCollector,
    chat_body,
    image_data_uri,
    ollama_tool_call,
    openai_messages,
    sampling_fields,
    think_fields,
    tool_choice,
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PNG = b64(b"\x89PNG\r\n\x1a\n" + b"\x00" * 24)
JPEG = b64(b"\xff\xd8\xff\xe0" + b"\x00" * 24)
GIF87 = b64(b"GIF87a" + b"\x00" * 10)
GIF89 = b64(b"GIF89a" + b"\x00" * 10)
WEBP = b64(b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 16)
BMP = b64(b"BM" + b"\x00" * 30)
# A signature beyond the first 64 base64 characters (48 bytes) must not matter: only the head is read.
LONG_PNG = b64(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)

SAMPLING = SamplingSettings(
    temperature=0.8,
    top_p=0.9,
    top_k=40,
    min_p=0.0,
    repetition_penalty=1.0,
    presence_penalty=0.0,
    frequency_penalty=0.0,
    seed=None,
    stop=(),
    max_tokens=None,
    min_tokens=0,
    ignore_eos=False,
)
SAMPLING_FIELDS = {
    "temperature": 0.8,
    "top_p": 0.9,
    "top_k": 40,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "min_tokens": 0,
    "ignore_eos": False,
}


# --- image_data_uri -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "media"),
    [
        (PNG, "image/png"),
        (LONG_PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (GIF87, "image/gif"),
        (GIF89, "image/gif"),
        (WEBP, "image/webp"),
        (BMP, "image/bmp"),
    ],
)
def test_image_data_uri(image: str, media: str) -> None:
    assert image_data_uri(image) == f"data:{media};base64,{image}"


@pytest.mark.parametrize("uri", ["data:image/png;base64," + PNG, "data:image/jpeg;base64,abc", "data:,anything"])
def test_image_data_uri_passes_data_uris_through(uri: str) -> None:
    assert image_data_uri(uri) == uri


@pytest.mark.parametrize("image", ["not base64!!", "aGk", "====", PNG[:-1] + "*", "a" * 65])
def test_image_data_uri_invalid_base64(image: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        image_data_uri(image)
    assert info.value.message == "invalid image input: images must be base64-encoded"
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    "data",
    [b"hello world", b"", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"\x89PNX\r\n\x1a\n", b"%PDF-1.7", b"GIF90a"],
)
def test_image_data_uri_unknown_format(data: bytes) -> None:
    with pytest.raises(InvalidRequest) as info:
        image_data_uri(b64(data))
    assert info.value.message == "invalid image input: not a PNG, JPEG, WebP, GIF or BMP image"
    assert info.value.status_code == 400


# --- openai_messages ----------------------------------------------------------------------------------


def image_part(image: str, media: str = "image/png") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{image}"}}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"role": "user", "content": "hi"}, {"role": "user", "content": "hi"}),
        ({"role": "user"}, {"role": "user", "content": ""}),
        ({"role": "system", "content": None}, {"role": "system", "content": ""}),
        (
            {"role": "user", "content": "what is this?", "images": [PNG, JPEG]},
            {
                "role": "user",
                "content": [image_part(PNG), image_part(JPEG, "image/jpeg"), {"type": "text", "text": "what is this?"}],
            },
        ),
        ({"role": "user", "content": "", "images": [PNG]}, {"role": "user", "content": [image_part(PNG)]}),
        ({"role": "user", "content": "x", "images": []}, {"role": "user", "content": "x"}),
        (
            {"role": "assistant", "content": "a", "thinking": "hmm"},
            {"role": "assistant", "content": "a", "reasoning": "hmm"},
        ),
        ({"role": "assistant", "content": "a", "thinking": ""}, {"role": "assistant", "content": "a"}),
        ({"role": "user", "content": "u", "thinking": "ignored"}, {"role": "user", "content": "u"}),
        (
            {"role": "tool", "content": "20C", "tool_call_id": "given"},
            {"role": "tool", "content": "20C", "tool_call_id": "given"},
        ),
        # a tool_name with no call to answer: the name alone
        ({"role": "tool", "content": "20C", "tool_name": "weather"}, {"role": "tool", "content": "20C", "name": "weather"}),
        ({"role": "tool", "content": "20C"}, {"role": "tool", "content": "20C"}),
    ],
)
def test_openai_message(message: dict[str, Any], expected: dict[str, Any]) -> None:
    assert openai_messages([message]) == [expected]


def test_openai_messages_invalid_image_is_400() -> None:
    with pytest.raises(InvalidRequest, match="^invalid image input: images must be base64-encoded$"):
        openai_messages([{"role": "user", "content": "x", "images": ["@@@"]}])


def test_tool_calls_and_replies() -> None:
    messages = [
        {"role": "user", "content": "weather and time?"},
        {
            "role": "assistant",
            "content": "",
            "thinking": "two tools",
            "tool_calls": [
                {"function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris", "days": 2}}},
                {"id": "call_abc", "function": {"index": 1, "name": "get_time", "arguments": {}}},
            ],
        },
        {"role": "tool", "content": "20C", "tool_name": "get_weather"},
        {"role": "tool", "content": "noon", "tool_name": "get_time"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}],
        },
        {"role": "tool", "content": "25C", "tool_name": "get_weather"},
        {"role": "tool", "content": "explicit", "tool_name": "get_weather", "tool_call_id": "call_abc"},
    ]
    assert openai_messages(messages) == [
        {"role": "user", "content": "weather and time?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1_0",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'},
                },
                {"id": "call_abc", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
            "reasoning": "two tools",
        },
        {"role": "tool", "content": "20C", "tool_call_id": "call_1_0", "name": "get_weather"},
        {"role": "tool", "content": "noon", "tool_call_id": "call_abc", "name": "get_time"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_4_0", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
            ],
        },
        # the latest call of that name
        {"role": "tool", "content": "25C", "tool_call_id": "call_4_0", "name": "get_weather"},
        {"role": "tool", "content": "explicit", "tool_call_id": "call_abc", "name": "get_weather"},
    ]


def test_tool_call_arguments_are_json_strings() -> None:
    (converted,) = openai_messages(
        [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": {"q": "é", "n": [1, None]}}}]}]
    )
    arguments = converted["tool_calls"][0]["function"]["arguments"]
    assert isinstance(arguments, str)
    assert json.loads(arguments) == {"q": "é", "n": [1, None]}


def test_tool_calls_only_on_assistant_messages() -> None:
    assert openai_messages([{"role": "user", "content": "x", "tool_calls": [{"function": {"name": "f"}}]}]) == [
        {"role": "user", "content": "x"}
    ]


def test_openai_messages_does_not_mutate() -> None:
    messages = [
        {"role": "user", "content": "x", "images": [PNG]},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
    ]
    before = copy.deepcopy(messages)
    openai_messages(messages)
    assert messages == before


# --- tool_choice, think_fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ("get_weather", {"type": "function", "function": {"name": "get_weather"}}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "function", "function": {"name": "f"}}),
        ({"function": {"name": "f", "extra": 1}}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice(value: Any, expected: Any) -> None:
    assert tool_choice(value) == expected


@pytest.mark.parametrize("value", ["", 3, True, ["auto"], {}, {"function": {}}, {"function": {"name": 3}}, {"name": "f"}])
def test_tool_choice_invalid(value: Any) -> None:
    with pytest.raises(InvalidRequest) as info:
        tool_choice(value)
    assert info.value.message == 'tool_choice must be "auto", "none", "required" or the name of a tool'
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    ("think", "expected"),
    [
        (None, {}),
        (True, {"chat_template_kwargs": {"enable_thinking": True}}),
        (False, {"chat_template_kwargs": {"enable_thinking": False}}),
        ("low", {"chat_template_kwargs": {"enable_thinking": True}, "reasoning_effort": "low"}),
        ("medium", {"chat_template_kwargs": {"enable_thinking": True}, "reasoning_effort": "medium"}),
        ("high", {"chat_template_kwargs": {"enable_thinking": True}, "reasoning_effort": "high"}),
    ],
)
def test_think_fields(think: bool | str | None, expected: dict[str, Any]) -> None:
    assert think_fields(think) == expected


# --- sampling_fields ----------------------------------------------------------------------------------


SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}}


@pytest.mark.parametrize(
    ("changes", "extra"),
    [
        ({}, {}),
        ({"seed": 0}, {"seed": 0}),
        ({"seed": 42}, {"seed": 42}),
        ({"stop": ("a", "b")}, {"stop": ["a", "b"]}),
        ({"max_tokens": 7}, {}),  # set later, once the prompt's length is known
        ({"logprobs": 0}, {"logprobs": True, "top_logprobs": 0}),
        ({"logprobs": 5}, {"logprobs": True, "top_logprobs": 5}),
        ({"thinking_token_budget": 0}, {"thinking_token_budget": 0}),
        ({"thinking_token_budget": 256}, {"thinking_token_budget": 256}),
        ({"structured": StructuredOutput()}, {"response_format": {"type": "json_object"}}),
        (
            {"structured": StructuredOutput(json_schema=SCHEMA)},
            {"response_format": {"type": "json_schema", "json_schema": {"name": "format", "schema": SCHEMA}}},
        ),
        (
            {"min_tokens": 3, "ignore_eos": True, "temperature": 0.0},
            {"min_tokens": 3, "ignore_eos": True, "temperature": 0.0},
        ),
    ],
)
def test_sampling_fields(changes: dict[str, Any], extra: dict[str, Any]) -> None:
    assert sampling_fields(dataclasses.replace(SAMPLING, **changes)) == {**SAMPLING_FIELDS, **extra}


# --- chat_body ------------------------------------------------------------------------------------------

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


def test_chat_body_plain() -> None:
    assert chat_body("m", [{"role": "user", "content": "hi"}], SAMPLING) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        **SAMPLING_FIELDS,
    }


def test_chat_body_everything() -> None:
    sampling = dataclasses.replace(SAMPLING, seed=1, logprobs=2)
    body = chat_body(
        "qwen3:0.6b",
        [{"role": "user", "content": "look", "images": [PNG]}],
        sampling,
        tools=[TOOL],
        choice="get_weather",
        think="high",
    )
    assert body == {
        "model": "qwen3:0.6b",
        "messages": [{"role": "user", "content": [image_part(PNG), {"type": "text", "text": "look"}]}],
        "stream": True,
        "tools": [TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "chat_template_kwargs": {"enable_thinking": True},
        "reasoning_effort": "high",
        **SAMPLING_FIELDS,
        "seed": 1,
        "logprobs": True,
        "top_logprobs": 2,
    }
    assert body["tools"][0] is not TOOL  # a copy


@pytest.mark.parametrize(
    ("tools", "choice", "expected"),
    [
        (None, "required", {}),  # no tools: no tool_choice either
        ([], "required", {}),
        ([TOOL], None, {"tools": [TOOL]}),
        ([TOOL], "none", {"tools": [TOOL], "tool_choice": "none"}),
    ],
)
def test_chat_body_tools(tools: list[dict[str, Any]] | None, choice: Any, expected: dict[str, Any]) -> None:
    body = chat_body("m", [], SAMPLING, tools=tools, choice=choice, think=False)
    assert body == {
        "model": "m",
        "messages": [],
        "stream": True,
        **expected,
        "chat_template_kwargs": {"enable_thinking": False},
        **SAMPLING_FIELDS,
    }


def test_chat_body_invalid_tool_choice() -> None:
    with pytest.raises(InvalidRequest, match="tool_choice"):
        chat_body("m", [], SAMPLING, tools=[TOOL], choice=7)


# --- ToolCallCollector and ollama_tool_call ------------------------------------------------------------------


def weather(index: int = 0, id: str | None = "call_0", city: str = "Paris") -> dict[str, Any]:
    call: dict[str, Any] = {"function": {"index": index, "name": "get_weather", "arguments": {"city": city}}}
    return {"id": id, **call} if id else call


def test_collector_two_calls() -> None:
    collector = ToolCallCollector()
    assert collector.add([ToolCallDelta(0, id="call_0", name="get_weather")]) == []
    assert collector.add([ToolCallDelta(0, arguments='{"ci')]) == []
    assert collector.add([ToolCallDelta(0, arguments='ty": "Paris"}')]) == []
    # call 1 starts: call 0 is complete
    assert collector.add([ToolCallDelta(1, id="call_1", name="get_time", arguments="{")]) == [weather()]
    assert collector.add([ToolCallDelta(1, arguments='"tz": "UTC"}')]) == []
    assert collector.finish() == [
        {"id": "call_1", "function": {"index": 1, "name": "get_time", "arguments": {"tz": "UTC"}}}
    ]
    assert collector.finish() == []  # each call once


def test_collector_pieces_of_both_calls_in_one_step() -> None:
    collector = ToolCallCollector()
    done = collector.add([
        ToolCallDelta(0, id="call_0", name="get_weather", arguments='{"city": "Paris"}'),
        ToolCallDelta(1, id="call_1", name="get_weather", arguments='{"city": '),
    ])
    assert done == [weather()]
    assert collector.add([ToolCallDelta(1, arguments='"Rome"}')]) == []
    assert collector.finish() == [weather(1, "call_1", "Rome")]


def test_collector_name_in_pieces_and_late_id() -> None:
    collector = ToolCallCollector()
    collector.add([ToolCallDelta(0, name="get_"), ToolCallDelta(0, name="weather", id="call_0")])
    collector.add([ToolCallDelta(0, id="ignored", arguments='{"city": "Paris"}')])
    assert collector.finish() == [weather()]


def test_collector_drops_a_call_whose_arguments_never_came() -> None:
    # The name streamed, then the output was cut short: Ollama never sends half a call.
    collector = ToolCallCollector()
    collector.add([ToolCallDelta(0, name="now")])
    assert collector.finish() == []
    collector.add([ToolCallDelta(1, name="now", arguments="{}")])
    assert collector.finish() == [{"function": {"index": 1, "name": "now", "arguments": {}}}]


def test_collector_nothing() -> None:
    collector = ToolCallCollector()
    assert collector.add([]) == []
    assert collector.finish() == []


@pytest.mark.parametrize("arguments", ['{"city": "Par', "[1, 2]", '"a string"', "null", "{} extra"])
def test_collector_drops_calls_without_an_object(arguments: str, caplog: pytest.LogCaptureFixture) -> None:
    collector = ToolCallCollector()
    collector.add([ToolCallDelta(0, id="call_0", name="get_weather", arguments=arguments)])
    with caplog.at_level(logging.WARNING, logger="vllama.translate.chat"):
        assert collector.add([ToolCallDelta(1, id="call_1", name="get_weather", arguments='{"city": "Rome"}')]) == []
    assert "dropping a tool call" in caplog.text
    assert collector.finish() == [weather(1, "call_1", "Rome")]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((0, "c", "f", '{"a": 1}'), {"id": "c", "function": {"index": 0, "name": "f", "arguments": {"a": 1}}}),
        ((2, None, "f", '{"a": 1}'), {"function": {"index": 2, "name": "f", "arguments": {"a": 1}}}),
        ((0, "", "f", "  "), None),
        ((0, "c", "f", {"a": [1, 2]}), {"id": "c", "function": {"index": 0, "name": "f", "arguments": {"a": [1, 2]}}}),
        (
            (0, "c", "f", '{"nested": {"x": null}}'),
            {"id": "c", "function": {"index": 0, "name": "f", "arguments": {"nested": {"x": None}}}},
        ),
        ((0, "c", "", '{"a": 1}'), None),
        ((0, "c", "f", "not json"), None),
        ((0, "c", "f", "[]"), None),
    ],
)
def test_ollama_tool_call(args: tuple[Any, ...], expected: dict[str, Any] | None) -> None:
    call = ollama_tool_call(*args)
    assert call == expected
    if call is not None:
        assert list(call) == (["id", "function"] if "id" in call else ["function"])
        assert list(call["function"]) == ["index", "name", "arguments"]
