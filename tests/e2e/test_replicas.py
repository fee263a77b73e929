"""Two engine replicas of one model behind the ingress: both serve, a conversation stays on one,
and a replica that dies mid-answer loses nothing.

One server for the module (`vllama serve --num-replicas 2`, prefix routing, failover on). The
faults are real: the replica's process (its Ray actor) or its engine process is killed with
SIGKILL while it streams, and the client's text is compared token for token with the
uninterrupted greedy answer. Serve replaces a killed replica in about half a minute; each fault
test first waits for both replicas to run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import orjson
import psutil
import pytest

from tests.support import ServerProcess, vllama_server

MODEL = "vllama-tiny:latest"
GREEDY = {"temperature": 0, "num_predict": 300, "ignore_eos": True}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two() -> Iterator[ServerProcess]:
    with vllama_server(
        "vt-rep-", "--model", "vllama-tiny", "--num-replicas", "2", "--gpu-memory-utilization", "0.05",
        "--max-model-len", "2048", "--enable-prefix-caching", "--engine-arg", "enforce_eager=true",
        "--dashboard-port", "0",
    ) as server:
        yield server


def replicas(server: ServerProcess) -> list[dict]:
    return httpx.get(f"{server.url}/vllama/status", timeout=30).json()["models"][MODEL]["replicas"]


def wait_for_running(server: ServerProcess, count: int = 2, timeout_s: float = 180) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = replicas(server)
        if sum(r["state"] == "RUNNING" for r in rows) == count:
            return rows
        if time.monotonic() > deadline:
            pytest.fail(f"not {count} running replicas after {timeout_s} s: {rows}")
        time.sleep(1)


def completed(rows: list[dict]) -> dict[str, int]:
    return {r["replica"]: r["completed_requests"] for r in rows}


def chat(server: ServerProcess, messages: list[dict], **options: object) -> dict:
    body = {"model": MODEL, "messages": messages, "stream": False, "options": {"num_predict": 8, **options}}
    reply = httpx.post(f"{server.url}/api/chat", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_both_replicas_serve_and_report(two: ServerProcess) -> None:
    rows = wait_for_running(two)
    assert len({r["replica"] for r in rows}) == 2
    ps = httpx.get(f"{two.url}/api/ps").json()["models"]
    assert [(m["name"], m["replicas"]) for m in ps] == [(MODEL, 2)]
    before = completed(rows)
    for i in range(24):  # distinct conversations: rendezvous hashing spreads them
        chat(two, [{"role": "user", "content": f"conversation {i}: " + "tell me about the sea " * 8}])
    after = completed(replicas(two))
    served = {r: after[r] - before.get(r, 0) for r in after}
    assert sum(served.values()) == 24
    assert all(n >= 3 for n in served.values()), served  # 24 on 2: each well above nothing
    status = httpx.get(f"{two.url}/vllama/status").json()
    assert status["ingress"]["engine_modules"] == []  # the ingress holds no engine
    assert 0 < status["ingress"]["rss_bytes"] < 1 << 30
    for row in status["models"][MODEL]["replicas"]:
        assert row["node"] and row["pid"] and row["unfinished_requests"] == 0
        assert row["prefix_cache_queries"] > 0 and row["prefix_cache_hit_rate"] is not None
    # One scrape shows vLLM's metrics of both engine replicas, each labelled with its replica.
    metrics = httpx.get(f"{two.url}/metrics", timeout=30)
    assert metrics.status_code == 200 and not metrics.history  # no redirect
    requests_total = [line for line in metrics.text.splitlines() if line.startswith("vllm:request_success_total{")]
    assert {r["replica"] for r in rows} <= {line.split('replica="')[1].split('"')[0] for line in requests_total}


def test_a_conversation_stays_on_one_replica(two: ServerProcess) -> None:
    wait_for_running(two)
    before = completed(replicas(two))
    history = [{"role": "system", "content": "You answer briefly. " * 20}]
    for turn in range(6):
        history.append({"role": "user", "content": f"question {turn} about rivers and mountains " * 3})
        answer = chat(two, history, temperature=0)
        history.append({"role": "assistant", "content": answer["message"]["content"]})
    after = replicas(two)
    served = {r["replica"]: r["completed_requests"] - before.get(r["replica"], 0) for r in after}
    assert sorted(served.values()) == [0, 6], served
    # Its later turns found their history in that replica's prefix cache.
    busy = next(r for r in after if served[r["replica"]])
    assert busy["prefix_cache_hits"] > 0


def serving_replica(server: ServerProcess) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        busy = [r for r in replicas(server) if r.get("unfinished_requests")]
        if busy:
            return busy[0]
        time.sleep(0.05)
    pytest.fail("no replica holds the request")


def engine_process(replica_pid: int) -> psutil.Process:
    for child in psutil.Process(replica_pid).children(recursive=True):
        if "EngineCore" in child.name() or "EngineCore" in " ".join(child.cmdline()):
            return child
    pytest.fail(f"no engine process under replica process {replica_pid}")


def stream_and_kill(server: ServerProcess, path: str, body: dict, kill: str) -> tuple[list[dict], dict]:
    """Stream `body`; after the third line, SIGKILL the serving replica's actor or its engine
    process. The lines the client got, and the replica that was killed."""
    lines: list[dict] = []
    victim: dict = {}
    with httpx.stream("POST", f"{server.url}{path}", json=body, timeout=180) as response:
        assert response.status_code == 200
        for raw in response.iter_lines():
            if not raw.strip():
                continue
            lines.append(orjson.loads(raw.removeprefix("data: ")) if raw != "data: [DONE]" else {"done": "[DONE]"})
            if len(lines) == 3:
                victim = serving_replica(server)
                target = psutil.Process(victim["pid"]) if kill == "replica" else engine_process(victim["pid"])
                target.kill()
    return lines, victim


@pytest.mark.parametrize("kill", ["replica", "engine"])
def test_stream_goes_on_elsewhere_when_its_replica_dies(two: ServerProcess, kill: str) -> None:
    wait_for_running(two)
    body = {"model": MODEL, "prompt": "Tell me a long story.", "options": GREEDY}
    reference = httpx.post(f"{two.url}/api/generate", json={**body, "stream": False}, timeout=180).json()
    lines, victim = stream_and_kill(two, "/api/generate", body, kill)
    assert not any("error" in line for line in lines), lines[-1]
    final = lines[-1]
    assert final["done"] is True and final["done_reason"] == "length"
    assert "".join(line.get("response", "") for line in lines) == reference["response"]  # token for token
    assert final["eval_count"] == GREEDY["num_predict"]
    assert final["prompt_eval_count"] == reference["prompt_eval_count"]
    assert final["context"] == reference["context"]
    assert final["total_duration"] >= final["eval_duration"] > 0
    # New requests right after the kill all succeed: the other replica takes them.
    for i in range(20):
        reply = httpx.post(f"{two.url}/api/generate", timeout=120,
                           json={"model": MODEL, "prompt": f"after {i}", "stream": False, "options": {"num_predict": 4}})
        assert reply.status_code == 200, reply.text
    if kill == "engine":  # the replica says so, and fails its health check until Serve replaces it
        rows = {r["replica"]: r for r in replicas(two)}
        assert rows.get(victim["replica"], {"state": "ENGINE_DEAD"})["state"] in ("ENGINE_DEAD", "UNREACHABLE")
    rows = wait_for_running(two)
    assert victim["replica"] not in {r["replica"] for r in rows}  # replaced by a new one


def test_openai_stream_ends_with_an_error_event_when_its_replica_dies(two: ServerProcess) -> None:
    """vLLM's /v1 handlers keep parser state that cannot move to another replica: the stream ends
    with OpenAI's error event and [DONE], never a cut connection or a clean finish."""
    wait_for_running(two)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "a long story"}], "stream": True,
            "max_tokens": 300, "ignore_eos": True, "temperature": 0}
    lines, _ = stream_and_kill(two, "/v1/chat/completions", body, "replica")
    assert lines[-1] == {"done": "[DONE]"}
    assert "error" in lines[-2], lines[-3:]
    assert not any(c.get("finish_reason") for line in lines[:-2] for c in line.get("choices", []))
    wait_for_running(two)
