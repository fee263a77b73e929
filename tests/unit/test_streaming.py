"""Streaming: HTTP streams with Ollama's error rules."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.testclient import TestClient

from vllama.errors import EngineFailed, InvalidRequest, ModelNotFound, Overloaded
from vllama.serve import errors
from vllama.serve.responses import NDJSON, SSE, json_response, ollama_error_line, openai_error_event, stream_response

# --- stream_response and error rendering ----------------------------------------------------------

CLOSED: list[str] = []


def make_app() -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.post("/api/early")
    async def early() -> object:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                raise InvalidRequest("option temperature must be between 0 and 2, got 5")
                yield b""  # pragma: no cover
            finally:
                CLOSED.append("early")

        return await stream_response(chunks(), NDJSON, ollama_error_line)

    @app.post("/api/late")
    async def late() -> object:
        async def chunks() -> AsyncIterator[bytes]:
            try:
                yield b'{"response":"a","done":false}\n'
                yield b'{"response":"b","done":false}\n'
                raise EngineFailed("boom")
            finally:
                CLOSED.append("late")

        return await stream_response(chunks(), NDJSON, ollama_error_line)

    @app.post("/api/late-unexpected")
    async def late_unexpected() -> object:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"response":"a","done":false}\n'
            raise KeyError("oops")

        return await stream_response(chunks(), NDJSON, ollama_error_line)

    @app.post("/api/empty")
    async def empty() -> object:
        async def chunks() -> AsyncIterator[bytes]:
            return
            yield b""  # pragma: no cover

        return await stream_response(chunks(), NDJSON, ollama_error_line)

    @app.post("/v1/chat/completions")
    async def openai_stream() -> object:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'data: {"id":"1"}\n\n'
            raise Overloaded("engine is busy")

        return await stream_response(chunks(), SSE, openai_error_event)

    @app.post("/api/show")
    async def show(request: Request) -> object:
        raise ModelNotFound.for_name((await request.json())["model"])

    @app.get("/v1/models/{name}")
    async def openai_model(name: str) -> object:
        raise ModelNotFound.for_name(name)

    @app.post("/v1/completions")
    async def openai_invalid() -> object:
        raise InvalidRequest("bad prompt")

    @app.post("/api/crash")
    async def crash() -> object:
        raise RuntimeError("kaput")

    @app.get("/v1/crash")
    async def crash_v1() -> object:
        raise RuntimeError("kaput")

    @app.get("/api/version")
    async def version() -> object:
        return json_response({"version": "0.1.0"})

    return app


@pytest.fixture(scope="module")
def client() -> TestClient:
    with TestClient(make_app(), raise_server_exceptions=False) as test_client:
        yield test_client  # type: ignore[misc]


def ndjson(text: str) -> list[dict[str, object]]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_error_before_first_chunk_gets_status(client: TestClient) -> None:
    CLOSED.clear()
    response = client.post("/api/early", json={})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": "option temperature must be between 0 and 2, got 5"}
    assert CLOSED == ["early"]


def test_error_after_first_chunk_goes_in_band(client: TestClient) -> None:
    CLOSED.clear()
    response = client.post("/api/late", json={})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(NDJSON)
    assert ndjson(response.text) == [
        {"response": "a", "done": False},
        {"response": "b", "done": False},
        {"error": "boom"},
    ]
    assert CLOSED == ["late"]


def test_unexpected_error_after_first_chunk(client: TestClient) -> None:
    response = client.post("/api/late-unexpected", json={})
    assert response.status_code == 200
    lines = ndjson(response.text)
    assert lines[0] == {"response": "a", "done": False}
    assert lines[-1]["error"].startswith("internal error")  # type: ignore[union-attr]
    assert "oops" in lines[-1]["error"]  # type: ignore[operator]


def test_empty_stream(client: TestClient) -> None:
    response = client.post("/api/empty", json={})
    assert response.status_code == 200
    assert response.content == b""


def test_openai_stream_error_event(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json={})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(SSE)
    events = [e for e in response.text.split("\n\n") if e]
    assert events[0] == 'data: {"id":"1"}'
    assert json.loads(events[1].removeprefix("data: ")) == {
        "error": {"message": "engine is busy", "type": "api_error", "param": None, "code": None}
    }
    assert events[2] == "data: [DONE]"


def test_ollama_not_found(client: TestClient) -> None:
    response = client.post("/api/show", json={"model": "nope:1b"})
    assert response.status_code == 404
    assert response.json() == {"error": "model 'nope:1b' not found"}


def test_openai_not_found(client: TestClient) -> None:
    response = client.get("/v1/models/nope")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"message": "model 'nope' not found", "type": "not_found_error", "param": None, "code": None}
    }


def test_openai_invalid_request(client: TestClient) -> None:
    response = client.post("/v1/completions", json={})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.json()["error"]["message"] == "bad prompt"


def test_unknown_path(client: TestClient) -> None:
    for path in ("/api/nope", "/"):
        response = client.get(path)
        assert response.status_code == 404
        assert response.text == "404 page not found"  # Ollama's, plain text
    openai = client.get("/v1/nope")  # OpenAI's clients read an error object
    assert openai.status_code == 404 and openai.json()["error"]["type"] == "not_found_error"


def test_wrong_method(client: TestClient) -> None:
    response = client.get("/api/show")
    assert response.status_code == 405
    assert response.text == "405 method not allowed"


@pytest.mark.parametrize(
    ("path", "method", "body"),
    [
        ("/api/crash", "POST", {"error": "internal error: kaput"}),
        (
            "/v1/crash",
            "GET",
            {"error": {"message": "internal error: kaput", "type": "api_error", "param": None, "code": None}},
        ),
    ],
)
def test_unexpected_error(client: TestClient, path: str, method: str, body: object) -> None:
    response = client.request(method, path)
    assert response.status_code == 500
    assert response.json() == body


def test_json_response(client: TestClient) -> None:
    response = client.get("/api/version")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {"version": "0.1.0"}


def test_error_lines() -> None:
    assert ollama_error_line('a "b"\n') == b'{"error":"a \\"b\\"\\n"}\n'
    event = openai_error_event("x")
    assert event.endswith(b"data: [DONE]\n\n")
    assert event.count(b"\n\n") == 2
