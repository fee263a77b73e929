"""The whole cluster's metrics, as a real Prometheus scrapes them through Ray's service discovery;
the Grafana dashboard's queries against it; the request log; `GET /metrics` for one node.

One server for the module: two engine replicas of one model (Ray's dashboard on, so Ray writes
its service-discovery file), a queue of 1 and small batches so that a burst gets real 503s.
Prometheus is Debian's (`make test` installs it), started on a free port with a scrape
configuration of nothing but Ray's discovery file: what a user writes.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support import ServerProcess, free_port, short_tmpdir, vllama_server

pytestmark = pytest.mark.slow

MODEL = "vllama-tiny:latest"
DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "vllama.json"
#: max_num_seqs 2: each replica takes 2 x 2 requests at once (admission.py), one more may wait.
PER_REPLICA = 4
QUEUE = 1
BURST = 14


@pytest.fixture(scope="module")
def two() -> Iterator[ServerProcess]:
    with vllama_server(
        "vt-prom-", "--model", "vllama-tiny", "--num-replicas", "2", "--gpu-memory-utilization", "0.05",
        "--max-model-len", "2048", "--max-num-seqs", "2", "--max-queue", str(QUEUE), "--enable-prefix-caching",
        "--engine-arg", "enforce_eager=true", "--dashboard-port", str(free_port()),
        # Ray reports its metrics every 10 s by default: 1 s keeps the test short.
        env={"RAY_metrics_report_interval_ms": "1000"},
    ) as server:
        yield server


def discovery_file(server: ServerProcess) -> Path:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = sorted((server.workdir / "ray").glob("**/session_latest/prom_metrics_service_discovery.json"))
        if found:
            return found[0]
        time.sleep(1)
    pytest.fail("Ray wrote no prom_metrics_service_discovery.json (is its dashboard on?)")


@pytest.fixture(scope="module")
def prometheus(two: ServerProcess) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: `make test` installs Debian's package")
    workdir = short_tmpdir("vt-promdb-")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "ray",
            "file_sd_configs": [{"files": [str(discovery_file(two))], "refresh_interval": "2s"}],
        }],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prometheus did not start: {(workdir / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


def value(prometheus: str, expr: str) -> float | None:
    result = query(prometheus, expr)
    return float(result[0]["value"][1]) if result else None


def eventually(prometheus: str, expr: str, expected: float, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while (seen := value(prometheus, expr)) != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"{expr} = {seen} after {timeout_s} s, expected {expected}")
        time.sleep(1)


def running_replicas(server: ServerProcess, timeout_s: float = 180) -> set[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = httpx.get(f"{server.url}/vllama/status", timeout=30).json()["models"][MODEL]["replicas"]
        if sum(r["state"] == "RUNNING" for r in rows) == 2:
            return {r["replica"] for r in rows}
        if time.monotonic() > deadline:
            pytest.fail(f"not 2 running replicas after {timeout_s} s: {rows}")
        time.sleep(1)


async def burst(url: str, count: int) -> list[int]:
    """`count` long streams at once: those past the model's capacity get 503 at once."""
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:

        async def one(i: int) -> int:
            body = {"model": MODEL, "messages": [{"role": "user", "content": f"burst {i}"}],
                    "options": {"num_predict": 64, "ignore_eos": True}}
            async with client.stream("POST", "/api/chat", json=body) as response:
                await response.aread()
                return response.status_code

        return list(await asyncio.gather(*(one(i) for i in range(count))))


@pytest.fixture(scope="module")
def sent(two: ServerProcess, prometheus: str) -> Counter[int]:
    """What the test sent to /api/chat, by status; every request the cluster's metrics must count."""
    running_replicas(two)
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=two.url, timeout=120) as client:
        for i in range(10):
            # Distinct conversations spread over both replicas; the shared system prompt gives
            # prefix-cache hits.
            messages = [{"role": "system", "content": "You are terse. " * 40},
                        {"role": "user", "content": f"conversation {i}"}]
            reply = client.post("/api/chat", json={"model": MODEL, "messages": messages, "stream": i % 2 == 0,
                                                   "options": {"num_predict": 8}},
                                headers={"X-Request-Id": f"metrics-test-{i}"})
            statuses[reply.status_code] += 1
        statuses[client.post("/api/chat", json={"model": "no-such-model", "messages": []}).status_code] += 1
    for status in asyncio.run(burst(two.url, BURST)):
        statuses[status] += 1
    assert statuses[200] >= 10 + 2 * PER_REPLICA, statuses
    assert statuses[503] >= BURST - 2 * PER_REPLICA - QUEUE, statuses  # past capacity: 503 at once
    assert statuses[404] == 1, statuses
    return statuses


def test_prometheus_counts_every_request_of_every_replica(two: ServerProcess, prometheus: str,
                                                          sent: Counter[int]) -> None:
    eventually(prometheus, 'sum(ray_vllama_requests_total{route="/api/chat"})', sum(sent.values()))
    for status, count in sent.items():
        eventually(prometheus, f'sum(ray_vllama_requests_total{{route="/api/chat",status="{status}"}})', count)
    eventually(prometheus, f'sum(ray_vllama_refused_total{{model="{MODEL}"}})', sent[503])
    # vLLM's own metrics, from both engine replicas, labelled by model and replica: every answer
    # that got a 200 ran to its end in one of them.
    replicas = running_replicas(two)
    eventually(prometheus, f'sum(ray_vllm_request_success_total{{model_name="{MODEL}"}})', sent[200])
    by_replica = query(prometheus, f'sum by (ReplicaId) (ray_vllm_request_success_total{{model_name="{MODEL}"}})')
    assert {series["metric"]["ReplicaId"] for series in by_replica} == replicas
    assert all(float(series["value"][1]) > 0 for series in by_replica)
    # The engine replicas' own counts (vllama's, per answer) agree with the engine's.
    eventually(prometheus, f'sum(ray_vllama_engine_time_seconds_count{{model="{MODEL}"}})', sent[200])


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def as_run(expr: str) -> str:
    """A panel's query as Grafana would send it: its variables given values."""
    return expr.replace("$__rate_interval", "1m").replace('"$model"', '".*"')


def test_every_dashboard_panel_returns_series(prometheus: str, sent: Counter[int]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["templating"]["list"][0]["type"] == "datasource"  # importable into any Grafana
    # The rates need two scrapes after the traffic; the request counter says the scrapes are in.
    eventually(prometheus, 'sum(ray_vllama_requests_total{route="/api/chat"})', sum(sent.values()))
    time.sleep(5)
    empty = []
    for panel in dashboard["panels"]:
        results = {target["expr"]: query(prometheus, as_run(target["expr"])) for target in panel["targets"]}
        if not any(results.values()):
            empty.append((panel["title"], list(results)))
    assert not empty, f"panels without series: {empty}"
    variables = re.findall(r"\$\w+", " ".join(expr for _, expr in panel_queries()))
    assert set(variables) <= {"$__rate_interval", "$model"}


def test_request_log_line_per_request(two: ServerProcess, sent: Counter[int]) -> None:
    reply = httpx.post(f"{two.url}/api/generate", json={"model": MODEL, "prompt": "hello", "stream": True,
                                                        "options": {"num_predict": 6}},
                       headers={"X-Request-Id": "log-test-1"}, timeout=120)
    assert reply.status_code == 200 and reply.headers["x-request-id"] == "log-test-1"
    generated = reply.text.strip().splitlines()[-1]
    final = json.loads(generated)
    made = httpx.get(f"{two.url}/api/tags", timeout=30)
    assert made.headers.get("x-request-id")  # made by Serve's HAProxy when the client sends none
    lines = log_lines(two, "log-test-1")
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["vllama_route"] == "/api/generate" and line["vllama_model"] == MODEL and line["vllama_status"] == 200
    assert line["vllama_prompt_tokens"] == final["prompt_eval_count"]
    assert line["vllama_generated_tokens"] == final["eval_count"] == 6
    assert 0 < line["vllama_ttft_ms"] <= line["vllama_duration_ms"]
    assert line["vllama_engine_replica"] in running_replicas(two)
    assert line["request_id"] == "log-test-1"  # Serve's own field agrees
    assert log_lines(two, made.headers["x-request-id"])[0]["vllama_route"] == "/api/tags"


def log_lines(server: ServerProcess, request_id: str, timeout_s: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = []
        for path in (server.workdir / "ray").glob("**/session_latest/logs/serve/replica_*Ingress*.log"):
            for raw in path.read_text(errors="replace").splitlines():
                if request_id in raw and raw.startswith("{"):
                    record = json.loads(raw)
                    if record.get("vllama_request_id") == request_id:
                        found.append(record)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_metrics_endpoint_for_one_node(two: ServerProcess, sent: Counter[int]) -> None:
    reply = httpx.get(f"{two.url}/metrics", timeout=30, follow_redirects=False)
    assert reply.status_code == 200, reply.status_code
    text = reply.text
    assert re.search(r'^vllama_requests_total\{[^}]*route="/api/chat"', text, re.MULTILINE)
    replicas = set(re.findall(r'^vllm:request_success_total\{[^}]*replica="([^"]+)"', text, re.MULTILINE))
    assert replicas == running_replicas(two)
