"""The deployments: one replica = one vLLM engine; the first model's replicas also answer HTTP.

Ray Serve's default proxy streams every chunk through an actor hop, which cost Ray Serve LLM
two thirds of vLLM's throughput on our machines. Here the replica that owns the engine runs the
FastAPI app (`IngressModelServer`, late-bound `serve.ingress()`), and behind Ray Serve's HAProxy
mode requests go straight from HAProxy to it. Serve allows one HTTP ingress per application, so
the other models run as plain `ModelServer`s, reached through their handles. See
docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import serve

from vllama.engine.vllm_engine import ChatOptions, VllmEngine
from vllama.models.describe import ModelDescription, describe
from vllama.models.names import ModelName
from vllama.models.registry import CreatedModel, Registry
from vllama.models.resolve import ResolvedModel
from vllama.serve.directory import ModelDirectory
from vllama.serve.http import build_http_app
from vllama.serve.targets import Api, LocalModel, RemoteModel, batched

logger = logging.getLogger("vllama")


@dataclass(frozen=True)
class ServerSettings:
    accelerator: str
    forward_batch_interval_ms: float
    stream_interval_ms: float
    #: vllama's home directory (created models, blobs, pulled weights), as the driver sees it.
    home: str


class ModelServer:
    """Owns one engine; serves forwarded requests for its model."""

    async def __init__(self, model: ResolvedModel, peers: dict[str, Any], settings: ServerSettings) -> None:
        self._settings = settings
        source = model.local_source()
        chat = ChatOptions(tool_parser=model.tool_parser, think_default=model.think_default)
        self._engine = await VllmEngine.start(
            model.name, source, model.engine_kwargs, chat, stream_interval_s=settings.stream_interval_ms / 1000
        )
        description = describe(
            model,
            local_dir=_local_dir(source),
            hf_config=self._engine.hf_config,
            max_model_len=self._engine.max_model_len,
            chat_template=self._engine.chat_template,
            on_gpu=settings.accelerator == "gpu",
            embedding=self._engine.is_embedding,
            features=engine_features(self._engine),
        )
        self._local = LocalModel(self._engine, model, description)
        remotes = {ModelName.parse(name).key: RemoteModel(name, handle) for name, handle in peers.items()}
        self._directory = ModelDirectory({model.key: self._local, **remotes}, Registry(settings.home))
        # What vLLM's own server does once started (vllm.utils.gc_utils): the ~760k objects of
        # the loaded engine (torch, transformers, vLLM) move out of the collector's sight. Left
        # in it, each full collection stopped this replica, every stream in it, for ~400 ms
        # (measured on the tiny model, 2 cores); frozen, none took over 15 ms.
        from vllm.utils.gc_utils import freeze_gc_heap

        freeze_gc_heap()

    async def check_health(self) -> None:
        await self._engine.check_health()

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            self._engine = None
            engine.shutdown()

    # --- called by the ingress replica for requests naming this model ------------------------

    async def forward_stream(
        self, api: Api, kind: str, body: bytes, elapsed_ns: int, echo: str, created: CreatedModel | None = None
    ) -> AsyncIterator[list[bytes]]:
        arrival_ns = time.monotonic_ns() - elapsed_ns
        chunks = self._local.stream(api, kind, body, None, arrival_ns, echo, created)
        async for batch in batched(chunks, self._settings.forward_batch_interval_ms / 1000):
            yield batch

    async def forward_once(
        self, api: Api, kind: str, body: bytes, elapsed_ns: int, echo: str, created: CreatedModel | None = None
    ) -> bytes:
        return await self._local.once(api, kind, body, None, time.monotonic_ns() - elapsed_ns, echo, created)

    async def describe(self) -> ModelDescription:
        return await self._local.describe()

    async def status(self) -> dict[str, Any]:
        return await self._local.status()


@serve.ingress()
class IngressModelServer(ModelServer):
    """The application's HTTP ingress: the first model's engine, plus every route."""

    async def __init__(self, model: ResolvedModel, peers: dict[str, Any], settings: ServerSettings) -> None:
        await super().__init__(model, peers, settings)

    async def __serve_build_asgi_app__(self) -> Any:
        return build_http_app(self._directory, Path(self._settings.home))


def engine_features(engine: VllmEngine) -> list[str]:
    """What `capabilities` in /api/show lists beside completion, from what the engine can do."""
    flags = {"tools": engine.tools, "insert": engine.fim_tokens is not None,
             "vision": engine.is_multimodal, "thinking": engine.thinks}
    return [name for name, present in flags.items() if present]


def _local_dir(source: str) -> Path | None:
    """The directory holding the weights: the source itself, or its Hugging Face cache snapshot."""
    if Path(source).is_dir():
        return Path(source)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception:  # not in the cache (another load format): sizes are then unknown
        return None
