"""All error rendering, in one place: Ollama's `{"error": "..."}` on its routes, OpenAI's error
object on `/v1`, and Ollama's plain-text 404/405 for unknown paths and methods."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from vllama.errors import VllamaError
from vllama.serve.guard import RequestTooLarge
from vllama.serve.responses import ClientDisconnected, json_response

logger = logging.getLogger(__name__)

_OPENAI_TYPES = {400: "invalid_request_error", 404: "not_found_error", 413: "invalid_request_error", 503: "server_error"}
#: What a 503 asks the client to wait before trying again: a bounded queue is full, or no room
#: to load a model (`serve/admission.py`); a second is what a short request takes to end.
RETRY_AFTER_S = 1


def error_response(request: Request, status_code: int, message: str) -> Response:
    if request.url.path.startswith("/v1/"):
        error = {"message": message, "type": _OPENAI_TYPES.get(status_code, "api_error"), "param": None, "code": None}
        response = json_response({"error": error}, status_code)
    else:
        response = json_response({"error": message}, status_code)
    if status_code == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def install(app: FastAPI) -> None:
    @app.exception_handler(VllamaError)
    async def vllama_error(request: Request, exc: VllamaError) -> Response:
        return error_response(request, exc.status_code, exc.message)

    @app.exception_handler(RequestTooLarge)
    async def too_large(request: Request, exc: RequestTooLarge) -> Response:
        return error_response(request, 413, exc.message)

    @app.exception_handler(ClientDisconnected)
    async def client_gone(request: Request, exc: ClientDisconnected) -> Response:
        return error_response(request, 499, "request canceled")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404 and request.url.path.startswith("/v1/"):  # OpenAI's clients read JSON
            return error_response(request, 404, f"no route for {request.url.path}")
        if exc.status_code == 404:
            return PlainTextResponse("404 page not found", status_code=404)
        if exc.status_code == 405:
            return PlainTextResponse("405 method not allowed", status_code=405)
        return error_response(request, exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s", request.url.path)
        return error_response(request, 500, f"internal error: {exc}")
