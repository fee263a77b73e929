"""Loading on demand, measured: how long the first request for a model that is not loaded waits
for its first token, against vLLM's own server's start to its first token on the same model; and
how long an unload (`keep_alive: 0`) takes, and how much memory it gives back.

    .venv/bin/python bench/load_on_demand.py --starts 3        # about 10 minutes on 2 cores
    .venv/bin/python bench/load_on_demand.py --starts 3 --available   # and a model not configured

Each start, in alternating order: vLLM's own OpenAI server is launched and timed until a
one-token completion answers (the harness's "ready", which is its start to first token). vllama
is launched with the model `load: demand` and, once its ingress answers, a streamed request for
the model is timed until its first line (the engine starts meanwhile). Then the model is unloaded:
the call is timed, and the host's available memory is read before and after. The two servers
never share the machine. Results: docs/perf/load_on_demand.json (medians, and every start).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))

from harness import ENGINE, MODEL, PYTHON, ROOT, Server, free_port, hardware, stop  # noqa: E402

from vllama.models.tiny import make_tiny_model  # noqa: E402

RESULTS = ROOT / "docs" / "perf" / "load_on_demand.json"
#: The name a model directory under $VLLAMA_HOME/models is served by (`--available`).
AVAILABLE = "tiny-available:latest"


def vllm_start_to_first_token(model_dir: Path, workdir: Path) -> float:
    flags = ["--dtype", "float32", "--max-model-len", "2048", "--gpu-memory-utilization", str(ENGINE["gpu_memory_utilization"]),
             "--no-enable-prefix-caching"]
    server = Server("vllm", "vLLM's own", "openai", MODEL,
                    [PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1", "--port", "{port}",
                     "--model", str(model_dir), "--served-model-name", MODEL, *flags])
    proc, ready_s = server.start(free_port(), workdir)
    stop(proc, workdir)
    return ready_s


def vllama_on_demand(model_dir: Path, workdir: Path) -> dict[str, float]:
    """The model configured `load: demand`."""
    config = workdir / "demand.json"
    entry = {"name": MODEL, "source": str(model_dir), "load": "demand", **ENGINE}
    config.write_text(json.dumps({"models": [entry]}))
    return _first_token_then_unload(MODEL, ["--config", str(config)], workdir)


def vllama_available(model_dir: Path, workdir: Path) -> dict[str, float]:
    """The model not in the configuration, a directory under $VLLAMA_HOME/models: its first
    request also deploys its Serve application. It gets the server's defaults (on a CPU a memory
    share of what is free, about 0.21 of this machine against the configured 0.25)."""
    home = workdir / "home-available"
    target = home / "models" / AVAILABLE
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(model_dir, target)
    config = workdir / "other.json"  # a configuration names one model: another one, never loaded
    config.write_text(json.dumps({"models": [{"name": "other", "source": "random:tiny", "load": "demand", **ENGINE}]}))
    return _first_token_then_unload(AVAILABLE, ["--config", str(config)], workdir, env={"VLLAMA_HOME": str(home)})


def _first_token_then_unload(
    model: str, flags: list[str], workdir: Path, env: dict[str, str] | None = None,
) -> dict[str, float]:
    port = free_port()
    server = Server("vllama", "vllama", "ollama", model,
                    [PYTHON, "-m", "vllama", "serve", "--port", "{port}", "--dashboard-port", "0", *flags],
                    ready_path="/api/tags", env=env or {})
    server._answers = lambda port: True  # type: ignore[method-assign]  # ready = the ingress answers; nothing loaded
    proc, ingress_s = server.start(port, workdir)
    url = f"http://127.0.0.1:{port}"
    try:
        body = {"model": model, "prompt": "hi", "options": {"num_predict": 8}}
        started = time.monotonic()
        first_token_s = None
        with httpx.stream("POST", f"{url}/api/generate", json=body, timeout=600) as response:
            for line in response.iter_lines():
                if line.strip():
                    first_token_s = first_token_s or time.monotonic() - started
        assert first_token_s is not None, "no answer"
        time.sleep(2)
        before = psutil.virtual_memory().available
        started = time.monotonic()
        reply = httpx.post(f"{url}/api/generate", json={"model": model, "keep_alive": 0}, timeout=300)
        unload_s = time.monotonic() - started
        assert reply.status_code == 200, reply.text
        time.sleep(1)
        freed = psutil.virtual_memory().available - before
        listed = httpx.get(f"{url}/api/ps", timeout=30).json()["models"]
        assert listed == [], listed
        return {"ingress_ready_s": ingress_s, "first_token_s": first_token_s, "unload_s": unload_s,
                "freed_mib": freed / 2**20}
    finally:
        stop(proc, workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--available", action="store_true",
                        help="also time a model that the configuration does not name (found in $VLLAMA_HOME/models)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vb-load-") as tmp:
        workdir = Path(tmp)
        model_dir = make_tiny_model(workdir / "tiny")
        vllm_runs: list[float] = []
        vllama_runs: list[dict[str, float]] = []
        available_runs: list[dict[str, float]] = []
        keys = ["vllm", "vllama", "available"] if args.available else ["vllm", "vllama"]
        for start in range(args.starts):
            order = keys if start % 2 == 0 else keys[::-1]
            for key in order:
                if key == "vllm":
                    vllm_runs.append(vllm_start_to_first_token(model_dir, workdir))
                    print(key, vllm_runs[-1], flush=True)
                elif key == "vllama":
                    vllama_runs.append(vllama_on_demand(model_dir, workdir))
                    print(key, vllama_runs[-1], flush=True)
                else:
                    available_runs.append(vllama_available(model_dir, workdir))
                    print(key, available_runs[-1], flush=True)
    result = {
        "command": "python bench/load_on_demand.py --starts %d%s" % (args.starts, " --available" * args.available),
        "hardware": hardware(),
        "vllm_start_to_first_token_s": statistics.median(vllm_runs),
        **{f"vllama_{k}": statistics.median(r[k] for r in vllama_runs) for k in vllama_runs[0]},
        **{f"available_{k}": statistics.median(r[k] for r in available_runs) for k in (available_runs[:1] or [{}])[0]},
        "starts": {"vllm": vllm_runs, "vllama": vllama_runs, **({"available": available_runs} if available_runs else {})},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "starts"}, indent=1))


if __name__ == "__main__":
    main()
