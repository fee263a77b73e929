"""Ollama's embedding requests and answers, as pure functions.

`/api/embed` takes a string or a list of strings and answers L2-normalised vectors, cut to
`dimensions` (then normalised again) when asked; the legacy `/api/embeddings` takes one prompt
and answers the vector as the model pooled it, not normalised. The engine always hands back the
pooled vector unnormalised, so both come from the same engine output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from vllama.errors import InvalidRequest


def embed_inputs(value: Any) -> list[str]:
    """`input` of `/api/embed`: a string or a list of strings. Empty means no vectors, as Ollama
    answers `embeddings: []` to an empty input."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise InvalidRequest("invalid input type")


def check_dimensions(dimensions: int | None) -> None:
    if dimensions is not None and dimensions <= 0:
        raise InvalidRequest("dimensions must be greater than 0")


def normalized(vector: Sequence[float], dimensions: int | None = None) -> list[float]:
    """The vector cut to its first `dimensions` values (Matryoshka style), then L2-normalised."""
    cut = vector[:dimensions] if dimensions else vector
    norm = math.sqrt(math.fsum(v * v for v in cut))
    return [v / norm for v in cut] if norm > 0 else list(cut)


def embed_response(model: str, vectors: list[list[float]], prompt_tokens: int, metric_values: dict[str, int]) -> dict[str, Any]:
    """The `/api/embed` answer; zero metrics are left out (Go's omitempty)."""
    obj: dict[str, Any] = {"model": model, "embeddings": vectors}
    values = {**metric_values, "prompt_eval_count": prompt_tokens}
    obj.update({k: v for k, v in values.items() if v})
    return obj
