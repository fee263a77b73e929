"""Engine output -> Ollama's response bytes, checked against the typed schema."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from vllama.engine.types import Timings, TokenLogprob
from vllama.ollama_api.schema import ChatResponse, GenerateResponse, Metrics
from vllama.translate.responses import (
    RequestClock,
    StreamEncoder,
    created_at,
    final_object,
    load_object,
    logprob_objects,
    metrics,
    resumed_metrics,
)

RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
SCHEMAS = {"generate": GenerateResponse, "chat": ChatResponse}


# --- created_at -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now_ns", "text"),
    [
        (1_700_000_000_123_456_000, "2023-11-14T22:13:20.123456Z"),
        (1_700_000_000_000_000_000, "2023-11-14T22:13:20Z"),
        (1_700_000_000_000_000_001, "2023-11-14T22:13:20.000000001Z"),
        (1_700_000_000_100_000_000, "2023-11-14T22:13:20.1Z"),
        (1_700_000_000_999_999_999, "2023-11-14T22:13:20.999999999Z"),
        (1_700_000_001_000_000_000, "2023-11-14T22:13:21Z"),
        (0, "1970-01-01T00:00:00Z"),
        (1_704_067_199_500_000_000, "2023-12-31T23:59:59.5Z"),
    ],
)
def test_created_at_fixed(now_ns: int, text: str) -> None:
    assert created_at(now_ns) == text


def test_created_at_second_cache_follows_time() -> None:
    # The per-second cache must never serve a stale second, back or forth.
    assert created_at(1_700_000_000_500_000_000) == "2023-11-14T22:13:20.5Z"
    assert created_at(1_700_000_060_000_000_000) == "2023-11-14T22:14:20Z"
    assert created_at(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert created_at(1_700_000_000_250_000_000) == "2023-11-14T22:13:20.25Z"


def test_created_at_now() -> None:
    assert RFC3339NANO.match(created_at())


# --- metrics ------------------------------------------------------------------------------------

CLOCK = RequestClock(arrival_ns=1_000, submitted_ns=1_500)


def test_metrics_with_engine_timings() -> None:
    values = metrics(
        CLOCK,
        prompt_tokens=10,
        eval_tokens=5,
        timings=Timings(queue_ns=200, prefill_ns=3_000, decode_ns=5_000),
        first_token_ns=999_999,  # ignored when timings are given
        last_token_ns=999_999,
        now_ns=20_000,
    )
    assert values == {
        "total_duration": 19_000,
        "load_duration": 700,  # submitted - arrival + queue
        "prompt_eval_count": 10,
        "prompt_eval_duration": 3_000,
        "eval_count": 5,
        "eval_duration": 5_000,
    }
    Metrics.model_validate(values)


def test_metrics_fallback_to_own_marks() -> None:
    values = metrics(
        CLOCK, prompt_tokens=3, eval_tokens=4, timings=None, first_token_ns=4_000, last_token_ns=9_000, now_ns=10_000
    )
    assert values == {
        "total_duration": 9_000,
        "load_duration": 500,
        "prompt_eval_count": 3,
        "prompt_eval_duration": 2_500,
        "eval_count": 4,
        "eval_duration": 5_000,
    }


def test_metrics_omit_zero_values() -> None:
    values = metrics(
        RequestClock(arrival_ns=100, submitted_ns=100),
        prompt_tokens=7,
        eval_tokens=0,
        timings=Timings(queue_ns=0, prefill_ns=50, decode_ns=0),
        first_token_ns=0,
        last_token_ns=0,
        now_ns=300,
    )
    assert values == {"total_duration": 200, "prompt_eval_count": 7, "prompt_eval_duration": 50}


def test_metrics_default_now_is_monotonic() -> None:
    import time

    arrival = time.monotonic_ns()
    values = metrics(
        RequestClock(arrival_ns=arrival, submitted_ns=arrival),
        prompt_tokens=1,
        eval_tokens=1,
        timings=None,
        first_token_ns=arrival,
        last_token_ns=arrival,
    )
    assert 0 < values["total_duration"] < 10_000_000_000


# --- StreamEncoder ---------------------------------------------------------------------------------

TEXTS = [
    "hello",
    "",
    " ",
    'quote " and backslash \\',
    "new\nline\r\ttab",
    "héllo wörld ☃ 日本語 😀",
    "\u2028\u2029 line separators",
    "\x00\x1f control",
    '{"json": "inside"}\n',
]


def one_line(data: bytes) -> dict[str, Any]:
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1, data
    return json.loads(data)


@pytest.mark.parametrize("text", TEXTS)
def test_generate_chunk(text: str) -> None:
    data = StreamEncoder("qwen2.5:1.5b", "generate").chunk(text)
    obj = one_line(data)
    assert obj["response"] == text
    assert obj["done"] is False
    assert obj["model"] == "qwen2.5:1.5b"
    assert RFC3339NANO.match(obj["created_at"])
    parsed = GenerateResponse.model_validate_json(data)
    assert parsed.response == text and parsed.done is False


@pytest.mark.parametrize("text", TEXTS)
def test_chat_chunk(text: str) -> None:
    data = StreamEncoder("m", "chat").chunk(text)
    obj = one_line(data)
    assert obj["message"] == {"role": "assistant", "content": text}
    assert obj["done"] is False
    parsed = ChatResponse.model_validate_json(data)
    assert parsed.message.content == text


@pytest.mark.parametrize("model", ['we"ird\\name', "ns/m:tag", "模型:latest"])
@pytest.mark.parametrize("kind", ["generate", "chat"])
def test_chunk_escapes_model_name(model: str, kind: str) -> None:
    obj = one_line(StreamEncoder(model, kind).chunk("x"))  # type: ignore[arg-type]
    assert obj["model"] == model
    SCHEMAS[kind].model_validate(obj)


def test_chunk_key_order_matches_ollama() -> None:
    assert list(one_line(StreamEncoder("m", "generate").chunk("x"))) == ["model", "created_at", "response", "done"]
    assert list(one_line(StreamEncoder("m", "chat").chunk("x"))) == ["model", "created_at", "message", "done"]


METRICS = {
    "total_duration": 9,
    "load_duration": 1,
    "prompt_eval_count": 2,
    "prompt_eval_duration": 3,
    "eval_count": 4,
    "eval_duration": 5,
}


@pytest.mark.parametrize("kind", ["generate", "chat"])
@pytest.mark.parametrize("done_reason", ["stop", "length"])
def test_final(kind: str, done_reason: str) -> None:
    data = StreamEncoder("m", kind).final(done_reason, METRICS)  # type: ignore[arg-type]
    obj = one_line(data)
    assert obj["done"] is True
    assert obj["done_reason"] == done_reason
    for key, value in METRICS.items():
        assert obj[key] == value
    assert "context" not in obj
    parsed = SCHEMAS[kind].model_validate_json(data)
    assert parsed.done is True and parsed.eval_count == 4


def test_final_generate_with_context() -> None:
    data = StreamEncoder("m", "generate").final("stop", {}, context=[1, 2, 3])
    obj = one_line(data)
    assert obj["context"] == [1, 2, 3]
    assert obj["response"] == ""
    assert GenerateResponse.model_validate_json(data).context == [1, 2, 3]


def test_final_chat_never_has_context() -> None:
    data = StreamEncoder("m", "chat").final("stop", {}, context=[1, 2, 3])
    obj = one_line(data)
    assert "context" not in obj
    assert obj["message"] == {"role": "assistant", "content": ""}
    ChatResponse.model_validate_json(data)


@pytest.mark.parametrize("message", ["boom", 'quote " \n newline', "ünïcode"])
def test_error_line(message: str) -> None:
    assert one_line(StreamEncoder("m", "generate").error(message)) == {"error": message}


# --- final_object / load_object -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "context", "has_context"),
    [("generate", [4, 5], True), ("generate", None, False), ("generate", [], False), ("chat", [4, 5], False)],
)
def test_final_object(kind: str, context: list[int] | None, has_context: bool) -> None:
    obj = final_object(kind, "m", "the answer", "stop", {"eval_count": 3}, context)  # type: ignore[arg-type]
    assert ("context" in obj) is has_context
    if kind == "generate":
        assert obj["response"] == "the answer"
    else:
        assert obj["message"] == {"role": "assistant", "content": "the answer"}
    assert obj["eval_count"] == 3
    assert obj["done"] is True and obj["done_reason"] == "stop"
    SCHEMAS[kind].model_validate_json(json.dumps(obj))


@pytest.mark.parametrize("kind", ["generate", "chat"])
@pytest.mark.parametrize(("unload", "reason"), [(False, "load"), (True, "unload")])
def test_load_object(kind: str, unload: bool, reason: str) -> None:
    obj = load_object(kind, "m", unload)  # type: ignore[arg-type]
    assert obj["done"] is True
    assert obj["done_reason"] == reason
    assert not set(obj) & set(METRICS)
    assert "context" not in obj
    SCHEMAS[kind].model_validate_json(json.dumps(obj))


# --- logprobs ---------------------------------------------------------------------------------

CHOSEN = TokenLogprob("é", -0.25, (("é", -0.25), ("e", -1.5)))


@pytest.mark.parametrize("kind", ["generate", "chat"])
def test_chunk_with_logprobs(kind: str) -> None:
    line = StreamEncoder("m", kind).chunk("é", (CHOSEN,))  # type: ignore[arg-type]
    obj = json.loads(line)
    SCHEMAS[kind].model_validate(obj)
    assert obj["logprobs"] == [{
        "token": "é", "logprob": -0.25, "bytes": [195, 169],
        "top_logprobs": [{"token": "é", "logprob": -0.25, "bytes": [195, 169]},
                         {"token": "e", "logprob": -1.5, "bytes": [101]}],
    }]


def test_logprobs_without_alternatives_leave_them_out() -> None:
    (entry,) = logprob_objects([TokenLogprob("a", -0.5)])
    assert entry == {"token": "a", "logprob": -0.5, "bytes": [97]}


def test_forbidden_tokens_get_a_finite_logprob() -> None:
    # A token an output constraint masked has logprob -inf, which JSON cannot carry.
    (entry,) = logprob_objects([TokenLogprob("{", 0.0, (("{", 0.0), ("x", float("-inf"))))])
    assert entry["top_logprobs"][1]["logprob"] == -9999.0
    assert json.loads(json.dumps(entry)) == entry


@pytest.mark.parametrize("kind", ["generate", "chat"])
def test_final_object_carries_all_logprobs(kind: str) -> None:
    obj = final_object(kind, "m", "ab", "stop", {}, None, [TokenLogprob("a", -0.1), TokenLogprob("b", -0.2)])  # type: ignore[arg-type]
    SCHEMAS[kind].model_validate(obj)
    assert [e["token"] for e in obj["logprobs"]] == ["a", "b"]
    assert "logprobs" not in final_object(kind, "m", "ab", "stop", {})  # type: ignore[arg-type]


# --- resumed_metrics -------------------------------------------------------------------------------
# An answer a second replica finished: its figures are the whole answer's, as the client saw it.


def test_resumed_metrics_span_both_attempts() -> None:
    values = resumed_metrics(
        RequestClock(arrival_ns=1_000, submitted_ns=50_000),  # submitted: when the second replica's engine took it
        prompt_tokens=10,
        eval_tokens=8,
        load_ns=300,  # the first attempt's
        prefill_ns=2_000,
        first_token_ns=4_000,  # the first attempt's first token
        last_token_ns=90_000,  # the second attempt's last
        now_ns=100_000,
    )
    assert values == {
        "total_duration": 99_000,  # from the request's arrival at the ingress
        "load_duration": 300,
        "prompt_eval_count": 10,
        "prompt_eval_duration": 2_000,
        "eval_count": 8,
        "eval_duration": 86_000,  # the resumed prompt's evaluation is part of it
    }
    Metrics.model_validate(values)


def test_resumed_metrics_ignore_the_second_submission() -> None:
    common: dict[str, Any] = {
        "prompt_tokens": 3, "eval_tokens": 4, "load_ns": 10, "prefill_ns": 20,
        "first_token_ns": 100, "last_token_ns": 500, "now_ns": 600,
    }
    early = resumed_metrics(RequestClock(arrival_ns=0, submitted_ns=5), **common)
    late = resumed_metrics(RequestClock(arrival_ns=0, submitted_ns=450), **common)
    assert early == late
    assert early["load_duration"] == 10 and early["prompt_eval_duration"] == 20


def test_resumed_metrics_omit_zero_values() -> None:
    values = resumed_metrics(
        RequestClock(arrival_ns=100, submitted_ns=100),
        prompt_tokens=7,
        eval_tokens=0,
        load_ns=0,
        prefill_ns=0,
        first_token_ns=400,
        last_token_ns=400,
        now_ns=1_100,
    )
    assert values == {"total_duration": 1_000, "prompt_eval_count": 7}


def test_resumed_metrics_default_now_is_monotonic() -> None:
    import time

    arrival = time.monotonic_ns()
    values = resumed_metrics(
        RequestClock(arrival_ns=arrival, submitted_ns=arrival),
        prompt_tokens=1,
        eval_tokens=2,
        load_ns=1,
        prefill_ns=1,
        first_token_ns=arrival,
        last_token_ns=arrival + 5,
    )
    assert 0 < values["total_duration"] < 10_000_000_000
    assert values["eval_duration"] == 5
