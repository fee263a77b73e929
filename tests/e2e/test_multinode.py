"""A real two-node Ray cluster on this machine: `ray start --head` and `ray start --address`, each
node with a custom resource of its own; `vllama serve --ray-address` joins it. One engine replica
of the model runs on each node (`max_replicas_per_node: 1`), the ingress is pinned to the head
(its resource); requests are answered by both; then the second node is stopped and the service
goes on from the head.

Both `ray start` commands run with `--block` in process groups of their own, so that stopping a
node is stopping its group; everything is stopped at the end, on failure too (by group, then by
the cluster's private RAY_TMPDIR).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import ServerProcess, free_port, short_tmpdir, vllama_server
from vllama.bench.processes import kill_started_under

MODEL = "vllama-tiny:latest"
pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    workdir: Path
    port: int
    env: dict[str, str]
    nodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_node(self, name: str, *args: str) -> None:
        ray = str(Path(sys.executable).parent / "ray")
        log = (self.workdir / f"{name}.log").open("wb")
        self.nodes[name] = subprocess.Popen(
            [ray, "start", "--block", "--num-cpus", "2", "--resources", f'{{"{name}": 1}}', *args],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, process_group=0, cwd=self.workdir,
        )

    def alive_nodes(self) -> int:
        probe = "import ray; ray.init(address='%s', log_to_driver=False); print(sum(n['Alive'] for n in ray.nodes()))"
        result = subprocess.run([sys.executable, "-c", probe % self.address], env=self.env, capture_output=True,
                                text=True, timeout=60, check=False)
        lines = result.stdout.strip().splitlines()
        return int(lines[-1]) if result.returncode == 0 and lines else 0

    def stop_node(self, name: str) -> None:
        process = self.nodes.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # `ray start --block` stops its node's processes
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        for name in list(self.nodes):
            self.stop_node(name)
        subprocess.run(["pkill", "-9", "-f", str(self.workdir / "ray")], check=False)
        kill_started_under(self.workdir / "ray")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    workdir = short_tmpdir("vt-mn-")
    (workdir / "ray").mkdir()
    env = {
        **os.environ,
        "RAY_TMPDIR": str(workdir / "ray"),
        "VLLAMA_HOME": str(workdir / "home"),
        "RAY_AUTH_MODE": "token",  # Ray 2.60's head turns token authentication on; joining needs it
        # What `vllama serve` sets for a cluster it starts itself; `ray start` takes it from here.
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
        "RAY_worker_niceness": "0",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                 "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"):
        env[name] = str(free_port())
    env.pop("RAY_ADDRESS", None)
    cluster = Cluster(workdir, free_port(), env)
    try:
        cluster.start_node("head", "--head", "--port", str(cluster.port), "--include-dashboard", "false")
        deadline = time.monotonic() + 120
        while cluster.alive_nodes() < 1:
            assert time.monotonic() < deadline, (workdir / "head.log").read_text(errors="replace")[-3000:]
            time.sleep(2)
        cluster.start_node("worker", "--address", cluster.address)
        while cluster.alive_nodes() < 2:
            assert time.monotonic() < deadline, (workdir / "worker.log").read_text(errors="replace")[-3000:]
            time.sleep(2)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def served(cluster: Cluster) -> Iterator[ServerProcess]:
    config = {
        "models": [{
            "name": MODEL, "gpu_memory_utilization": 0.05, "max_model_len": 1024,
            "engine_kwargs": {"enforce_eager": True},
            "deployment": {"num_replicas": 2, "max_replicas_per_node": 1},
        }],
        # On the head, so that stopping the other node leaves the entry point up.
        "ingress": {"num_replicas": 1, "ray_actor_options": {"resources": {"head": 0.01}}},
    }
    (cluster.workdir / "config.yaml").write_text(yaml.safe_dump(config))
    (cluster.workdir / "driver").mkdir()
    with vllama_server(
        "", "--ray-address", cluster.address, "--config", str(cluster.workdir / "config.yaml"),
        workdir=cluster.workdir / "driver", env={k: cluster.env[k] for k in ("RAY_AUTH_MODE", "VLLAMA_HOME")},
    ) as server:
        yield server


def replicas(server: ServerProcess) -> list[dict]:
    return httpx.get(f"{server.url}/vllama/status", timeout=30).json()["models"][MODEL]["replicas"]


def ask(server: ServerProcess, i: int) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": f"conversation {i} " + "on two nodes " * 10}],
            "stream": False, "options": {"num_predict": 4}}
    reply = httpx.post(f"{server.url}/api/chat", json=body, timeout=120)
    assert reply.status_code == 200, reply.text


def running_on(rows: list[dict]) -> set[str]:
    return {r["node"] for r in rows if r["state"] == "RUNNING"}


def test_one_replica_per_node_both_serve_then_the_head_alone(cluster: Cluster, served: ServerProcess) -> None:
    # "serving" is printed once Serve calls the application running; the ingress learns of each
    # replica from Serve's long poll a moment later, so wait (bounded) for both to answer it.
    deadline = time.monotonic() + 120
    while len(running_on(rows := replicas(served))) != 2 or len(rows) != 2:
        assert time.monotonic() < deadline, rows
        time.sleep(2)
    before = {r["replica"]: r["completed_requests"] for r in rows}
    for i in range(20):
        ask(served, i)
    rows = replicas(served)
    assert all(r["completed_requests"] > before[r["replica"]] for r in rows), rows  # both nodes answered

    head_node = httpx.get(f"{served.url}/vllama/status", timeout=30).json()["ingress"]["node"]
    cluster.stop_node("worker")
    for i in range(20, 40):  # the service goes on from the head, not one request lost
        ask(served, i)
    deadline = time.monotonic() + 120
    while running_on(rows := replicas(served)) != {head_node}:
        assert time.monotonic() < deadline, rows
        time.sleep(2)
