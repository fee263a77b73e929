"""OpenAI's `/v1` routes. The requests themselves are run by vLLM's own OpenAI handlers in the
engine replica (`OpenAIServing`); the ingress only routes them by `model`."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from vllama.errors import InvalidRequest
from vllama.serve.responses import SSE, json_response, openai_error_event, stream_response, until_disconnect
from vllama.serve.routes_ollama import directory
from vllama.translate import models as model_objects

router = APIRouter(prefix="/v1")


@router.get("/models")
async def list_models(request: Request) -> Response:
    descriptions = await directory(request).describe_all()
    return json_response({"object": "list", "data": [model_objects.openai_model(d) for d in descriptions]})


@router.get("/models/{model:path}")
async def get_model(request: Request, model: str) -> Response:
    description = await directory(request).resolve(model).describe()
    return json_response(model_objects.openai_model(description))


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _openai(request, "chat")


@router.post("/completions")
async def completions(request: Request) -> Response:
    return await _openai(request, "completion")


@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    return await _openai(request, "embedding")


async def _openai(request: Request, kind: str) -> Response:
    arrival_ns = time.monotonic_ns()
    body = await request.body()
    try:
        fields = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"invalid JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise InvalidRequest("the body must be a JSON object")
    name = fields.get("model")
    if not isinstance(name, str):
        raise InvalidRequest("model is required")
    target = directory(request).resolve(name)
    if fields.get("stream") is True:
        return await stream_response(target.stream("openai", kind, body, fields, arrival_ns, name), SSE, openai_error_event)
    return json_response(await until_disconnect(request, target.once("openai", kind, body, fields, arrival_ns, name)))
