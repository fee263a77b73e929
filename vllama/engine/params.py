"""Engine-neutral request parameters: what translation produces and the engine adapter consumes.

Frozen dataclasses owned by vllama, not vLLM types, so that the translation layer is pure and
testable without vLLM installed (vllm.SamplingParams is built from these in one function of
`vllama.engine.vllm_engine`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StructuredOutput:
    """Constrain the output to JSON (Ollama's `format`, OpenAI's `response_format`)."""

    #: A JSON schema the output must validate against; None: any JSON object (`format: "json"`).
    json_schema: dict[str, Any] | None = None


@dataclass(frozen=True)
class SamplingSettings:
    """Sampling, after defaults were applied. Names are vLLM's (so the adapter is a plain copy)."""

    temperature: float
    top_p: float
    top_k: int
    min_p: float
    repetition_penalty: float
    presence_penalty: float
    frequency_penalty: float
    seed: int | None
    stop: tuple[str, ...]
    #: None: until the context is full (the adapter computes the room left after the prompt).
    max_tokens: int | None
    min_tokens: int
    ignore_eos: bool
    structured: StructuredOutput | None = None
    #: Log probabilities: None for none, else how many most likely alternatives to report per
    #: token besides the chosen one (Ollama's `top_logprobs`, 0-20).
    logprobs: int | None = None
    #: Most tokens a thinking model may think before vLLM ends the thought (vLLM's extension).
    thinking_token_budget: int | None = None


@dataclass(frozen=True)
class ContextLimits:
    """How much context one request may use: Ollama's `num_ctx`, capped by the engine's."""

    num_ctx: int
    truncate: bool


@dataclass(frozen=True)
class ChatPrompt:
    """Messages to render through the model's own chat template."""

    messages: tuple[dict[str, Any], ...]
    #: Token ids of earlier turns (Ollama's deprecated `context` on generate), put before the prompt.
    context: tuple[int, ...] = ()


@dataclass(frozen=True)
class TextPrompt:
    """A prompt used verbatim (Ollama's `raw`, or what an Ollama template rendered)."""

    text: str
    #: Token ids of earlier turns (Ollama's `context`), put before the prompt.
    context: tuple[int, ...] = ()


@dataclass(frozen=True)
class FillInMiddle:
    """Ollama's `suffix`: the model writes what goes between `prefix` and `suffix`, prompted with
    its fill-in-the-middle tokens (prefix, suffix, middle: the PSM order code models train on)."""

    prefix: str
    suffix: str
