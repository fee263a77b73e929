"""What the engine yields: vllama-owned types, so the streaming code never sees vLLM objects."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Timings:
    """Engine-side timings of one finished request, in nanoseconds.

    `queue_ns`: waiting before the engine scheduled it; `prefill_ns`: from scheduling to the first
    token (Ollama's prompt evaluation); `decode_ns`: from the first to the last token.
    """

    queue_ns: int
    prefill_ns: int
    decode_ns: int


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token's log probability, and the most likely alternatives at its position."""

    token: str
    logprob: float
    #: (token, logprob) of the most likely tokens, most likely first.
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of one tool call as the model writes it (vLLM's streaming tool parsers give the
    name first, then the arguments in fragments); pieces with the same `index` make one call."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    """A fragment of the arguments' JSON text."""


@dataclass(frozen=True, slots=True)
class EngineDelta:
    """New output of one engine step for one request (vLLM's DELTA output kind)."""

    text: str
    token_ids: tuple[int, ...]
    #: None while generating; "stop" or "length" on the last delta.
    finish_reason: str | None = None
    prompt_token_ids: tuple[int, ...] = ()
    timings: Timings | None = None
    #: One entry per token of `token_ids` when log probabilities were asked for.
    logprobs: tuple[TokenLogprob, ...] = ()
    #: Reasoning text (a thinking model's thought), when a reasoning parser split it from `text`.
    thinking: str = ""
    #: Tool calls the tool parser found in this step's output (then not in `text`).
    tool_calls: tuple[ToolCallDelta, ...] = ()
