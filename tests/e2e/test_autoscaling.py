"""Autoscaling: a load ramp takes a model from one engine replica to two, both serve, and it comes
back to one once the load falls, without one request failing while replicas come and go.

The replicas report the requests they hold (`record_autoscaling_stats`), Serve's autoscaler
divides their sum by `target_ongoing_requests` (here 4) with short delays so that the test runs
in about two minutes; a replica being removed finishes its streams before it stops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
import yaml

from tests.support import ServerProcess, short_tmpdir, vllama_server

MODEL = "vllama-tiny:latest"
CONFIG = {
    "models": [{
        "name": MODEL,
        "max_num_seqs": 8,
        "gpu_memory_utilization": 0.05,
        "max_model_len": 1024,
        "engine_kwargs": {"enforce_eager": True},
        "deployment": {
            "autoscaling_config": {
                "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 4,
                "upscale_delay_s": 2, "downscale_delay_s": 10, "look_back_period_s": 3, "metrics_interval_s": 1,
            },
            "graceful_shutdown_timeout_s": 30,
        },
    }],
}
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scaled() -> Iterator[ServerProcess]:
    workdir = short_tmpdir("vt-scale-")
    (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    with vllama_server("", "--config", str(workdir / "config.yaml"), "--dashboard-port", "0", workdir=workdir) as server:
        yield server


class Load:
    """Streams requests from `workers` threads, `active` of them at a time; every answer checked."""

    def __init__(self, url: str, workers: int) -> None:
        self.url = url
        self.active = 0
        self.done = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def _work(self, index: int) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as client:
            while not self._stop.is_set():
                if index >= self.active:
                    time.sleep(0.05)
                    continue
                body = {"model": MODEL, "prompt": f"worker {index} at {time.monotonic()}",
                        "options": {"num_predict": 60, "ignore_eos": True}}
                try:
                    with client.stream("POST", "/api/generate", json=body) as response:
                        if response.status_code != 200:
                            self.failures.append(f"HTTP {response.status_code}: {response.read()[:200]!r}")
                            continue
                        last = {}
                        for line in response.iter_lines():
                            if line.strip():
                                last = orjson.loads(line)
                                if "error" in last:
                                    break
                        if last.get("done") is not True or last.get("eval_count") != 60:
                            self.failures.append(f"bad end: {last}")
                        else:
                            self.done += 1
                except httpx.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=180)


def model_status(server: ServerProcess) -> dict:
    return httpx.get(f"{server.url}/vllama/status", timeout=60).json()["models"][MODEL]


def wait_for(
    server: ServerProcess, condition: Callable[[dict], bool], what: str, timeout_s: float, load: Load
) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status = model_status(server)
        if condition(status):
            return status
        if time.monotonic() > deadline:
            load.stop()
            pytest.fail(f"{what} not seen in {timeout_s} s: {status['replicas']}; failures: {load.failures[:5]}")
        time.sleep(1)


def test_load_ramp_scales_out_and_back(scaled: ServerProcess) -> None:
    start = model_status(scaled)
    assert len(start["replicas"]) == 1
    first = start["replicas"][0]["replica"]
    load = Load(scaled.url, workers=16)
    try:
        load.active = 16  # 16 in flight against a target of 4 per replica: Serve wants more
        both = wait_for(
            scaled, lambda s: len(s["replicas"]) == 2 and all(r["completed_requests"] > 0 for r in s["replicas"]),
            "two replicas, both serving", 300, load,
        )
        second = next(r["replica"] for r in both["replicas"] if r["replica"] != first)
        assert load.done > 0
        load.active = 2  # a trickle: one replica is enough, and it must not lose a request on the way
        remaining = wait_for(scaled, lambda s: len(s["replicas"]) == 1, "back to one replica", 240, load)
        served_after = load.done
        time.sleep(5)  # the one left goes on serving
        assert load.done > served_after
    finally:
        load.stop()
    assert load.failures == []
    assert remaining["replicas"][0]["replica"] in (first, second)
