"""A soak, measured: 10,000 mixed requests at a steady concurrency (`vllama.bench.soak`: both APIs,
chat and generate, streamed and not, 10% abandoned mid-stream, 5% bad input). Bars (issue 14):
no unexpected failure, no engine request left, the KV cache back to empty, and the engine
replica's resident memory (its process and its engine core) after the run within 10% of what it
was after the warm-up.

    .venv/bin/python bench/soak.py                           # about 15 minutes on 2 cores
    .venv/bin/python bench/soak.py --requests 2000 --concurrency 16

The server: `vllama serve` with the embedded model and an API key. Results: docs/perf/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).parent))

from harness import MODEL, PYTHON, ROOT, Server, free_port, hardware, stop

from vllama.bench.soak import mix, soak

RESULTS = ROOT / "docs" / "perf" / "soak.json"
KEY = "sk-soak-bench"


def replica_memory(url: str) -> tuple[int, dict]:
    """The engine replica's resident bytes (its process and their children: the engine core),
    and the model's status."""
    status = httpx.get(f"{url}/vllama/status", headers={"Authorization": f"Bearer {KEY}"}, timeout=60).json()
    model = status["models"][MODEL]
    total = 0
    for row in model["replicas"]:
        process = psutil.Process(row["pid"])
        total += sum(p.memory_info().rss for p in [process, *process.children(recursive=True)])
    return total, model


def settle(url: str, timeout_s: float = 60) -> dict:
    """The model's status once no request is left (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        _, model = replica_memory(url)
        if (not model["unfinished_requests"] and not model["kv_cache_usage"]) or time.monotonic() > deadline:
            return model
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    flags = ["--api-key", KEY, "--max-model-len", "2048", "--gpu-memory-utilization", "0.25", "--dtype", "float32",
             "--only-configured", "--dashboard-port", "0"]
    server = Server("vllama", "vllama", "ollama", MODEL, [PYTHON, "-m", "vllama", "serve", "--port", "{port}", *flags],
                    ready_path="/")
    server._answers = lambda port: True  # type: ignore[method-assign]
    requests = mix(MODEL, args.warmup + args.requests, seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="vb-soak-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        proc, _ = server.start(port, workdir)
        url = f"http://127.0.0.1:{port}"
        try:
            settle(url, timeout_s=600)
            warm = asyncio.run(soak(url, requests[:args.warmup], concurrency=args.concurrency, api_key=KEY))
            settle(url)
            rss_after_warmup, _ = replica_memory(url)
            started = time.monotonic()
            report = lambda n: print(f"{n} requests", flush=True) if n % 1000 == 0 else None
            run = asyncio.run(soak(url, requests[args.warmup:], concurrency=args.concurrency, api_key=KEY,
                                   progress=report))
            elapsed = time.monotonic() - started
            after = settle(url)
            rss_after_run, _ = replica_memory(url)
        finally:
            stop(proc, workdir)
    growth = rss_after_run / rss_after_warmup - 1
    result = {
        "command": f"python bench/soak.py --requests {args.requests} --warmup {args.warmup} "
                   f"--concurrency {args.concurrency} --seed {args.seed}",
        "hardware": hardware(),
        "warmup": warm.summary(),
        **run.summary(),
        "duration_s": round(elapsed, 1),
        "requests_per_s": round(args.requests / elapsed, 1),
        "after": {"unfinished_requests": after["unfinished_requests"], "kv_cache_usage": after["kv_cache_usage"],
                  "admitted_here": after.get("admitted_here")},
        "replica_rss_mib": {"after_warmup": round(rss_after_warmup / 2**20, 1), "after_run": round(rss_after_run / 2**20, 1),
                            "growth_percent": round(100 * growth, 2)},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
