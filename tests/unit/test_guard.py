"""Who may call (`vllama.serve.guard`): API keys on every route (enumerated from the real HTTP
application, so a route added later is guarded unless listed public), the Host check of a
loopback bind, Ollama's CORS origins, and the size limit. In-process, no Ray, no engine."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute

from vllama.models.registry import Registry
from vllama.serve.directory import ModelDirectory
from vllama.serve.guard import (
    PUBLIC,
    GuardSettings,
    allowed_origin_patterns,
    host_allowed,
    is_loopback_bind,
    key_accepted,
    origin_allowed,
    split_list,
)
from vllama.serve.http import build_http_app

KEY = "sk-vllama-test-key"
OWN = frozenset({"myhost", "10.1.2.3"})


def _app(tmp_path: Path, **settings: object) -> FastAPI:
    guard = GuardSettings(**{"own_hosts": OWN, **settings})  # type: ignore[arg-type]
    return build_http_app(ModelDirectory({}, Registry(tmp_path)), tmp_path, {}, guard)


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:11434")


def _every_route(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every route the application serves, path parameters filled in."""
    routes = []
    for route in app.routes:
        methods = sorted(getattr(route, "methods", None) or ["GET"])
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        routes += [(method, path) for method in methods]
    return routes


def test_the_route_list_is_the_applications(tmp_path: Path) -> None:
    routes = _every_route(_app(tmp_path))
    assert len(routes) > 30
    assert {("POST", "/api/chat"), ("POST", "/v1/chat/completions"), ("GET", "/metrics"), ("GET", "/vllama/status"),
            ("POST", "/api/blobs/x"), ("DELETE", "/api/delete"), ("GET", "/vllama/openapi.json")} <= set(routes)
    assert any(isinstance(r, APIRoute) for r in _app(tmp_path).routes)


async def test_every_route_needs_the_key_unless_public(tmp_path: Path) -> None:
    app = _app(tmp_path, api_keys=("other-key", KEY))
    async with _client(app) as client:
        for method, path in _every_route(app):
            no_key = await client.request(method, path)
            wrong = await client.request(method, path, headers={"Authorization": "Bearer sk-wrong"})
            right = await client.request(method, path, headers={"Authorization": f"Bearer {KEY}"}, json={})
            if (method, path) in PUBLIC:
                assert no_key.status_code != 401, (method, path)
                continue
            for refused in (no_key, wrong):
                assert refused.status_code == 401, (method, path, refused.status_code)
                if method != "HEAD":
                    expected = ({"error": {"message": "unauthorized", "type": "invalid_request_error", "param": None,
                                           "code": "invalid_api_key"}}
                                if path.startswith("/v1/") else {"error": "unauthorized"})
                    assert refused.json() == expected, (method, path)
            assert right.status_code != 401, (method, path)


async def test_no_key_configured_means_no_key_asked(tmp_path: Path) -> None:
    async with _client(_app(tmp_path)) as client:
        assert (await client.get("/api/version")).status_code == 200


def test_key_comparison() -> None:
    assert key_accepted(f"Bearer {KEY}", ["a", KEY]) and key_accepted(f"bearer {KEY}", [KEY])
    assert not key_accepted(KEY, [KEY])  # the scheme is required
    assert not key_accepted("Basic " + KEY, [KEY]) and not key_accepted("Bearer ", [KEY])
    assert not key_accepted(f"Bearer {KEY}x", [KEY]) and not key_accepted("", [KEY])


def test_ollamas_host_rule() -> None:
    for host in ("localhost", "localhost:11434", "127.0.0.1:11434", "[::1]:11434", "10.0.0.5", "192.168.1.2:80",
                 "0.0.0.0", "myhost", "MyHost:11434", "10.1.2.3", "box.local", "app.localhost:3000", "db.internal", ""):
        assert host_allowed(host, OWN), host
    for host in ("evil.example.com", "evil.example.com:11434", "8.8.8.8", "localhost.evil.com", "[2001:4860::8888]:80"):
        assert not host_allowed(host, OWN), host
    assert is_loopback_bind("127.0.0.1") and is_loopback_bind("::1") and is_loopback_bind("localhost")
    assert not is_loopback_bind("0.0.0.0") and not is_loopback_bind("10.0.0.1") and not is_loopback_bind(None)


async def test_a_forged_host_is_refused_on_a_loopback_bind_only(tmp_path: Path) -> None:
    async with _client(_app(tmp_path, bind_host="127.0.0.1")) as client:
        forged = await client.get("/api/version", headers={"Host": "attacker.example.com"})
        assert forged.status_code == 403 and "host" in forged.json()["error"]
        assert (await client.get("/api/version", headers={"Host": "localhost:11434"})).status_code == 200
    async with _client(_app(tmp_path, bind_host="0.0.0.0")) as client:
        assert (await client.get("/api/version", headers={"Host": "vllama.example.com"})).status_code == 200


def test_ollamas_origins() -> None:
    patterns = allowed_origin_patterns(split_list(" https://chat.example.com, http://*.corp.example ,"))
    for origin in ("http://localhost", "http://localhost:3000", "https://127.0.0.1:8080", "http://0.0.0.0:1",
                   "app://obsidian.md", "tauri://localhost", "vscode-webview://abc", "chrome-extension://id",
                   "https://chat.example.com", "http://a.corp.example"):
        assert origin_allowed(origin, patterns), origin
    for origin in ("https://evil.example.com", "http://localhost.evil.com", "https://chat.example.com.evil", "null"):
        assert not origin_allowed(origin, patterns), origin
    assert origin_allowed("https://anything", allowed_origin_patterns(["*"]))


async def test_cors_serves_allowed_origins_and_refuses_others(tmp_path: Path) -> None:
    async with _client(_app(tmp_path, origins=("https://chat.example.com",), api_keys=(KEY,))) as client:
        foreign = await client.post("/api/pull", headers={"Origin": "https://evil.example.com"}, content=b"{}")
        assert foreign.status_code == 403 and "origin" in foreign.json()["error"]
        preflight = await client.options("/api/chat", headers={
            "Origin": "https://chat.example.com", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert preflight.status_code == 204  # before the key: a browser sends none on a preflight
        assert preflight.headers["access-control-allow-origin"] == "https://chat.example.com"
        assert "Authorization" in preflight.headers["access-control-allow-headers"]
        allowed = await client.get("/api/version", headers={"Origin": "http://localhost:3000",
                                                            "Authorization": f"Bearer {KEY}"})
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
        no_key = await client.get("/api/version", headers={"Origin": "http://localhost:3000"})
        assert no_key.status_code == 401 and no_key.headers["access-control-allow-origin"] == "http://localhost:3000"


async def test_a_body_over_the_limit_is_413(tmp_path: Path) -> None:
    async with _client(_app(tmp_path, max_request_bytes=4096)) as client:
        big = b'{"model": "m", "prompt": "' + b"x" * 5000 + b'"}'
        declared = await client.post("/api/generate", content=big)
        assert declared.status_code == 413 and "max_request_bytes" in declared.json()["error"]
        openai = await client.post("/v1/completions", content=big)
        assert openai.status_code == 413 and openai.json()["error"]["type"] == "invalid_request_error"

        async def chunks():  # no Content-Length: counted as it arrives
            for _ in range(10):
                yield b"x" * 1000

        chunked = await client.post("/api/generate", content=chunks())
        assert chunked.status_code == 413 and "max_request_bytes" in chunked.json()["error"]
        small = await client.post("/api/generate", json={"model": "nope", "prompt": "hi"})
        assert small.status_code == 404


async def test_while_stopping_new_requests_get_503(tmp_path: Path) -> None:
    import threading

    stopping = threading.Event()
    async with _client(_app(tmp_path, stopping=stopping)) as client:
        assert (await client.get("/api/version")).status_code == 200
        stopping.set()
        refused = await client.get("/api/version")
        assert refused.status_code == 503 and refused.json() == {"error": "server is shutting down"}
        assert refused.headers["retry-after"] == "1"
        openai = await client.post("/v1/chat/completions", json={})
        assert openai.status_code == 503 and openai.json()["error"]["type"] == "server_error"
        assert (await client.get("/")).status_code == 200  # the probe still answers
