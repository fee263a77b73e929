"""Ollama's wire schema: strict on types, lenient on names, Go-compatible durations."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from pydantic import ValidationError

from vllama.ollama_api.schema import (
    ChatRequest,
    GenerateRequest,
    Message,
    ModelRequest,
    Options,
    ShowRequest,
    parse_duration,
)


def generate(**body: Any) -> GenerateRequest:
    return GenerateRequest.model_validate_json(json.dumps(body))


def chat(**body: Any) -> ChatRequest:
    return ChatRequest.model_validate_json(json.dumps(body))


# --- strict types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "m", "stream": "yes"}, "stream"),
        ({"model": 1}, "model"),
        ({"model": "m", "prompt": 5}, "prompt"),
        ({"model": "m", "raw": "true"}, "raw"),
        ({"model": "m", "context": ["a"]}, "context"),
        ({"model": "m", "options": {"temperature": "hot"}}, "temperature"),
        ({"model": "m", "options": {"top_k": True}}, "top_k"),
        ({"model": "m", "options": {"num_predict": "5"}}, "num_predict"),
        ({"model": "m", "options": {"seed": None, "num_ctx": "big"}}, "num_ctx"),
        ({"model": "m", "options": {"stop": ["a", 1]}}, "stop"),
        ({"model": "m", "options": {"stop": 5}}, "stop"),
        ({"model": "m", "options": {"ignore_eos": 1}}, "ignore_eos"),
        ({"model": "m", "options": "fast"}, "options"),
        ({"model": "m", "truncate": "no"}, "truncate"),
    ],
)
def test_wrong_types_rejected(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        GenerateRequest.model_validate_json(json.dumps(body))
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": [{"content": "no role"}]}, "role"),
        ({"model": "m", "messages": [{"role": "user", "content": 3}]}, "content"),
        ({"model": "m", "messages": [{"role": 1, "content": "x"}]}, "role"),
    ],
)
def test_chat_wrong_types_rejected(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        ChatRequest.model_validate_json(json.dumps(body))
    assert field in str(info.value)


def test_float_option_takes_integer() -> None:
    assert generate(model="m", options={"temperature": 1}).options.temperature == 1.0  # type: ignore[union-attr]


# --- lenient names --------------------------------------------------------------------------


def test_unknown_top_level_keys_ignored() -> None:
    request = generate(model="m", prompt="hi", numa=True, something_new={"x": 1})
    assert request.model == "m" and request.prompt == "hi"
    assert not hasattr(request, "numa")


def test_unknown_options_accepted_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vllama.ollama_api.schema"):
        request = generate(model="m", options={"mirostat": 2, "tfs_z": 1.0, "temperature": 0.5})
    assert request.options is not None and request.options.temperature == 0.5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("mirostat" in w and "tfs_z" in w for w in warnings), warnings


def test_known_options_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vllama.ollama_api.schema"):
        generate(model="m", options={"temperature": 0.5, "num_ctx": 2048})
    assert not [r for r in caplog.records if r.name == "vllama.ollama_api.schema"]


# --- integer options and stop -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("num_predict", 5.7, 5),
        ("num_predict", -1.0, -1),
        ("num_predict", 12, 12),
        ("seed", 42.0, 42),
        ("top_k", 39.9, 39),
        ("num_ctx", 4096.5, 4096),
        ("min_tokens", 2.2, 2),
    ],
)
def test_integer_options_truncate(key: str, value: float, expected: int) -> None:
    options = generate(model="m", options={key: value}).options
    assert getattr(options, key) == expected
    assert type(getattr(options, key)) is int


@pytest.mark.parametrize(
    ("stop", "expected"),
    [("END", ["END"]), (["a", "b"], ["a", "b"]), ([], []), (None, None)],
)
def test_stop(stop: Any, expected: Any) -> None:
    assert generate(model="m", options={"stop": stop}).options.stop == expected  # type: ignore[union-attr]


# --- keep_alive -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (300, 300.0),
        (0, 0.0),
        (-1, -1.0),
        (1.5, 1.5),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1h", 3600.0),
        ("1.5h", 5400.0),
        ("-1s", -1.0),
        ("-1m", -60.0),
        ("+5s", 5.0),
        ("0", 0.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        (".5s", 0.5),
        ("2us", 2e-6),
        ("10ns", 1e-8),
        (None, None),
    ],
)
def test_keep_alive(value: Any, seconds: float | None) -> None:
    parsed = generate(model="m", keep_alive=value).keep_alive
    if seconds is None:
        assert parsed is None
    else:
        assert parsed == pytest.approx(seconds)
    assert parse_duration(value) == (None if seconds is None else pytest.approx(seconds))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("5", "missing unit"),
        ("1.5", "missing unit"),
        ("abc", "invalid duration"),
        ("5x", "invalid duration"),
        ("m5", "invalid duration"),
        ("", "invalid duration"),
        ("5m junk", "invalid duration"),
        (True, "keep_alive"),
        ([5], "keep_alive"),
    ],
)
def test_keep_alive_invalid(value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        generate(model="m", keep_alive=value)
    assert message in str(info.value)


# --- think ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("false", False),
        ("high", "high"),
        ("medium", "medium"),
        ("low", "low"),
        ("max", "max"),
        (None, None),
    ],
)
def test_think(value: Any, expected: Any) -> None:
    assert chat(model="m", think=value).think == expected
    assert generate(model="m", think=value).think == expected


@pytest.mark.parametrize("value", ["extreme", "yes", "HIGH", 1, 0, ["high"]])
def test_think_invalid(value: Any) -> None:
    with pytest.raises(ValidationError, match="invalid think value"):
        chat(model="m", think=value)


# --- messages and names ---------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "expected"), [("USER", "user"), ("Assistant", "assistant"), ("system", "system")])
def test_message_role_lower_cased(role: str, expected: str) -> None:
    request = chat(model="m", messages=[{"role": role, "content": "x"}])
    assert request.messages is not None and request.messages[0].role == expected


def test_message_defaults() -> None:
    message = Message.model_validate_json('{"role": "user"}')
    assert message.content == "" and message.images is None and message.tool_calls is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"model": "a"}, "a"),
        ({"name": "b"}, "b"),
        ({"model": "a", "name": "b"}, "a"),
        ({}, None),
    ],
)
def test_model_name(body: dict[str, Any], expected: str | None) -> None:
    assert ModelRequest.model_validate_json(json.dumps(body)).model_name == expected
    assert ShowRequest.model_validate_json(json.dumps(body)).model_name == expected


@pytest.mark.parametrize(("stream", "streaming"), [(None, True), (True, True), (False, False)])
def test_streaming(stream: bool | None, streaming: bool) -> None:
    body = {"model": "m"} if stream is None else {"model": "m", "stream": stream}
    assert generate(**body).streaming is streaming


def test_full_generate_request() -> None:
    request = generate(
        model="qwen2.5:1.5b",
        prompt="Why?",
        suffix="",
        system="Be brief.",
        context=[1, 2, 3],
        raw=False,
        format="json",
        images=["aGk="],
        options={"temperature": 0, "stop": "\n"},
        keep_alive="10m",
        truncate=False,
        shift=True,
    )
    assert request.context == [1, 2, 3]
    assert request.format == "json"
    assert request.keep_alive == 600.0
    assert request.options is not None and request.options.stop == ["\n"]
    assert request.truncate is False and request.shift is True


def test_options_model_extra_keeps_unknown_only() -> None:
    options = Options.model_validate({"temperature": 0.1, "numa": True})
    assert options.model_extra == {"numa": True}


@pytest.mark.parametrize("field", ["seed", "num_predict", "num_ctx", "num_keep"])
def test_integers_are_go_int64_as_in_ollama(field: str) -> None:
    """A larger number is a JSON decoding error in Ollama, and the engine's encoder cannot carry it."""
    assert Options.model_validate({field: 2**63 - 1}).model_dump(exclude_none=True)[field] == 2**63 - 1
    for value in (2**63, -(2**63) - 1, 10**30):
        with pytest.raises(ValidationError):
            Options.model_validate({field: value})
