"""Run Ollama's embedding requests on this replica's pooling engine.

Glue between the pure functions of `vllama.translate.embeddings` and the engine adapter: frame
and fit each input, embed them all at once (the engine batches them), shape the vectors.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from vllama.engine.vllm_engine import VllmEngine
from vllama.ollama_api.schema import EmbeddingsRequest, EmbedRequest
from vllama.translate.embeddings import check_dimensions, embed_inputs, embed_response, normalized


class OllamaEmbedding:
    def __init__(self, engine: VllmEngine) -> None:
        self.engine = engine

    async def embed(self, request: EmbedRequest, arrival_ns: int, echo: str) -> dict[str, Any]:
        """`/api/embed`: L2-normalised vectors, cut to `dimensions` if asked."""
        texts = embed_inputs(request.input)
        check_dimensions(request.dimensions)
        truncate = request.truncate is not False
        prompts = [self.engine.encode_for_embedding(text, truncate=truncate) for text in texts]
        submitted_ns = time.monotonic_ns()
        vectors = await self._embed_all(prompts)
        now = time.monotonic_ns()
        metric_values = {"total_duration": now - arrival_ns, "load_duration": submitted_ns - arrival_ns}
        shaped = [normalized(v, request.dimensions) for v in vectors]
        return embed_response(echo, shaped, sum(len(p) for p in prompts), metric_values)

    async def embeddings(self, request: EmbeddingsRequest) -> dict[str, Any]:
        """`/api/embeddings` (legacy): one vector, as the model pooled it (not normalised)."""
        if not request.prompt:
            return {"embedding": []}
        (vector,) = await self._embed_all([self.engine.encode_for_embedding(request.prompt, truncate=True)])
        return {"embedding": vector}

    async def _embed_all(self, prompts: list[list[int]]) -> list[list[float]]:
        request_id = f"embed-{uuid.uuid4().hex}"
        return list(await asyncio.gather(*(self.engine.embed(p, f"{request_id}-{i}") for i, p in enumerate(prompts))))
