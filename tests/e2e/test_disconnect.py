"""A client that goes away frees its engine work: the engine is left with no running request.

Raw sockets give exact control: send a request, see the engine working on it (via
`/vllama/status`, which reads vLLM's count of unfinished requests), hang up, and watch the
count return to zero.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

import httpx
import orjson
import pytest

from tests.e2e.conftest import PRIMARY, SECOND

LONG = {"num_predict": 2000, "ignore_eos": True}


def unfinished(http: httpx.Client, model: str) -> int:
    return http.get("/vllama/status").json()["models"][model]["unfinished_requests"]


def wait_for(predicate, timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def open_request(base_url: str, path: str, body: dict) -> socket.socket:
    url = urlparse(base_url)
    payload = orjson.dumps(body)
    sock = socket.create_connection((url.hostname, url.port))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload
    )
    return sock


CASES = [
    ("/api/generate", {"model": PRIMARY, "prompt": "hi", "options": LONG}, PRIMARY),
    ("/api/chat", {"model": SECOND, "messages": [{"role": "user", "content": "hi"}], "options": LONG}, SECOND),
    ("/api/chat", {"model": PRIMARY, "messages": [{"role": "user", "content": "hi"}], "stream": False, "options": LONG}, PRIMARY),
    ("/api/generate", {"model": SECOND, "prompt": "hi", "stream": False, "options": LONG}, SECOND),
    ("/v1/chat/completions", {"model": PRIMARY, "messages": [{"role": "user", "content": "hi"}], "stream": True,
                              "max_tokens": 2000, "ignore_eos": True}, PRIMARY),
    ("/v1/completions", {"model": SECOND, "prompt": "hi", "stream": True, "max_tokens": 2000, "ignore_eos": True}, SECOND),
]


@pytest.mark.parametrize(("path", "body", "model"), CASES, ids=[f"{c[0]}-{c[2]}-{c[1].get('stream', True)}" for c in CASES])
def test_disconnect_aborts_engine_request(http: httpx.Client, base_url: str, path: str, body: dict, model: str) -> None:
    assert wait_for(lambda: unfinished(http, model) == 0)
    sock = open_request(base_url, path, body)
    try:
        if body.get("stream", True):
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # streaming has begun
        assert wait_for(lambda: unfinished(http, model) == 1), "the engine never got the request"
    finally:
        sock.close()
    assert wait_for(lambda: unfinished(http, model) == 0, timeout_s=15), "the engine kept generating for nobody"
