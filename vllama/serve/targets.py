"""Where a request for a model runs: on this replica's engine, or on the model's own deployment.

The application's first model is its HTTP ingress, so its requests never leave the replica that
received them. A request for another model (Ollama routes by the body's `model`, HAProxy only by
path) crosses one Ray hop to that model's deployment; the answer comes back as batches of
already-encoded NDJSON/SSE chunks, the first one at once (see `batched`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

import orjson

from vllama.engine.vllm_engine import VllmEngine
from vllama.errors import InvalidRequest, VllamaError
from vllama.models.describe import ModelDescription, created_description
from vllama.models.registry import CreatedModel
from vllama.models.resolve import ResolvedModel
from vllama.ollama_api.schema import ChatRequest, EmbeddingsRequest, EmbedRequest, GenerateRequest
from vllama.serve.embeddings import OllamaEmbedding
from vllama.serve.inference import OllamaInference
from vllama.translate import gotemplate
from vllama.translate.created import openai_body
from vllama.translate.responses import Kind

Api = Literal["ollama", "openai"]
_OLLAMA_SCHEMAS = {"generate": GenerateRequest, "chat": ChatRequest}
#: Request kinds a pooling (embedding) engine serves; every other kind needs a generating one.
EMBEDDING_KINDS = frozenset({"embed", "embeddings", "embedding"})


class ModelTarget(Protocol):
    """Where requests for one model name run. `created`: set when the name is a model made by
    /api/create on top of this target's model (its Modelfile parts then apply)."""

    name: str

    def stream(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> AsyncIterator[bytes]: ...

    async def once(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> bytes: ...

    async def describe(self) -> ModelDescription: ...

    async def status(self) -> dict[str, Any]: ...


class LocalModel:
    """The model whose engine lives in this replica."""

    def __init__(self, engine: VllmEngine, model: ResolvedModel, description: ModelDescription) -> None:
        self.name = model.name
        self.engine = engine
        self.inference = OllamaInference(engine, model, description.capabilities)
        self.embedding = OllamaEmbedding(engine)
        self.description = description

    def _ollama_request(self, kind: str, body: bytes, parsed: Any) -> GenerateRequest | ChatRequest:
        return parsed if parsed is not None else _OLLAMA_SCHEMAS[kind].model_validate_json(body)

    def _check_supports(self, kind: str, echo: str) -> None:
        """Ollama's answer to asking an embedding model to generate, or the other way round."""
        if self.engine.is_embedding != (kind in EMBEDDING_KINDS):
            raise InvalidRequest(f'"{echo}" does not support {"embeddings" if kind in EMBEDDING_KINDS else kind}')

    async def stream(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> AsyncIterator[bytes]:
        self._check_supports(kind, echo)
        if api == "ollama":
            request = self._ollama_request(kind, body, parsed)
            async for chunk in self.inference.stream(_kind(kind), request, arrival_ns, echo, created):
                yield chunk
            return
        result = await self.engine.openai.create(kind, self._openai_body(body, kind, created))
        async for sse in result:
            yield sse.encode()

    def _openai_body(self, body: bytes, kind: str, created: CreatedModel | None) -> bytes:
        return body if created is None else openai_body(body, created, kind, self.description.system)

    async def once(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> bytes:
        self._check_supports(kind, echo)
        if api == "openai":
            body = self._openai_body(body, kind, created)
            if kind == "embedding":
                return await self.engine.openai.embed(body)
            result = await self.engine.openai.create(kind, body)
            return result.model_dump_json().encode()
        if kind == "embed":
            embed = parsed if parsed is not None else EmbedRequest.model_validate_json(body)
            return orjson.dumps(await self.embedding.embed(embed, arrival_ns, echo))
        if kind == "embeddings":
            legacy = parsed if parsed is not None else EmbeddingsRequest.model_validate_json(body)
            return orjson.dumps(await self.embedding.embeddings(legacy))
        request = self._ollama_request(kind, body, parsed)
        return orjson.dumps(await self.inference.complete(_kind(kind), request, arrival_ns, echo, created))

    async def describe(self) -> ModelDescription:
        return self.description

    async def status(self) -> dict[str, Any]:
        return {
            "unfinished_requests": self.engine.num_unfinished_requests(),
            "completed_requests": self.engine.completed_requests,
            "aborted_requests": self.engine.aborted_requests,
            "engine": self.engine.settings,
        }


def _kind(kind: str) -> Kind:
    return "chat" if kind == "chat" else "generate"


class RemoteModel:
    """A model served by another deployment of this application, reached through its handle.

    `_by_reference=False` sends results over Serve's gRPC path instead of Ray's object store,
    about 2.6x faster per chunk (measured on Ray 2.60, see docs/ARCHITECTURE.md).
    """

    def __init__(self, name: str, handle: Any) -> None:
        self.name = name
        self._streaming = handle.options(stream=True, _by_reference=False)
        self._unary = handle.options(_by_reference=False)
        self._description: ModelDescription | None = None

    async def stream(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> AsyncIterator[bytes]:
        elapsed = time.monotonic_ns() - arrival_ns
        response = self._streaming.forward_stream.remote(api, kind, body, elapsed, echo, created)
        finished = False
        try:
            async for batch in response:
                for chunk in batch:
                    yield chunk
            finished = True
        except Exception as exc:
            raise _unwrap(exc) from None
        finally:
            if not finished:
                response.cancel()  # the client went away: stop the engine request over there too

    async def once(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> bytes:
        elapsed = time.monotonic_ns() - arrival_ns
        response = self._unary.forward_once.remote(api, kind, body, elapsed, echo, created)
        try:
            return await response
        except asyncio.CancelledError:
            response.cancel()
            raise
        except Exception as exc:
            raise _unwrap(exc) from None

    async def describe(self) -> ModelDescription:
        if self._description is None:  # static once the engine is up
            self._description = await self._unary.describe.remote()
        return self._description

    async def status(self) -> dict[str, Any]:
        return await self._unary.status.remote()


class CreatedTarget:
    """A model made by /api/create: requests run on its base model's target, carrying its
    definition along (also over the Ray hop, to wherever the base model's engine is)."""

    def __init__(self, base: ModelTarget, created: CreatedModel) -> None:
        self.name = created.name
        self.base = base
        self.created = created

    def stream(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> AsyncIterator[bytes]:
        return self.base.stream(api, kind, body, parsed, arrival_ns, echo, self.created)

    async def once(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> bytes:
        return await self.base.once(api, kind, body, parsed, arrival_ns, echo, self.created)

    async def describe(self) -> ModelDescription:
        description = created_description(await self.base.describe(), self.created)
        template = self.created.template
        if template and "insert" not in description.capabilities and gotemplate.uses(template, "Suffix"):
            description = dataclasses.replace(description, capabilities=[*description.capabilities, "insert"])
        return description

    async def status(self) -> dict[str, Any]:
        return await self.base.status()


def _unwrap(exc: Exception) -> Exception:
    """Ray wraps a replica's exception; give back our own error so it renders with its status."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, VllamaError) else exc


async def batched(source: AsyncIterator[bytes], interval_s: float) -> AsyncIterator[list[bytes]]:
    """Group chunks for a trip over Ray: the first at once (time to first token must not wait),
    then whatever the engine made within `interval_s`. An error is raised where it happened."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    end = object()

    async def pump() -> None:
        try:
            async for item in source:
                queue.put_nowait(item)
            queue.put_nowait(end)
        except BaseException as exc:  # handed to the consumer, which raises it
            queue.put_nowait(exc)

    task = asyncio.create_task(pump())
    first = True
    try:
        while True:
            item = await queue.get()
            if not first and interval_s > 0 and item is not end and not isinstance(item, BaseException):
                await asyncio.sleep(interval_s)
            first = False
            batch: list[bytes] = []
            while True:
                if item is end:
                    if batch:
                        yield batch
                    return
                if isinstance(item, BaseException):
                    if batch:
                        yield batch
                    raise item
                batch.append(item)
                if queue.empty():
                    break
                item = queue.get_nowait()
            yield batch
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()
