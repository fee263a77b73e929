"""Thinking and tool calls in Ollama's response objects, checked against the typed schema
(which forbids keys Ollama does not send)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from vllama.engine.types import TokenLogprob
from vllama.ollama_api.schema import ChatResponse, GenerateResponse
from vllama.translate.responses import StreamEncoder, final_object

RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
SCHEMAS = {"generate": GenerateResponse, "chat": ChatResponse}
CALL = {"id": "call_0", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}
CALL2 = {"function": {"index": 1, "name": "get_time", "arguments": {}}}
THOUGHTS = ["hmm", 'quote " and \\ backslash', "new\nline", "日本語 😀", "\u2028"]


def one_line(data: bytes) -> dict[str, Any]:
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1, data
    return json.loads(data)


def without_time(obj: dict[str, Any]) -> dict[str, Any]:
    assert RFC3339NANO.match(obj["created_at"])
    return {k: v for k, v in obj.items() if k != "created_at"}


# --- StreamEncoder.chunk ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "text", "thinking", "tool_calls", "expected"),
    [
        ("generate", "", "hmm", None, {"model": "m", "response": "", "thinking": "hmm", "done": False}),
        ("generate", "a", "b", None, {"model": "m", "response": "a", "thinking": "b", "done": False}),
        # generate has no tool calls in Ollama's response: none are sent
        ("generate", "", "", [CALL], {"model": "m", "response": "", "done": False}),
        (
            "chat",
            "",
            "hmm",
            None,
            {"model": "m", "message": {"role": "assistant", "content": "", "thinking": "hmm"}, "done": False},
        ),
        (
            "chat",
            "",
            "",
            [CALL],
            {"model": "m", "message": {"role": "assistant", "content": "", "tool_calls": [CALL]}, "done": False},
        ),
        (
            "chat",
            "text",
            "thought",
            [CALL, CALL2],
            {
                "model": "m",
                "message": {"role": "assistant", "content": "text", "thinking": "thought", "tool_calls": [CALL, CALL2]},
                "done": False,
            },
        ),
        # nothing extra: the plain per-token chunk
        ("chat", "x", "", None, {"model": "m", "message": {"role": "assistant", "content": "x"}, "done": False}),
        ("chat", "x", "", [], {"model": "m", "message": {"role": "assistant", "content": "x"}, "done": False}),
        ("generate", "x", "", [], {"model": "m", "response": "x", "done": False}),
    ],
)
def test_chunk(
    kind: str, text: str, thinking: str, tool_calls: list[dict[str, Any]] | None, expected: dict[str, Any]
) -> None:
    data = StreamEncoder("m", kind).chunk(text, (), thinking, tool_calls)  # type: ignore[arg-type]
    obj = one_line(data)
    assert without_time(obj) == expected
    # Ollama's key order: model, created_at, then the answer, then done.
    assert list(obj) == ["model", "created_at", *list(expected)[1:]]
    if kind == "chat":
        assert list(obj["message"]) == list(expected["message"])
    SCHEMAS[kind].model_validate_json(data)


@pytest.mark.parametrize("thinking", THOUGHTS)
@pytest.mark.parametrize("kind", ["generate", "chat"])
def test_chunk_thinking_escapes(kind: str, thinking: str) -> None:
    data = StreamEncoder('we"ird', kind).chunk("", (), thinking)  # type: ignore[arg-type]
    parsed = SCHEMAS[kind].model_validate_json(data)
    assert parsed.model == 'we"ird'
    assert (parsed.thinking if kind == "generate" else parsed.message.thinking) == thinking  # type: ignore[union-attr]
    one_line(data)


@pytest.mark.parametrize("kind", ["generate", "chat"])
def test_chunk_thinking_with_logprobs(kind: str) -> None:
    data = StreamEncoder("m", kind).chunk("a", (TokenLogprob("a", -0.5),), "t")  # type: ignore[arg-type]
    obj = one_line(data)
    assert list(obj)[-2:] == ["done", "logprobs"]
    assert obj["logprobs"] == [{"token": "a", "logprob": -0.5, "bytes": [97]}]
    SCHEMAS[kind].model_validate(obj)


def test_chat_chunk_tool_calls_validate() -> None:
    parsed = ChatResponse.model_validate_json(StreamEncoder("m", "chat").chunk("", (), "", [CALL]))
    assert parsed.message.tool_calls == [CALL]
    assert parsed.message.thinking is None
    assert parsed.done is False


# --- final_object -------------------------------------------------------------------------------------------

METRICS = {"total_duration": 9, "eval_count": 4}


@pytest.mark.parametrize(
    ("kind", "thinking", "tool_calls", "answer"),
    [
        ("generate", "", None, {"response": "ok"}),
        ("generate", "why", None, {"response": "ok", "thinking": "why"}),
        ("generate", "why", [CALL], {"response": "ok", "thinking": "why"}),
        ("chat", "", None, {"message": {"role": "assistant", "content": "ok"}}),
        ("chat", "why", None, {"message": {"role": "assistant", "content": "ok", "thinking": "why"}}),
        ("chat", "", [CALL], {"message": {"role": "assistant", "content": "ok", "tool_calls": [CALL]}}),
        (
            "chat",
            "why",
            [CALL, CALL2],
            {"message": {"role": "assistant", "content": "ok", "thinking": "why", "tool_calls": [CALL, CALL2]}},
        ),
        ("chat", "", [], {"message": {"role": "assistant", "content": "ok"}}),
    ],
)
def test_final_object(kind: str, thinking: str, tool_calls: list[dict[str, Any]] | None, answer: dict[str, Any]) -> None:
    obj = final_object(
        kind, "m", "ok", "stop", METRICS, None, None, thinking=thinking, tool_calls=tool_calls  # type: ignore[arg-type]
    )
    assert without_time(obj) == {"model": "m", **answer, "done": True, "done_reason": "stop", **METRICS}
    assert list(obj) == ["model", "created_at", *answer, "done", "done_reason", *METRICS]
    SCHEMAS[kind].model_validate_json(json.dumps(obj))


def test_final_generate_thinking_context_and_logprobs() -> None:
    obj = final_object("generate", "m", "ok", "length", {}, [1, 2], [TokenLogprob("ok", -0.1)], thinking="t")
    assert without_time(obj) == {
        "model": "m",
        "response": "ok",
        "thinking": "t",
        "done": True,
        "done_reason": "length",
        "context": [1, 2],
        "logprobs": [{"token": "ok", "logprob": -0.1, "bytes": [111, 107]}],
    }
    GenerateResponse.model_validate_json(json.dumps(obj))


def test_final_chat_tool_calls_round_trip() -> None:
    obj = final_object("chat", "m", "", "stop", METRICS, thinking="plan", tool_calls=[CALL])
    parsed = ChatResponse.model_validate_json(json.dumps(obj))
    assert parsed.message.content == ""
    assert parsed.message.thinking == "plan"
    assert parsed.message.tool_calls == [CALL]
    assert parsed.done is True and parsed.done_reason == "stop" and parsed.eval_count == 4


@pytest.mark.parametrize("kind", ["generate", "chat"])
def test_encoder_final_has_no_thinking(kind: str) -> None:
    obj = one_line(StreamEncoder("m", kind).final("stop", METRICS))  # type: ignore[arg-type]
    assert "thinking" not in obj and "thinking" not in obj.get("message", {})
    assert "tool_calls" not in obj.get("message", {})
    SCHEMAS[kind].model_validate(obj)
