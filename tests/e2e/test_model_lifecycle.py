"""Ollama's model lifecycle on Ray Serve, end to end (real Serve and vLLM engines, tiny models):
a model configured `load: demand` is loaded by its first request (concurrent first requests
start one engine), unloaded by `keep_alive: 0` (no engine process, no Serve replica, not in
/api/ps) and after its keep_alive runs out, loaded again by the next request; a request in
flight is never unloaded under; `vllama serve --model DIR1 --model DIR2` starts with no memory flag.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest
import yaml

from tests.support import ServerProcess, short_tmpdir, vllama_server

STARTED = "vllama-tiny:latest"
ON_DEMAND = "ondemand:latest"
ENGINE = {"gpu_memory_utilization": 0.05, "max_model_len": 1024, "engine_kwargs": {"enforce_eager": True}}
CONFIG = {
    "models": [
        {"name": STARTED, **ENGINE},
        {"name": ON_DEMAND, "source": "random:tiny", "load": "demand", **ENGINE},
    ],
}
pytestmark = pytest.mark.slow


LATER = "later:latest"


@pytest.fixture(scope="module")
def workdir() -> Path:
    return short_tmpdir("vt-lc-")


@pytest.fixture(scope="module")
def server(workdir: Path) -> Iterator[ServerProcess]:
    # A third model whose weights are not there yet (a pull that has not happened).
    later = {"name": LATER, "source": str(workdir / "later-weights"), "load": "demand", **ENGINE}
    (workdir / "config.yaml").write_text(yaml.safe_dump({"models": [*CONFIG["models"], later]}))
    with vllama_server("", "--config", str(workdir / "config.yaml"), "--dashboard-port", "0", workdir=workdir) as server:
        yield server


def loaded(server: ServerProcess) -> dict[str, dict]:
    ps = httpx.get(f"{server.url}/api/ps", timeout=60)
    assert ps.status_code == 200, ps.text
    return {m["name"]: m for m in ps.json()["models"]}


def generate(server: ServerProcess, model: str, **extra: object) -> dict:
    body = {"model": model, "prompt": "hello", "stream": False, "options": {"num_predict": 4}, **extra}
    reply = httpx.post(f"{server.url}/api/generate", json=body, timeout=400)
    assert reply.status_code == 200, reply.text
    return reply.json()


def replica_processes(server: ServerProcess, model: str) -> list[psutil.Process]:
    """The server's processes that belong to the model's engine replica (Ray names its worker
    after the actor; the engine's own processes are its children)."""
    found = []
    for proc in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            if f"ModelServer:{model.replace('.', '_')}" in " ".join(proc.cmdline()):
                found.append(proc)
                found.extend(proc.children(recursive=True))
        except psutil.Error:
            continue
    return found


def wait_until_unloaded(server: ServerProcess, model: str, timeout_s: float) -> float:
    start = time.monotonic()
    while model in loaded(server):
        assert time.monotonic() - start < timeout_s, f"{model} still loaded after {timeout_s} s"
        time.sleep(0.25)
    return time.monotonic() - start


def test_max_loaded_models_one_swaps_models_used_in_turn() -> None:
    """`max_loaded_models: 1`: each model used in turn unloads the other first (the least
    recently used idle one), and no request fails."""
    workdir = short_tmpdir("vt-swap-")
    config = {"max_loaded_models": 1, "models": [
        {"name": "a:latest", "source": "random:tiny", "load": "demand", **ENGINE},
        {"name": "b:latest", "source": "random:tiny", "load": "demand", **ENGINE},
    ]}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    with vllama_server("", "--config", str(workdir / "config.yaml"), "--dashboard-port", "0", workdir=workdir) as server:
        for model in ("a:latest", "b:latest", "a:latest"):
            assert generate(server, model)["done"]
            assert list(loaded(server)) == [model]
            assert generate(server, model)["load_duration"] < 1e9  # loaded: the next one does not wait


def test_two_model_directories_start_with_no_memory_flag() -> None:
    """On a CPU each engine's memory share is chosen so both fit (vLLM's default, 0.92 of the
    machine each, failed to start the first)."""
    from vllama.models.tiny import make_tiny_model

    workdir = short_tmpdir("vt-dirs-")
    first, second = make_tiny_model(workdir / "first"), make_tiny_model(Path(workdir / "second"))
    with vllama_server("", "--model", f"first={first}", "--model", f"second={second}", "--dashboard-port", "0",
                       "--engine-arg", "enforce_eager=true", "--max-model-len", "1024", workdir=workdir) as server:
        for name in ("first", "second"):
            assert generate(server, name)["done"]
        engines = httpx.get(f"{server.url}/vllama/status", timeout=60).json()["models"]
        shares = [engines[name]["engine"].get("gpu_memory_utilization") for name in ("first:latest", "second:latest")]
        assert all(0 < share < 0.5 for share in shares), shares


def test_on_demand_model_is_listed_but_not_loaded_at_start(server: ServerProcess) -> None:
    assert list(loaded(server)) == [STARTED]
    tags = [m["name"] for m in httpx.get(f"{server.url}/api/tags", timeout=60).json()["models"]]
    assert ON_DEMAND in tags
    show = httpx.post(f"{server.url}/api/show", json={"model": ON_DEMAND}, timeout=60)
    assert show.status_code == 200 and show.json()["details"]["family"] == "qwen2"
    assert ON_DEMAND not in loaded(server)  # describing it did not load it
    assert replica_processes(server, ON_DEMAND) == []


def test_concurrent_first_requests_load_one_engine(server: ServerProcess) -> None:
    answers: list[dict] = []
    threads = [threading.Thread(target=lambda: answers.append(generate(server, ON_DEMAND))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=420)
    assert len(answers) == 3 and all(a["done"] for a in answers)
    assert max(a["load_duration"] for a in answers) > 1e9  # they waited for the engine to start
    entry = loaded(server)[ON_DEMAND]
    assert entry["replicas"] == 1
    status = httpx.get(f"{server.url}/vllama/status", timeout=60).json()["models"][ON_DEMAND]
    assert len(status["replicas"]) == 1 and status["replicas"][0]["completed_requests"] == 3
    # Ollama's default keep_alive for a model loaded on demand: 5 minutes from the last request.
    expires = datetime.datetime.fromisoformat(entry["expires_at"]).timestamp()
    assert 240 < expires - time.time() <= 300


def test_keep_alive_zero_unloads_and_frees_the_engine(server: ServerProcess) -> None:
    generate(server, ON_DEMAND)  # loaded (again, if an earlier test left it unloaded)
    processes = replica_processes(server, ON_DEMAND)
    assert processes, "no replica process found for the model"
    reply = httpx.post(f"{server.url}/api/generate", json={"model": ON_DEMAND, "keep_alive": 0}, timeout=200)
    assert reply.status_code == 200, reply.text
    assert reply.json()["done_reason"] == "unload"
    # Answered once done: not listed, no Serve replica, its processes (engine included) gone.
    assert ON_DEMAND not in loaded(server)
    status = httpx.get(f"{server.url}/vllama/status", timeout=60).json()["models"][ON_DEMAND]
    assert status["replicas"] == []
    _, alive = psutil.wait_procs(processes, timeout=30)
    assert alive == [], [p.pid for p in alive]
    assert STARTED in loaded(server)  # the other model stays
    assert generate(server, STARTED)["done"]


def test_keep_alive_runs_out_then_the_next_request_loads_again(server: ServerProcess) -> None:
    generate(server, ON_DEMAND, keep_alive="2s")
    expires = datetime.datetime.fromisoformat(loaded(server)[ON_DEMAND]["expires_at"]).timestamp()
    assert expires - time.time() <= 2.5
    took = wait_until_unloaded(server, ON_DEMAND, timeout_s=30)
    assert took < 15, took
    again = generate(server, ON_DEMAND)
    assert again["done"] and again["load_duration"] > 1e9
    assert ON_DEMAND in loaded(server)


def test_a_request_in_flight_is_not_unloaded_under(server: ServerProcess) -> None:
    """A stream with keep_alive 0 (unload when done), and an unload call while it runs: the
    stream ends whole, then the model unloads."""
    generate(server, ON_DEMAND)
    lines: list[dict] = []
    body = {"model": ON_DEMAND, "prompt": "a long one", "keep_alive": 0,
            "options": {"num_predict": 700, "ignore_eos": True}}

    def stream() -> None:
        with httpx.stream("POST", f"{server.url}/api/generate", json=body, timeout=300) as response:
            lines.extend(orjson.loads(line) for line in response.iter_lines() if line.strip())

    client = threading.Thread(target=stream)
    client.start()
    time.sleep(0.5)
    unload = httpx.post(f"{server.url}/api/generate", json={"model": ON_DEMAND, "keep_alive": 0}, timeout=300)
    client.join(timeout=300)
    assert unload.status_code == 200, unload.text
    assert lines and lines[-1]["done"] is True and lines[-1]["eval_count"] == 700, lines[-1:]
    assert ON_DEMAND not in loaded(server)


def test_a_model_created_on_an_unloaded_one_loads_its_base_on_first_use(server: ServerProcess) -> None:
    httpx.post(f"{server.url}/api/generate", json={"model": ON_DEMAND, "keep_alive": 0}, timeout=200)
    assert ON_DEMAND not in loaded(server)
    created = httpx.post(f"{server.url}/api/create", timeout=60,
                         json={"model": "terse:latest", "from": ON_DEMAND, "system": "Answer in one word.", "stream": False})
    assert created.status_code == 200, created.text
    assert ON_DEMAND not in loaded(server)  # creating it loaded nothing
    answer = generate(server, "terse:latest")
    assert answer["done"] and answer["load_duration"] > 1e9
    assert ON_DEMAND in loaded(server)


def test_a_failed_load_says_why_and_a_later_request_loads_once_fixed(server: ServerProcess, workdir: Path) -> None:
    """The engine's explained cause, in Ollama's error format, for the requests that asked;
    nothing left running; once the cause is gone (the weights arrive), a request loads it."""
    from vllama.models.tiny import make_tiny_model

    body = {"model": LATER, "prompt": "hello", "stream": False, "options": {"num_predict": 4}}
    for _ in range(2):
        failed = httpx.post(f"{server.url}/api/generate", json=body, timeout=400)
        assert failed.status_code == 500, failed.text
        error = failed.json()["error"]
        assert error.startswith(f"model '{LATER}' failed to load: model directory") and "has no config.json" in error
    wait_until_unloaded(server, LATER, timeout_s=30)  # the replica that reported it is scaled away
    _, alive = psutil.wait_procs(replica_processes(server, LATER), timeout=30)
    assert alive == []  # nothing left half-started
    assert generate(server, STARTED)["done"]  # the others serve on
    make_tiny_model(workdir / "later-weights")  # the weights arrive
    assert generate(server, LATER)["done"]
    assert LATER in loaded(server)


def test_a_model_directory_added_while_serving_is_listed_and_loaded_on_demand(
    server: ServerProcess, workdir: Path,
) -> None:
    """A model the config does not name, copied under $VLLAMA_HOME/models while the server runs
    (as Ollama serves what is pulled, with no restart): listed and described without loading,
    loaded by its first request as a Serve application of its own, a created model on it, and
    unloaded by keep_alive 0. A pulled repository (its directory under the home's hub/) is
    listed under its Hugging Face name."""
    from vllama.models.pull import pulled_dir
    from vllama.models.tiny import make_tiny_model

    home = workdir / "home"
    make_tiny_model(home / "models" / "added")
    pulled = pulled_dir(home, "someorg/Pulled-Model")
    pulled.mkdir(parents=True)
    (pulled / "config.json").write_text('{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}')
    time.sleep(2.5)  # an ingress replica reuses its listing for 2 s

    tags = [m["name"] for m in httpx.get(f"{server.url}/api/tags", timeout=60).json()["models"]]
    assert "added:latest" in tags and "hf.co/someorg/Pulled-Model:latest" in tags, tags
    show = httpx.post(f"{server.url}/api/show", json={"model": "added"}, timeout=60)
    assert show.status_code == 200 and show.json()["details"]["family"] == "qwen2", show.text
    assert "added:latest" not in loaded(server)  # listing and describing load nothing

    answer = generate(server, "added")
    assert answer["done"] and answer["load_duration"] > 1e9
    entry = loaded(server)["added:latest"]
    assert entry["replicas"] == 1 and entry["expires_at"] != "2318-08-19T00:00:00Z"  # 5m, as on demand
    assert replica_processes(server, "added:latest")
    applications = httpx.get(f"{server.url}/vllama/status", timeout=60).json()["models"]
    assert len(applications["added:latest"]["replicas"]) == 1

    created = httpx.post(f"{server.url}/api/create", timeout=60,
                         json={"model": "added-terse", "from": "added", "system": "One word.", "stream": False})
    assert created.status_code == 200, created.text
    assert generate(server, "added-terse")["load_duration"] < 1e9  # the same engine, loaded

    unload = httpx.post(f"{server.url}/api/generate", json={"model": "added", "keep_alive": 0}, timeout=200)
    assert unload.status_code == 200 and unload.json()["done_reason"] == "unload", unload.text
    assert "added:latest" not in loaded(server)
    _, alive = psutil.wait_procs(replica_processes(server, "added:latest"), timeout=30)
    assert alive == []
    assert "added:latest" in [m["name"] for m in httpx.get(f"{server.url}/api/tags", timeout=60).json()["models"]]
