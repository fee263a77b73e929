"""A server with the hardening settings on, spoken to for real: API keys through the `ollama` and
`openai` clients and on every route, the Host and Origin checks of a loopback bind, the size
limit, overload (ten times a model's capacity at once: the excess gets Ollama's 503 at once,
the rest is answered in full), a short soak and a short fuzz, and last a graceful stop (SIGTERM
with a stream in flight). One server for the module.

The fuzz and soak runs here are short: `bench/fuzz.py` and `bench/soak.py` run the full ones.

Capacity here: one replica taking 2 x max_num_seqs = 4 requests at once, and 4 more queued."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import orjson
import psutil
import pytest

from tests.support import ServerProcess, tree_with_engine, vllama_server
from vllama.bench.fuzz import run_schemathesis, server_state
from vllama.bench.overload import SERVER_BUSY, offer
from vllama.bench.soak import mix, soak
from vllama.models.registry import Registry
from vllama.serve.directory import ModelDirectory
from vllama.serve.guard import PUBLIC
from vllama.serve.http import build_http_app

pytestmark = pytest.mark.slow

KEY = "sk-hardening-key"
MODEL = "vllama-tiny:latest"
CAPACITY = 1 * 4 + 4


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with vllama_server(
        "vt-hard-", "--model", "vllama-tiny", "--api-key", KEY, "--max-num-seqs", "2", "--max-queue", "4",
        "--max-request-bytes", "65536", "--max-model-len", "1024", "--gpu-memory-utilization", "0.05",
        "--engine-arg", "enforce_eager=true", "--only-configured", "--dashboard-port", "0",
    ) as server:
        yield server


def _auth(key: str = KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_clients_pass_keys_as_users_do(server: ServerProcess) -> None:
    client = ollama.Client(host=server.url, headers=_auth())
    assert client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], options={"num_predict": 3}).done
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=server.url).list()
    assert refused.value.status_code == 401 and refused.value.error == "unauthorized"

    v1 = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY)
    assert v1.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=3).choices
    with pytest.raises(openai.AuthenticationError) as wrong:
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-wrong", max_retries=0).models.list()
    assert wrong.value.code == "invalid_api_key"


JS_CLIENT = Path(__file__).resolve().parents[1] / "js"


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_the_javascript_client_passes_its_key(server: ServerProcess) -> None:
    assert (JS_CLIENT / "node_modules" / "ollama").is_dir(), "run `make test` (it installs tests/js)"
    run = subprocess.run(["node", str(JS_CLIENT / "keys.mjs"), server.url, KEY, MODEL],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen == {"listed": [MODEL], "done": True, "refused": {"status": 401, "error": "unauthorized"}}


def test_every_route_of_the_application_needs_the_key(server: ServerProcess, tmp_path: Path) -> None:
    """The routes are the application's own list, so one added later is checked here too."""
    app = build_http_app(ModelDirectory({}, Registry(tmp_path)), tmp_path)
    routes = [(method, path.replace("{", "").replace("}", ""))
              for route in app.routes for method in sorted(getattr(route, "methods", None) or ["GET"])
              for path in [route.path]]
    assert len(routes) > 30
    with httpx.Client(base_url=server.url, timeout=60) as http:
        for method, path in routes:
            if (method, path) in PUBLIC:
                assert http.request(method, path).status_code == 200, (method, path)
                continue
            assert http.request(method, path).status_code == 401, (method, path)
            assert http.request(method, path, headers=_auth("sk-wrong")).status_code == 401, (method, path)
        assert http.get("/api/tags", headers=_auth()).status_code == 200


def test_a_forged_host_or_a_foreign_origin_is_refused(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=60, headers=_auth()) as http:
        forged = http.get("/api/tags", headers={"Host": "rebound.attacker.example"})
        assert forged.status_code == 403 and "host" in forged.json()["error"]
        foreign = http.post("/api/pull", json={"model": "x"}, headers={"Origin": "https://attacker.example"})
        assert foreign.status_code == 403 and "origin" in foreign.json()["error"]
        local = http.get("/api/tags", headers={"Origin": "http://localhost:3000"})
        assert local.status_code == 200 and local.headers["access-control-allow-origin"] == "http://localhost:3000"


def test_a_body_over_the_limit_is_413(server: ServerProcess) -> None:
    body = {"model": MODEL, "prompt": "x" * 70_000, "stream": False}
    with httpx.Client(base_url=server.url, timeout=60, headers=_auth()) as http:
        too_big = http.post("/api/generate", json=body)
        assert too_big.status_code == 413 and "max_request_bytes" in too_big.json()["error"]
        assert http.post("/v1/completions", json={**body, "prompt": "x" * 70_000}).status_code == 413
        fits = http.post("/api/generate", json={**body, "prompt": "x" * 100, "options": {"num_predict": 2}})
        assert fits.status_code == 200


def test_ten_times_the_capacity_at_once(server: ServerProcess) -> None:
    httpx.post(f"{server.url}/api/generate", headers=_auth(), timeout=120,
               json={"model": MODEL, "prompt": "warm", "stream": False, "options": {"num_predict": 2}})
    result = asyncio.run(offer(server.url, MODEL, 10 * CAPACITY, num_predict=48, api_key=KEY))
    summary = result.summary()
    assert summary["other_errors"] == 0, summary
    # Bounded: most are refused. Requests that end while the burst is still arriving free their
    # place for a later one (on a busy CI machine, 2 x CAPACITY were accepted once).
    assert CAPACITY <= summary["accepted"] <= 3 * CAPACITY, summary
    assert summary["accepted_completed"] == summary["accepted"], summary
    assert summary["refused_503"] == 10 * CAPACITY - summary["accepted"], summary
    assert {o.api for o in result.refused} == {"ollama", "openai"}, "both APIs' refusals were checked"
    status = httpx.get(f"{server.url}/vllama/status", headers=_auth(), timeout=60).json()["models"][MODEL]
    assert status["admitted_here"] == 0 and status["unfinished_requests"] == 0, status
    assert SERVER_BUSY.count("  ") == 1


def test_fuzzing_the_published_schema_finds_no_server_error(server: ServerProcess) -> None:
    fuzz = run_schemathesis(server.url, max_examples=4, api_key=KEY, seed=14, request_timeout_s=120, max_time_s=90)
    assert fuzz["failures"] == [] and fuzz["errors"] == [], fuzz["output_tail"]
    assert fuzz["exit_code"] == 0 and fuzz["cases"] > 500 and fuzz["operations_tested"] == 24, fuzz
    after = server_state(server.url, KEY)
    assert after["answers"] and after["unfinished_requests"] == {MODEL: 0}, after


def test_a_short_soak_loses_nothing(server: ServerProcess) -> None:
    """`bench/soak.py` runs 10,000; here 300 (both APIs, streams abandoned, bad input mixed in)."""
    # Fewer in flight than the capacity (8): an abandoned stream's place comes back a moment
    # after the client left, and this run must see no 503.
    result = asyncio.run(soak(server.url, mix(MODEL, 300, seed=3), concurrency=4, api_key=KEY))
    summary = result.summary()
    assert summary["unexpected_failures"] == 0, summary
    assert set(summary["by_kind"]) == {"answer", "stream", "abandon", "bad"}, summary
    after = server_state(server.url, KEY)
    assert after["unfinished_requests"] == {MODEL: 0} and after["admitted"] == {MODEL: 0}, after
    assert after["kv_cache_usage"] == {MODEL: 0}, after


def test_sigterm_lets_streams_finish_refuses_new_ones_and_leaves_nothing(server: ServerProcess) -> None:
    """Last in the module: it stops the server. SIGTERM is what a container runtime or systemd sends."""
    # Loaded, for a day: the fuzzer may have unloaded the model or shortened its keep_alive.
    warm = httpx.post(f"{server.url}/api/generate", headers=_auth(), timeout=400,
                      json={"model": MODEL, "prompt": "hi", "stream": False, "keep_alive": "24h", "options": {"num_predict": 1}})
    assert warm.status_code == 200, warm.text
    tree = tree_with_engine(server.proc.pid)
    lines: list[dict] = []
    failure: list[BaseException] = []

    def stream() -> None:
        body = {"model": MODEL, "prompt": "a long answer", "options": {"num_predict": 900, "ignore_eos": True}}
        try:
            with httpx.stream("POST", f"{server.url}/api/generate", json=body, headers=_auth(), timeout=120) as response:
                lines.extend(orjson.loads(line) for line in response.iter_lines() if line.strip())
        except BaseException as exc:  # noqa: BLE001  # reported below
            failure.append(exc)

    client = threading.Thread(target=stream)
    client.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the stream is under way
        status = httpx.get(f"{server.url}/vllama/status", headers=_auth(), timeout=10).json()
        if status["models"][MODEL]["unfinished_requests"]:
            break
        time.sleep(0.05)
    server.proc.send_signal(signal.SIGTERM)
    # New requests meanwhile: 503 "server is shutting down" once the ingress has the word (within
    # a second), until the application is gone, and the port with it.
    answers: list[int | str] = []
    while client.is_alive():
        try:
            reply = httpx.post(f"{server.url}/api/generate", headers=_auth(), timeout=10,
                               json={"model": MODEL, "prompt": "new", "stream": False, "options": {"num_predict": 1}})
            answers.append(reply.status_code)
            if reply.status_code == 503 and reply.headers.get("content-type", "").startswith("application/json"):
                assert reply.json() == {"error": "server is shutting down"} and reply.headers["retry-after"] == "1"
        except httpx.TransportError as exc:
            answers.append(type(exc).__name__)
        time.sleep(0.1)
    client.join(timeout=120)
    assert failure == [], (failure, server.log_tail())
    assert lines and lines[-1].get("done") is True and lines[-1]["eval_count"] == 900, lines[-1:]
    assert 503 in answers, answers
    assert 200 not in answers[answers.index(503):], answers  # once refused, never served again
    assert server.wait_exit(120) == 0, server.log_tail()
    _, alive = psutil.wait_procs(tree, timeout=15)
    assert alive == [], [(p.pid, p.name()) for p in alive]
