"""The FastAPI application the ingress serves (behind HAProxy, straight from its replicas)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import prometheus_client
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from vllama import __version__
from vllama.models.blobs import BlobStore
from vllama.models.manage import ModelManager
from vllama.models.registry import Registry
from vllama.serve import errors, openapi, routes_ollama, routes_openai
from vllama.serve.directory import ModelDirectory
from vllama.serve.guard import Guard, GuardSettings
from vllama.serve.metrics import merge
from vllama.serve.request_log import RequestLog
from vllama.serve.responses import json_response


def build_http_app(
    directory: ModelDirectory, home: Path, about: dict[str, Any] | None = None, guard: GuardSettings | None = None,
    *, log_requests: bool = True,
) -> FastAPI:
    """`about`: what `/vllama/status` says of the ingress replica that answers it; `guard`: keys,
    Host, origins and size limit (`serve/guard.py`; default: no key, no Host check);
    `log_requests`: a log line per request (`request_log.py`; its metrics are recorded anyway)."""
    app = FastAPI(title="vllama", version=__version__, docs_url="/vllama/docs", openapi_url="/vllama/openapi.json")
    app.add_middleware(Guard, settings=guard or GuardSettings())
    # Outermost (added last): refusals by the guard are requests too, logged and counted.
    app.add_middleware(RequestLog, log_requests=log_requests)
    app.state.directory = directory
    app.state.home = home
    app.state.manager = ModelManager(directory.registry or Registry(home), directory.served_name)
    app.state.blobs = BlobStore(home)
    errors.install(app)
    openapi.install(app)
    app.include_router(routes_ollama.router)
    app.include_router(routes_openai.router)

    @app.get("/vllama/status")
    async def status(request: Request) -> Response:
        """Every model's engine replicas: node, state, requests they hold, prefix-cache hits
        (vLLM's own counts, asked of each replica), and the model's totals."""
        targets = directory.targets
        states = await asyncio.gather(*(t.status() for t in targets))
        ingress = {**(about or {}), **process_footprint()}
        return json_response({
            "version": __version__, "ingress": ingress, "models": {t.name: s for t, s in zip(targets, states, strict=True)},
        })

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """vLLM's metrics of every engine replica (a `replica` label each) after this process's own."""
        per_model = await asyncio.gather(*(t.metrics() for t in directory.targets))
        body = merge(prometheus_client.generate_latest(), [pair for pairs in per_model for pair in pairs])
        return Response(body, media_type=prometheus_client.CONTENT_TYPE_LATEST)

    return app


#: Modules an ingress process must never load: it holds no engine.
ENGINE_MODULES = ("vllm", "torch", "transformers")


def process_footprint() -> dict[str, Any]:
    """This process's resident memory, and which engine modules it has loaded (none, for an ingress)."""
    rss = None
    try:
        with open(f"/proc/{os.getpid()}/status") as status:
            rss = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))
    except (OSError, StopIteration):  # not Linux
        pass
    return {"pid": os.getpid(), "rss_bytes": rss, "engine_modules": [m for m in ENGINE_MODULES if m in sys.modules]}
