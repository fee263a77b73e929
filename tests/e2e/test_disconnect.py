"""A client that goes away frees its engine work: the engine is left with no running request.

Raw sockets give exact control: send a request, let the engine work on it, hang up, then read
`/vllama/status`: vLLM's own count of unfinished requests must be back to zero, and the request
must have ended by abort (the engine did not finish it), long before its 2000 tokens were done.

Every case runs against the ingress replica's own port, where HAProxy delivers requests: that is
what our code guarantees, and it holds every time. The ingress relays each request to an engine
replica over the channel and closes that connection when its client goes away, which cancels the
request in the engine replica. Through HAProxy a hang-up reaches the replica
only when HAProxy closes its side, which it does most of the time but not always (measured in
docs/ARCHITECTURE.md, "Client disconnects and HAProxy"), so it is not asserted here.

A status request can itself wait while the engine runs flat out (on a 2-core machine vLLM's CPU
engine starves new connections; vLLM's own server does the same), so the test judges the end
state (how the request ended), not a snapshot taken while it ran.

"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

import httpx
import orjson
import pytest

from tests.e2e.conftest import PRIMARY, SECOND
from tests.support import ServerProcess, replica_http_port

LONG = {"num_predict": 2000, "ignore_eos": True}


def status(http: httpx.Client, model: str, timeout: float = 120) -> dict:
    return http.get("/vllama/status", timeout=timeout).json()["models"][model]


@pytest.fixture(scope="module")
def replica_url(server: ServerProcess) -> str:
    return f"http://127.0.0.1:{replica_http_port(server, 'ServeReplica:vllama:Ingress')}"


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


#: The longest the test process may take between seeing the engine at work and hanging up for
#: the attempt to count as on time. On 2 busy cores (vLLM's CPU engine spins on one, its worker
#: computes on the other) a process was seen to get no CPU for seconds: this one, or a replica on
#: the way of the abort, long enough for the engine to finish its 2000 tokens (about 5 s here)
#: before the abort reached it. Such an attempt proves nothing either way, so any attempt that
#: did not abort is run again; a replica that does not abort fails every attempt.
LATE_S = 0.5
ATTEMPTS = 5


@pytest.mark.parametrize(("path", "body", "model"), CASES, ids=[f"{c[0]}-{c[2]}-{c[1].get('stream', True)}" for c in CASES])
def test_disconnect_aborts_engine_request(http: httpx.Client, replica_url: str, path: str, body: dict, model: str) -> None:
    hang_up_and_check(http, replica_url, path, body, model)


def hang_up_and_check(http: httpx.Client, url: str, path: str, body: dict, model: str) -> None:
    attempts = []
    for _ in range(ATTEMPTS):
        ended, late = hang_up(http, url, path, body, model)
        attempts.append({**ended, "late": late})
        if ended == {"aborted": 1, "completed": 0}:
            return
    pytest.fail(f"the request was never aborted: {attempts}")


def hang_up(http: httpx.Client, url: str, path: str, body: dict, model: str) -> tuple[dict[str, int], bool]:
    """Send, hang up while the engine works on it; how the request ended, and whether this
    process was too late to tell (see LATE_S)."""
    before = status(http, model)
    assert before["unfinished_requests"] == 0
    sock = open_request(url, path, body)
    working_seen = None
    try:
        if body.get("stream", True):
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # the engine is streaming tokens
            working_seen = time.monotonic()
        else:
            deadline = time.monotonic() + 30
            while working_seen is None and time.monotonic() < deadline:
                asked = time.monotonic()
                try:
                    working = status(http, model, timeout=LATE_S)["unfinished_requests"]
                except httpx.TimeoutException:
                    break  # starved: hang up now, and let the attempt count as late
                if working and time.monotonic() - asked <= LATE_S:
                    working_seen = time.monotonic()
                time.sleep(0.02)
    finally:
        sock.shutdown(socket.SHUT_RDWR)  # FIN first, whatever is still unread
        sock.close()
    late = working_seen is None or time.monotonic() - working_seen > LATE_S
    deadline = time.monotonic() + 30
    after = status(http, model)
    while after["unfinished_requests"] and time.monotonic() < deadline:
        time.sleep(0.1)
        after = status(http, model)
    assert after["unfinished_requests"] == 0, "the engine kept a request for nobody"
    ended = {
        "aborted": after["aborted_requests"] - before["aborted_requests"],
        "completed": after["completed_requests"] - before["completed_requests"],
    }
    return ended, late
