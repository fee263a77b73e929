"""Engine output -> Ollama's response objects, as the bytes that go on the wire.

This is the per-token path: a streamed chunk is the pre-encoded head of the object, the
timestamp, and `orjson.dumps(text)`; no dict and no model object per token. The unit tests check
every shape produced here against the typed models of `vllama.ollama_api.schema`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from vllama.engine.types import Timings, TokenLogprob

Kind = Literal["generate", "chat"]

_second_cache: tuple[int, str] = (-1, "")


def created_at(now_ns: int | None = None) -> str:
    """RFC 3339 with nanoseconds in UTC, as Go's time.RFC3339Nano writes it (trailing zeros cut)."""
    global _second_cache
    ns = time.time_ns() if now_ns is None else now_ns
    seconds, frac = divmod(ns, 1_000_000_000)
    if _second_cache[0] != seconds:
        _second_cache = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    digits = f"{frac:09d}".rstrip("0")
    return f"{_second_cache[1]}.{digits}Z" if digits else f"{_second_cache[1]}Z"


@dataclass(frozen=True, slots=True)
class RequestClock:
    """Wall-clock marks of one request in nanoseconds (time.time_ns / time.monotonic_ns)."""

    arrival_ns: int
    """When the HTTP request arrived (monotonic)."""
    submitted_ns: int
    """When the engine received it (monotonic)."""


def metrics(
    clock: RequestClock,
    *,
    prompt_tokens: int,
    eval_tokens: int,
    timings: Timings | None,
    first_token_ns: int,
    last_token_ns: int,
    now_ns: int | None = None,
) -> dict[str, int]:
    """Ollama's six metrics, in nanoseconds, measured: never estimated.

    - total_duration: from the request's arrival to now;
    - load_duration: before the engine worked on it (routing, template, tokenization, queueing);
      the model itself is always loaded;
    - prompt_eval_duration: from the engine scheduling it to the first token (prefill);
    - eval_duration: from the first token to the last.
    The engine's own timestamps are used when vLLM records them; otherwise our own.
    """
    now = time.monotonic_ns() if now_ns is None else now_ns
    if timings is not None:
        load = clock.submitted_ns - clock.arrival_ns + timings.queue_ns
        prefill, decode = timings.prefill_ns, timings.decode_ns
    else:
        load = clock.submitted_ns - clock.arrival_ns
        prefill, decode = first_token_ns - clock.submitted_ns, last_token_ns - first_token_ns
    values = {
        "total_duration": now - clock.arrival_ns,
        "load_duration": load,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": prefill,
        "eval_count": eval_tokens,
        "eval_duration": decode,
    }
    # Go's omitempty: zero metrics are left out.
    return {k: v for k, v in values.items() if v > 0}


def resumed_metrics(
    clock: RequestClock,
    *,
    prompt_tokens: int,
    eval_tokens: int,
    load_ns: int,
    prefill_ns: int,
    first_token_ns: int,
    last_token_ns: int,
    now_ns: int | None = None,
) -> dict[str, int]:
    """Ollama's metrics for an answer that a second replica finished after the first one died:
    the whole answer's, from the request's arrival to its last token. `load_ns` and
    `prefill_ns` are the first attempt's (the resumed prompt's evaluation is part of the answer's
    evaluation time, as a client waited through it between two tokens)."""
    now = time.monotonic_ns() if now_ns is None else now_ns
    values = {
        "total_duration": now - clock.arrival_ns,
        "load_duration": load_ns,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": prefill_ns,
        "eval_count": eval_tokens,
        "eval_duration": last_token_ns - first_token_ns,
    }
    return {k: v for k, v in values.items() if v > 0}


#: What a logprob of minus infinity (a token the output constraint forbade) becomes on the wire:
#: JSON has no infinity. The same stand-in as vLLM's own OpenAI server.
_NEG_INF_STAND_IN = -9999.0


def _finite(logprob: float) -> float:
    return logprob if logprob > _NEG_INF_STAND_IN else _NEG_INF_STAND_IN


def logprob_objects(entries: tuple[TokenLogprob, ...] | list[TokenLogprob]) -> list[dict[str, Any]]:
    """Ollama's `logprobs` list: `{token, logprob, bytes, top_logprobs?}` per generated token,
    with the alternatives left out when none were asked for (Go's omitempty)."""
    out = []
    for entry in entries:
        obj: dict[str, Any] = {"token": entry.token, "logprob": _finite(entry.logprob),
                               "bytes": list(entry.token.encode())}
        if entry.top:
            obj["top_logprobs"] = [
                {"token": token, "logprob": _finite(logprob), "bytes": list(token.encode())} for token, logprob in entry.top
            ]
        out.append(obj)
    return out


class StreamEncoder:
    """NDJSON lines of one streamed generate or chat response."""

    __slots__ = ("_head", "_kind", "_model")

    def __init__(self, model: str, kind: Kind) -> None:
        self._model = model
        self._kind = kind
        self._head = b'{"model":' + orjson.dumps(model) + b',"created_at":"'

    def chunk(
        self,
        text: str,
        logprobs: tuple[TokenLogprob, ...] = (),
        thinking: str = "",
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> bytes:
        if thinking or tool_calls:  # not the per-token path of a plain answer: build the object
            obj: dict[str, Any] = {"model": self._model, "created_at": created_at()}
            obj.update(_answer(self._kind, text, thinking, tool_calls))
            obj["done"] = False
            if logprobs:
                obj["logprobs"] = logprob_objects(logprobs)
            return orjson.dumps(obj) + b"\n"
        tail = b',"done":false}\n' if not logprobs else b',"done":false,"logprobs":' + orjson.dumps(logprob_objects(logprobs)) + b"}\n"
        if self._kind == "generate":
            body = b'","response":' + orjson.dumps(text) + tail
        else:
            body = b'","message":{"role":"assistant","content":' + orjson.dumps(text) + b"}" + tail
        return self._head + created_at().encode() + body

    def final(self, done_reason: str, metric_values: dict[str, int], context: list[int] | None = None) -> bytes:
        return orjson.dumps(final_object(self._kind, self._model, "", done_reason, metric_values, context)) + b"\n"

    def error(self, message: str) -> bytes:
        return orjson.dumps({"error": message}) + b"\n"


def _answer(kind: Kind, text: str, thinking: str = "", tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The answer's fields: `response` (generate) or `message` (chat), with the thought and the
    tool calls when there are any (Go's omitempty)."""
    if kind == "generate":
        fields: dict[str, Any] = {"response": text}
        if thinking:
            fields["thinking"] = thinking
        return fields
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if thinking:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"message": message}


def final_object(
    kind: Kind,
    model: str,
    text: str,
    done_reason: str,
    metric_values: dict[str, int],
    context: list[int] | None = None,
    logprobs: list[TokenLogprob] | None = None,
    thinking: str = "",
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The last object of a stream (`text` empty), or the whole answer with `stream: false`."""
    obj: dict[str, Any] = {"model": model, "created_at": created_at()}
    obj.update(_answer(kind, text, thinking, tool_calls))
    obj["done"] = True
    obj["done_reason"] = done_reason
    obj.update(metric_values)
    if kind == "generate" and context:
        obj["context"] = context
    if logprobs:
        obj["logprobs"] = logprob_objects(logprobs)
    return obj


def load_object(kind: Kind, model: str, unload: bool) -> dict[str, Any]:
    """Answer to an empty prompt: the model is loaded (or, with keep_alive 0, unloaded)."""
    return final_object(kind, model, "", "unload" if unload else "load", {})
