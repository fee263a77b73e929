"""Run a forwarded request on this replica's engine (the engine replica's side of the hop).

Glue between the request as the ingress forwards it (`hop.Call`: the raw body) and the engine:
Ollama's requests go through our own translation (`inference.py`, `embeddings.py`), OpenAI's
through vLLM's own handlers over the same engine. Answers are built here, as the bytes the client
gets, so the ingress only relays them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from vllama.engine.vllm_engine import VllmEngine
from vllama.errors import InvalidRequest
from vllama.models.describe import ModelDescription
from vllama.models.registry import CreatedModel
from vllama.models.resolve import ResolvedModel
from vllama.ollama_api.schema import ChatRequest, EmbeddingsRequest, EmbedRequest, GenerateRequest
from vllama.serve.embeddings import OllamaEmbedding
from vllama.serve.hop import Call, Piece, StreamStart
from vllama.serve.inference import OllamaInference
from vllama.translate.created import openai_body
from vllama.translate.responses import Kind

_OLLAMA_SCHEMAS = {"generate": GenerateRequest, "chat": ChatRequest}
#: Request kinds a pooling (embedding) engine serves; every other kind needs a generating one.
EMBEDDING_KINDS = frozenset({"embed", "embeddings", "embedding"})


class LocalModel:
    """The model whose engine lives in this replica."""

    def __init__(self, engine: VllmEngine, model: ResolvedModel, description: ModelDescription) -> None:
        self.name = model.name
        self.engine = engine
        self.inference = OllamaInference(engine, model, description.capabilities)
        self.embedding = OllamaEmbedding(engine)
        self.description = description

    def _check_supports(self, kind: str, echo: str) -> None:
        """Ollama's answer to asking an embedding model to generate, or the other way round."""
        if self.engine.is_embedding != (kind in EMBEDDING_KINDS):
            raise InvalidRequest(f'"{echo}" does not support {"embeddings" if kind in EMBEDDING_KINDS else kind}')

    async def stream(self, call: Call, replica: str) -> AsyncIterator[Piece]:
        """The answer in pieces; closing the iterator aborts the engine request."""
        self._check_supports(call.kind, call.echo)
        arrival_ns = time.monotonic_ns() - call.elapsed_ns
        if call.api == "ollama":
            request = _OLLAMA_SCHEMAS[call.kind].model_validate_json(call.body)
            async for piece in self.inference.stream(
                _kind(call.kind), request, arrival_ns, call.echo, call.created, call.resume, replica, call.request_id
            ):
                yield piece
            return
        result = await self.engine.openai.create(call.kind, self._openai_body(call.body, call.kind, call.created))
        start: StreamStart | None = StreamStart(replica, resumable=False)
        async for sse in result:
            yield Piece(sse.encode(), start=start)
            start = None

    def _openai_body(self, body: bytes, kind: str, created: CreatedModel | None) -> bytes:
        return body if created is None else openai_body(body, created, kind, self.description.system)

    async def once(self, call: Call) -> bytes:
        """The whole answer (`stream: false`, embeddings) as JSON bytes."""
        self._check_supports(call.kind, call.echo)
        arrival_ns = time.monotonic_ns() - call.elapsed_ns
        if call.api == "openai":
            body = self._openai_body(call.body, call.kind, call.created)
            if call.kind == "embedding":
                return await self.engine.openai.embed(body)
            result = await self.engine.openai.create(call.kind, body)
            return result.model_dump_json().encode()
        if call.kind == "embed":
            embed = EmbedRequest.model_validate_json(call.body)
            return orjson.dumps(await self.embedding.embed(embed, arrival_ns, call.echo))
        if call.kind == "embeddings":
            legacy = EmbeddingsRequest.model_validate_json(call.body)
            return orjson.dumps(await self.embedding.embeddings(legacy))
        request = _OLLAMA_SCHEMAS[call.kind].model_validate_json(call.body)
        return orjson.dumps(await self.inference.complete(
            _kind(call.kind), request, arrival_ns, call.echo, call.created, call.request_id
        ))

    def status(self) -> dict[str, Any]:
        return {
            "unfinished_requests": self.engine.num_unfinished_requests(),
            "completed_requests": self.engine.completed_requests,
            "aborted_requests": self.engine.aborted_requests,
            "engine": self.engine.settings,
        }


def _kind(kind: str) -> Kind:
    return "chat" if kind == "chat" else "generate"
