"""The FastAPI application each replica serves (behind HAProxy, straight from the replica)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import prometheus_client
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from vllama import __version__
from vllama.models.blobs import BlobStore
from vllama.models.manage import ModelManager
from vllama.models.registry import Registry
from vllama.serve import errors, routes_ollama, routes_openai
from vllama.serve.directory import ModelDirectory
from vllama.serve.responses import json_response


def build_http_app(directory: ModelDirectory, home: Path) -> FastAPI:
    app = FastAPI(title="vllama", version=__version__, docs_url="/vllama/docs", openapi_url="/vllama/openapi.json")
    app.state.directory = directory
    app.state.home = home
    app.state.manager = ModelManager(directory.registry or Registry(home), directory.served_name)
    app.state.blobs = BlobStore(home)
    errors.install(app)
    app.include_router(routes_ollama.router)
    app.include_router(routes_openai.router)

    @app.get("/vllama/status")
    async def status(request: Request) -> Response:
        """Engines of every model: requests they hold now. Used to prove aborts in tests, and
        as a readiness probe (the replica serves HTTP only once its engine is up)."""
        targets = directory.targets
        states = await asyncio.gather(*(t.status() for t in targets))
        return json_response({"version": __version__, "models": {t.name: s for t, s in zip(targets, states)}})

    # vLLM's own metrics (vllm:num_requests_running, time to first token...) from this replica.
    app.mount("/metrics", prometheus_client.make_asgi_app())
    return app
