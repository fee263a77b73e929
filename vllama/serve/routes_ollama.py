"""Ollama's routes. The whole table is this module; each handler parses, resolves the model,
calls it and frames the answer. Behaviour lives in `vllama.translate` and `vllama.serve.inference`."""

from __future__ import annotations

import time
from typing import TypeVar

from fastapi import APIRouter
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from vllama.errors import InvalidRequest, ModelNotFound, VllamaError
from vllama.models.blobs import BlobStore
from vllama.models.manage import ModelManager
from vllama.models.pull import HuggingFaceHub, pull as pull_weights
from vllama.ollama_api.schema import (
    ChatRequest,
    CopyRequest,
    CreateRequest,
    EmbeddingsRequest,
    EmbedRequest,
    GenerateRequest,
    ModelRequest,
    PullRequest,
    ShowRequest,
)
from vllama.serve.directory import ModelDirectory
from vllama.serve.lifecycle import expires_text
from vllama.serve.progress import last_status, lines, thread_progress
from vllama.serve.responses import NDJSON, json_response, ollama_error_line, stream_response, until_disconnect
from vllama.translate import models as model_objects
from vllama.translate.prompts import is_load_request
from vllama.translate.responses import load_object

#: The Ollama API release whose wire format we follow. Clients gate features on it (GitHub
#: Copilot wants >= 0.6.4; Open WebUI parses it as dotted integers), so it must be Ollama's
#: numbering, not vllama's own version.
OLLAMA_API_VERSION = "0.32.15"

router = APIRouter()
M = TypeVar("M", bound=BaseModel)


def directory(request: Request) -> ModelDirectory:
    return request.app.state.directory


def manager(request: Request) -> ModelManager:
    return request.app.state.manager


def blobs(request: Request) -> BlobStore:
    return request.app.state.blobs


async def parse(request: Request, schema: type[M]) -> tuple[bytes, M]:
    body = await request.body()
    if not body.strip():
        raise InvalidRequest("missing request body")
    try:
        return body, schema.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidRequest(validation_message(exc)) from None


def validation_message(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    if error["type"] == "json_invalid":
        return f"invalid JSON: {error['msg'].removeprefix('Invalid JSON: ')}"
    if error["type"] == "model_type":
        return "invalid request: the body must be a JSON object"
    message = error["msg"].removeprefix("Value error, ")
    return f"invalid value for '{where}': {message}" if where else message


@router.api_route("/", methods=["GET", "HEAD"])
async def root() -> Response:
    return PlainTextResponse("Ollama is running")


@router.api_route("/api/version", methods=["GET", "HEAD"])
async def version() -> Response:
    return json_response({"version": OLLAMA_API_VERSION})


@router.api_route("/api/tags", methods=["GET", "HEAD"])
async def tags(request: Request) -> Response:
    descriptions = await directory(request).describe_all()
    descriptions.sort(key=lambda d: d.modified_at, reverse=True)
    return json_response({"models": [model_objects.tags_entry(d) for d in descriptions]})


@router.get("/api/ps")
async def ps(request: Request) -> Response:
    loaded = await directory(request).loaded()
    return json_response({"models": [
        model_objects.ps_entry(d, replicas, expires_text(expires)) for d, replicas, expires in loaded
    ]})


@router.post("/api/show")
async def show(request: Request) -> Response:
    _, show_request = await parse(request, ShowRequest)
    description = await directory(request).resolve(show_request.model_name).describe()
    return json_response(model_objects.show_response(description, verbose=bool(show_request.verbose)))


@router.post("/api/generate")
async def generate(request: Request) -> Response:
    return await _inference(request, "generate", GenerateRequest)


@router.post("/api/chat")
async def chat(request: Request) -> Response:
    return await _inference(request, "chat", ChatRequest)


async def _inference(request: Request, kind: str, schema: type[GenerateRequest] | type[ChatRequest]) -> Response:
    arrival_ns = time.monotonic_ns()
    body, parsed = await parse(request, schema)
    name = parsed.model_name
    target = directory(request).resolve(name)
    assert name is not None
    if is_load_request(parsed):
        # Ollama's load call, or with keep_alive 0 its unload call: answered once it is done.
        unload = parsed.keep_alive == 0
        await until_disconnect(request, target.unload() if unload else target.load(parsed.keep_alive))
        return json_response(load_object("chat" if kind == "chat" else "generate", name, unload))
    if parsed.streaming:
        chunks = target.stream("ollama", kind, body, parsed, arrival_ns, name)
        return await stream_response(chunks, NDJSON, ollama_error_line)
    return json_response(await until_disconnect(request, target.once("ollama", kind, body, parsed, arrival_ns, name)))


@router.post("/api/embed")
async def embed(request: Request) -> Response:
    return await _embedding(request, "embed", EmbedRequest)


@router.post("/api/embeddings")
async def embeddings(request: Request) -> Response:
    return await _embedding(request, "embeddings", EmbeddingsRequest)


async def _embedding(request: Request, kind: str, schema: type[EmbedRequest] | type[EmbeddingsRequest]) -> Response:
    arrival_ns = time.monotonic_ns()
    body, parsed = await parse(request, schema)
    name = parsed.model_name
    try:
        target = directory(request).resolve(name)
    except ModelNotFound:
        # Ollama's embed handlers word it differently from generate's.
        raise ModelNotFound(f'model "{name}" not found, try pulling it first') from None
    assert name is not None
    return json_response(await until_disconnect(request, target.once("ollama", kind, body, parsed, arrival_ns, name)))


# --- model management -----------------------------------------------------------------------


@router.post("/api/create")
async def create(request: Request) -> Response:
    _, parsed = await parse(request, CreateRequest)
    statuses = manager(request).create(parsed)  # all checks and the write happen here, before any byte
    if parsed.streaming:
        return await stream_response(lines(statuses), NDJSON, ollama_error_line)
    return json_response(statuses[-1])


@router.post("/api/copy")
async def copy(request: Request) -> Response:
    _, parsed = await parse(request, CopyRequest)
    manager(request).copy(parsed.source, parsed.destination)
    return Response(status_code=200)


@router.delete("/api/delete")
async def delete(request: Request) -> Response:
    _, parsed = await parse(request, ModelRequest)
    manager(request).delete(parsed.model_name)
    return Response(status_code=200)


@router.post("/api/pull")
async def pull(request: Request) -> Response:
    _, parsed = await parse(request, PullRequest)
    name = parsed.model_name
    if not name:
        raise InvalidRequest("model is required")
    if manager(request).find(name) is not None:  # served or created: nothing to download
        statuses = thread_progress(lambda emit: [emit({"status": "pulling manifest"}), emit({"status": "success"})])
    else:
        home = request.app.state.home
        statuses = thread_progress(lambda emit: pull_weights(name, home=home, hub=HuggingFaceHub(), emit=emit))
    if parsed.streaming:
        return await stream_response(lines(statuses), NDJSON, ollama_error_line)
    return json_response(await until_disconnect(request, last_status(statuses)))


@router.post("/api/push")
async def push(request: Request) -> Response:
    await parse(request, PullRequest)
    raise VllamaError(
        "push is not supported: vllama serves models from Hugging Face repositories and local directories, "
        "and has no registry to push to",
        status_code=501,
    )


@router.head("/api/blobs/{digest}")
async def blob_exists(request: Request, digest: str) -> Response:
    return Response(status_code=200 if blobs(request).exists(digest) else 404)


@router.post("/api/blobs/{digest}")
async def blob_upload(request: Request, digest: str) -> Response:
    created = await blobs(request).write(digest, request.stream())
    return Response(status_code=201 if created else 200)
