"""The published schema (`/vllama/openapi.json`): every route's request and response bodies.

The handlers parse bodies by hand (orjson, then the pydantic models of
`vllama/ollama_api/schema.py` with Ollama's lenient rules; vLLM's own models in the engine
replica for `/v1`), so FastAPI infers no body from their signatures. The document is completed
here from the same models instead: what is documented is what is parsed, and nothing is added
to the request path (the document is built once, on its first request).

`/v1` bodies are vLLM's pydantic models. The ingress never imports vLLM (no engine, no torch in
its process), so their JSON schemas are generated once from the installed vLLM into
`openai_schemas.json` beside this module (`python -m vllama.serve.openapi`); a unit test checks
that the file matches the installed vLLM.
"""

from __future__ import annotations

import copy
import json
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from vllama.ollama_api import schema

OPENAI_SCHEMAS = Path(__file__).with_name("openai_schemas.json")
OPENAI_PREFIX = "OpenAI_"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"

#: (method, path) -> (request model, response model, streams). A stream's lines are the response
#: model too (NDJSON), except `/v1`, whose streams are server-sent events.
OLLAMA_OPERATIONS: dict[tuple[str, str], tuple[type[BaseModel] | None, type[BaseModel] | None, bool]] = {
    ("get", "/api/version"): (None, schema.VersionResponse, False),
    ("get", "/api/tags"): (None, schema.ListResponse, False),
    ("get", "/api/ps"): (None, schema.ProcessResponse, False),
    ("post", "/api/show"): (schema.ShowRequest, schema.ShowResponse, False),
    ("post", "/api/generate"): (schema.GenerateRequest, schema.GenerateResponse, True),
    ("post", "/api/chat"): (schema.ChatRequest, schema.ChatResponse, True),
    ("post", "/api/embed"): (schema.EmbedRequest, schema.EmbedResponse, False),
    ("post", "/api/embeddings"): (schema.EmbeddingsRequest, schema.EmbeddingsResponse, False),
    ("post", "/api/create"): (schema.CreateRequest, schema.ProgressResponse, True),
    ("post", "/api/copy"): (schema.CopyRequest, None, False),
    ("delete", "/api/delete"): (schema.ModelRequest, None, False),
    ("post", "/api/pull"): (schema.PullRequest, schema.ProgressResponse, True),
    ("post", "/api/push"): (schema.PullRequest, None, False),
}
#: (method, path) -> (request schema name, response schema name) in `openai_schemas.json`.
OPENAI_OPERATIONS = {
    ("post", "/v1/chat/completions"): ("ChatCompletionRequest", "ChatCompletionResponse"),
    ("post", "/v1/completions"): ("CompletionRequest", "CompletionResponse"),
    ("post", "/v1/embeddings"): ("EmbeddingRequest", "EmbeddingResponse"),
}
#: A request each body route documents (`MODEL`: the first model the server serves): what client
#: generators show, and what a fuzzer starts from to get past "model not found".
MODEL = "{model}"
EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("post", "/api/show"): {"model": MODEL},
    ("post", "/api/generate"): {"model": MODEL, "prompt": "Why is the sky blue?", "stream": False,
                                "options": {"num_predict": 8}},
    ("post", "/api/chat"): {"model": MODEL, "messages": [{"role": "user", "content": "Hello!"}], "stream": False,
                            "options": {"num_predict": 8}},
    ("post", "/api/embed"): {"model": MODEL, "input": "Hello!"},
    ("post", "/api/embeddings"): {"model": MODEL, "prompt": "Hello!"},
    ("post", "/api/create"): {"model": "mario", "from": MODEL, "system": "You are Mario.", "stream": False},
    ("post", "/api/copy"): {"source": MODEL, "destination": "my-copy"},
    ("delete", "/api/delete"): {"model": "my-copy"},
    ("post", "/api/pull"): {"model": MODEL, "stream": False},
    ("post", "/api/push"): {"model": MODEL},
    ("post", "/v1/chat/completions"): {"model": MODEL, "messages": [{"role": "user", "content": "Hello!"}],
                                       "max_tokens": 8},
    ("post", "/v1/completions"): {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 8},
    ("post", "/v1/embeddings"): {"model": MODEL, "input": "Hello!"},
}
#: The errors any route may answer (`serve/errors.py`, `serve/guard.py`), and what they mean.
ERRORS = {
    "400": "Invalid request", "401": "Missing or wrong API key", "403": "Host or origin not allowed",
    "404": "Model not found", "413": "Request body too large", "499": "The client went away",
    "500": "Engine failure", "503": "Server busy (bounded queue full) or no room to load the model",
}


def install(app: FastAPI) -> None:
    """Serve the completed document at the app's `openapi_url`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    """The whole document; examples name the first model `app.state.directory` serves."""
    with warnings.catch_warnings():  # a GET+HEAD route's shared operation id: renamed below
        warnings.simplefilter("ignore", UserWarning)
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                          description="Ollama's API and OpenAI's /v1, served by vLLM engines on Ray Serve.")
    for operations in doc["paths"].values():  # a GET+HEAD route's two operations are one object
        for method in operations:
            operations[method] = copy.deepcopy(operations[method])
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    models = {m for ops in OLLAMA_OPERATIONS.values() for m in ops[:2] if m is not None}
    ordered = sorted(models, key=lambda m: m.__name__)
    # Requests as they are parsed (validation), responses as they are written (serialization).
    pairs = [(m, "validation") for m in ordered] + [(m, "serialization") for m in ordered]
    keys, defs = models_json_schema(pairs, ref_template="#/components/schemas/{model}")
    components.update(defs.get("$defs", {}))
    openai = openai_schemas()
    components.update(openai)
    for (method, path), (request, response, streams) in OLLAMA_OPERATIONS.items():
        operation = doc["paths"][path][method]
        if request is not None:
            operation["requestBody"] = _body(keys[(request, "validation")])
        operation["responses"] = _responses(
            keys[(response, "serialization")] if response is not None else None, NDJSON if streams else None,
            ollama=True,
        )
    for (method, path), (request_name, response_name) in OPENAI_OPERATIONS.items():
        operation = doc["paths"][path][method]
        operation["requestBody"] = _body({"$ref": f"#/components/schemas/{OPENAI_PREFIX}{request_name}"})
        operation["responses"] = _responses({"$ref": f"#/components/schemas/{OPENAI_PREFIX}{response_name}"}, SSE,
                                            ollama=False)
    components["ErrorResponse"] = schema.ErrorResponse.model_json_schema()
    components["OpenAIError"] = {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}
    _other_routes(doc)
    _operation_ids_unique(doc)
    targets = getattr(getattr(app.state, "directory", None), "targets", None) or []
    model = targets[0].name if targets else "vllama-tiny"
    for (method, path), example in EXAMPLES.items():
        filled = json.loads(json.dumps(example).replace(json.dumps(MODEL), json.dumps(model)))
        doc["paths"][path][method]["requestBody"]["content"]["application/json"]["example"] = filled
    return doc


def _other_routes(doc: dict[str, Any]) -> None:
    """The routes with no pydantic body: probes, blobs, model lists, status, metrics. FastAPI's
    422 (its own parameter validation) never happens here: the handlers take any path."""
    paths = doc["paths"]
    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}
    errors = _responses(None, None, ollama=True)
    del errors["200"]
    for operations in paths.values():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
    paths["/"]["get"]["responses"] = {"200": {"description": "Ollama is running", **text}}
    paths["/"]["head"]["responses"] = {"200": {"description": "Ollama is running"}}
    for path in ("/api/version", "/api/tags"):
        paths[path]["head"]["responses"] = {"200": {"description": "Success"}, **errors}
    blob = paths["/api/blobs/{digest}"]
    blob["head"]["responses"] = {"200": {"description": "The blob is here"}, **errors}
    blob["post"]["requestBody"] = {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
    blob["post"]["responses"] = {"201": {"description": "Stored"}, "200": {"description": "Already stored"}, **errors}
    model = {"type": "object", "required": ["id", "object", "created", "owned_by"], "properties": {
        "id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"},
        "owned_by": {"type": "string"}}}
    openai_errors = _responses(None, None, ollama=False)
    del openai_errors["200"]
    paths["/v1/models"]["get"]["responses"] = {"200": {"description": "The models", "content": {"application/json": {
        "schema": {"type": "object", "properties": {"object": {"type": "string"},
                                                    "data": {"type": "array", "items": model}}}}}}, **openai_errors}
    paths["/v1/models/{model}"]["get"]["responses"] = {
        "200": {"description": "The model", "content": {"application/json": {"schema": model}}}, **openai_errors}
    paths["/vllama/status"]["get"]["responses"] = {"200": {"description": "Engine replicas and models", "content": {
        "application/json": {"schema": {"type": "object"}}}}, **errors}
    paths["/metrics"]["get"]["responses"] = {"200": {"description": "Prometheus exposition", **text}, **errors}


def _body(ref: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref}}}


def _responses(ref: dict[str, Any] | None, stream_type: str | None, *, ollama: bool) -> dict[str, Any]:
    success: dict[str, Any] = {"description": "Success"}
    if ref is not None:
        content = {"application/json": {"schema": ref}}
        if stream_type == NDJSON:  # a stream's lines, each a JSON object of the same schema
            content[NDJSON] = {"schema": ref}
        elif stream_type == SSE:
            content[SSE] = {"schema": {"type": "string"}}
        success["content"] = content
    error = {"$ref": "#/components/schemas/ErrorResponse" if ollama else "#/components/schemas/OpenAIError"}
    responses = {"200": success}
    for status, description in ERRORS.items():
        responses[status] = {"description": description, "content": {"application/json": {"schema": error}}}
    return responses


def _operation_ids_unique(doc: dict[str, Any]) -> None:
    """FastAPI names a GET+HEAD route's two operations alike; client generators need them apart."""
    for operations in doc["paths"].values():
        if {"get", "head"} <= set(operations):
            base = operations["get"]["operationId"].removesuffix("_get").removesuffix("_head")
            operations["get"]["operationId"], operations["head"]["operationId"] = f"{base}_get", f"{base}_head"


@cache
def openai_schemas() -> dict[str, Any]:
    return json.loads(OPENAI_SCHEMAS.read_text())


def generate_openai_schemas() -> dict[str, Any]:
    """vLLM's `/v1` request and response models as JSON schemas (imports vLLM: run at build time)."""
    from pydantic import TypeAdapter
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest, ChatCompletionResponse
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest, CompletionResponse
    from vllm.entrypoints.pooling.embed.protocol import EmbeddingRequest, EmbeddingResponse

    named = {
        "ChatCompletionRequest": (ChatCompletionRequest, "validation"),
        "CompletionRequest": (CompletionRequest, "validation"),
        "EmbeddingRequest": (EmbeddingRequest, "validation"),
        "ChatCompletionResponse": (ChatCompletionResponse, "serialization"),
        "CompletionResponse": (CompletionResponse, "serialization"),
        "EmbeddingResponse": (EmbeddingResponse, "serialization"),
    }
    # One generation for all: a model both read and written gets two schemas (`-Input`, `-Output`).
    inputs = [(name, mode, TypeAdapter(model)) for name, (model, mode) in named.items()]
    keys, defs = TypeAdapter.json_schemas(inputs, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    for (name, _), generated in keys.items():
        if generated.get("$ref") != f"#/components/schemas/{name}":  # a union, or a model named apart
            schemas[name] = generated
    # Apart from Ollama's models of the same names (Message, Tool, ToolCall...).
    text = json.dumps(schemas).replace('"#/components/schemas/', f'"#/components/schemas/{OPENAI_PREFIX}')
    return {OPENAI_PREFIX + name: value for name, value in sorted(json.loads(text).items())}


if __name__ == "__main__":  # python -m vllama.serve.openapi: refresh openai_schemas.json
    OPENAI_SCHEMAS.write_text(json.dumps(generate_openai_schemas(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OPENAI_SCHEMAS.name}", file=sys.stderr)
