"""Ollama `options` -> engine sampling settings.

Precedence, highest first: the request's `options`, the model's parameters in the serve config
(what an Ollama Modelfile's PARAMETER lines say), the model's own `generation_config.json`
(sampling defaults chosen by its authors, as vLLM's server applies them), then Ollama's defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from vllama.engine.params import ContextLimits, SamplingSettings, StructuredOutput
from vllama.errors import InvalidRequest
from vllama.ollama_api.schema import Options

logger = logging.getLogger(__name__)

#: Ollama's `DefaultOptions()` for the options that reach sampling.
OLLAMA_DEFAULTS: Mapping[str, Any] = {
    "temperature": 0.8,
    "top_p": 0.9,
    "top_k": 40,
    "min_p": 0.0,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "seed": -1,
    "num_predict": -1,
}

#: generation_config.json keys (vLLM's names) -> Ollama option names.
_GENERATION_CONFIG_TO_OLLAMA = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "max_new_tokens": "num_predict",
}

# vLLM rejects values outside these ranges; Ollama (llama.cpp) clamps silently. We answer 400 with
# the allowed range instead of clamping: a client asking for temperature 5 should learn it got 2.
_RANGES = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "min_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}


def model_defaults(generation_config: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """Merge, in Ollama option names, the model's generation_config under the config's parameters."""
    merged = dict(OLLAMA_DEFAULTS)
    for key, value in generation_config.items():
        if key in _GENERATION_CONFIG_TO_OLLAMA and value is not None:
            merged[_GENERATION_CONFIG_TO_OLLAMA[key]] = value
    merged.update({k: v for k, v in parameters.items() if v is not None})
    if isinstance(merged.get("stop"), str):  # a Modelfile's single `PARAMETER stop "..."`
        merged["stop"] = [merged["stop"]]
    return merged


def options_to_sampling(options: Options | None, defaults: Mapping[str, Any]) -> SamplingSettings:
    """Resolve one request's sampling settings. Raises `InvalidRequest` for values vLLM cannot take."""
    given = options.model_dump(exclude_none=True, exclude=set(options.model_extra or ())) if options else {}
    value = {**defaults, **given}.get

    for key, (low, high) in _RANGES.items():
        v = value(key)
        if v is not None and not low <= v <= high:
            raise InvalidRequest(f"option {key} must be between {low:g} and {high:g}, got {v:g}")
    if value("top_p") == 0:
        raise InvalidRequest("option top_p must be greater than 0")
    if (repeat_penalty := value("repeat_penalty")) is not None and repeat_penalty <= 0:
        raise InvalidRequest("option repeat_penalty must be greater than 0")

    num_predict = value("num_predict")
    # Ollama: -1 generates until the context is full, -2 too (it fills the context); 0 is no
    # tokens, which vLLM cannot do: one is the least it makes, so treat it as one.
    max_tokens = None if num_predict is None or num_predict < 0 else max(int(num_predict), 1)
    min_tokens = max(int(value("min_tokens") or 0), 0)
    if max_tokens is not None and min_tokens > max_tokens:
        raise InvalidRequest("option min_tokens must not be greater than num_predict")
    top_k = int(value("top_k") or 0)
    seed = value("seed")
    stop = tuple(s for s in (value("stop") or ()) if s)

    return SamplingSettings(
        temperature=float(value("temperature")),
        top_p=float(value("top_p")),
        top_k=top_k if top_k > 0 else 0,  # Ollama: 0 or negative disables top-k; vLLM spells it 0
        min_p=float(value("min_p")),
        repetition_penalty=float(repeat_penalty if repeat_penalty is not None else 1.0),
        presence_penalty=float(value("presence_penalty")),
        frequency_penalty=float(value("frequency_penalty")),
        seed=None if seed is None or seed < 0 else int(seed),  # Ollama: -1 means random
        stop=stop,
        max_tokens=max_tokens,
        min_tokens=min_tokens,
        ignore_eos=bool(value("ignore_eos")),
        thinking_token_budget=_budget(value("thinking_token_budget")),
    )


def _budget(value: Any) -> int | None:
    if value is None:
        return None
    if value < 0:
        raise InvalidRequest("option thinking_token_budget must not be negative")
    return int(value)


def context_limits(
    options: Options | None, defaults: Mapping[str, Any], *, max_model_len: int, truncate: bool | None
) -> ContextLimits:
    """Ollama's `num_ctx`, checked against the engine's context (vLLM fixes it at start).

    A `num_ctx` above the engine's `max_model_len` is capped to it, with a warning in the log:
    Ollama would reload the model with a larger context, which vLLM cannot do per request.
    """
    num_ctx = options.num_ctx if options is not None and options.num_ctx is not None else defaults.get("num_ctx")
    if num_ctx is None:
        num_ctx = max_model_len
    elif num_ctx <= 0:
        raise InvalidRequest("option num_ctx must be greater than 0")
    elif num_ctx > max_model_len:
        logger.warning("num_ctx %d exceeds the engine's max_model_len %d; using %d", num_ctx, max_model_len, max_model_len)
        num_ctx = max_model_len
    return ContextLimits(num_ctx=int(num_ctx), truncate=truncate is not False)


#: Ollama's (and OpenAI's) limit on `top_logprobs`; vLLM's default `max_logprobs` is the same 20.
MAX_TOP_LOGPROBS = 20


def structured_output(format: Any) -> StructuredOutput | None:
    """Ollama's `format`: `"json"` for any JSON object, a JSON schema object, or unset.

    As Ollama does, `null` and `""` mean unset and any other string is refused. Whether a schema
    object is a valid schema is for the engine's grammar compiler to say (it answers 400).
    """
    if format is None or format == "":
        return None
    if format == "json":
        return StructuredOutput()
    if isinstance(format, dict):
        return StructuredOutput(json_schema=format)
    raise InvalidRequest(f'invalid format: {format!r}; expected "json" or a valid JSON Schema object')


def logprobs_wanted(logprobs: bool | None, top_logprobs: int | None) -> int | None:
    """Ollama's `logprobs` / `top_logprobs` -> how many alternatives per token, or None for no
    log probabilities. Asking for alternatives implies asking for log probabilities."""
    top = top_logprobs or 0
    if not 0 <= top <= MAX_TOP_LOGPROBS:
        raise InvalidRequest(f"top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}")
    return top if logprobs or top else None
