"""Overload, measured: ten times a model's capacity offered at once, several rounds. Bars (issue
14): the p99 time to a 503 under 100 ms, every accepted request answered to its end, no other
error.

    .venv/bin/python bench/overload.py                       # about 3 minutes on 2 cores
    .venv/bin/python bench/overload.py --max-num-seqs 8 --max-queue 16 --rounds 5

The model's capacity is what its replica takes at once (its `max_ongoing_requests`: 2 x
max_num_seqs) plus its queue (`max_queue`); one replica here. The server is `vllama serve` with
those flags and an API key (its check is on the path being measured); each round sends
10 x capacity streamed requests at once, half Ollama chats, half OpenAI chat completions, each
for `--num-predict` tokens, and waits for all of them. Before them, the same bursts for a model
that does not exist (404 at once: no admission, no engine): what answering that many requests
at once costs this machine, the floor under the refusal times. With `--open-connections`, each
burst goes out on connections opened beforehand (a client's pool), so that it measures the
requests and not 160 TCP connections opened at the same instant. Results:
docs/perf/overload.json (overload_open_connections.json with the flag).
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

sys.path.insert(0, str(Path(__file__).parent))

from harness import MODEL, PYTHON, ROOT, Server, free_port, hardware, stop

from vllama.bench.overload import offer, quick_answers
from vllama.bench.stats import percentile

RESULTS = ROOT / "docs" / "perf" / "overload.json"
KEY = "sk-overload-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-num-seqs", type=int, default=4)
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--factor", type=int, default=10, help="offered = factor x capacity")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--num-predict", type=int, default=64)
    parser.add_argument("--open-connections", action="store_true",
                        help="open the burst's connections first, as a client with a pool holds them")
    args = parser.parse_args()
    capacity = 2 * args.max_num_seqs + args.max_queue
    offered = args.factor * capacity
    flags = ["--max-num-seqs", str(args.max_num_seqs), "--max-queue", str(args.max_queue), "--api-key", KEY,
             "--max-model-len", "2048", "--gpu-memory-utilization", "0.25", "--dtype", "float32",
             "--only-configured", "--dashboard-port", "0"]
    server = Server("vllama", "vllama", "ollama", MODEL,
                    [PYTHON, "-m", "vllama", "serve", "--port", "{port}", *flags], ready_path="/")
    server._answers = lambda port: True  # type: ignore[method-assign]  # the key is needed: warmed up below
    rounds = []
    with tempfile.TemporaryDirectory(prefix="vb-over-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        proc, _ = server.start(port, workdir)
        url = f"http://127.0.0.1:{port}"
        try:
            warm = httpx.post(f"{url}/api/generate", headers={"Authorization": f"Bearer {KEY}"}, timeout=600,
                              json={"model": MODEL, "prompt": "warm up", "stream": False, "options": {"num_predict": 8}})
            assert warm.status_code == 200, warm.text
            floor = []
            for _ in range(args.rounds):  # the same burst, answered without admission or engine work
                missing = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
                answers = asyncio.run(quick_answers(url, "/api/chat", missing, offered, api_key=KEY,
                                                    open_connections=args.open_connections))
                assert {status for status, _ in answers} == {404}, answers[:3]
                floor += [seconds * 1000 for _, seconds in answers]
            for number in range(args.rounds):
                started = time.monotonic()
                result = asyncio.run(offer(url, MODEL, offered, num_predict=args.num_predict, api_key=KEY,
                                           open_connections=args.open_connections))
                summary = {**result.summary(), "round_s": time.monotonic() - started}
                summary["refusal_ms_all"] = sorted(round(o.answered_s * 1000, 2) for o in result.refused)
                rounds.append(summary)
                print(number, {k: v for k, v in summary.items() if k != "refusal_ms_all"}, flush=True)
            status = httpx.get(f"{url}/vllama/status", headers={"Authorization": f"Bearer {KEY}"}, timeout=60).json()
            left = status["models"][MODEL]
        finally:
            stop(proc, workdir)
    refusals = sorted(ms for r in rounds for ms in r["refusal_ms_all"])
    floor.sort()
    result = {
        "command": f"python bench/overload.py --max-num-seqs {args.max_num_seqs} --max-queue {args.max_queue} "
                   f"--factor {args.factor} --rounds {args.rounds} --num-predict {args.num_predict}"
                   + (" --open-connections" if args.open_connections else ""),
        "hardware": hardware(),
        "capacity": capacity,
        "offered_per_round": offered,
        "refusal_ms": {"p50": percentile(refusals, 50), "p99": percentile(refusals, 99), "max": max(refusals, default=None)},
        "refused": len(refusals),
        "floor_ms": {"p50": percentile(floor, 50), "p99": percentile(floor, 99), "max": max(floor)},
        "accepted": sum(r["accepted"] for r in rounds),
        "accepted_completed": sum(r["accepted_completed"] for r in rounds),
        "other_errors": sum(r["other_errors"] for r in rounds),
        "after": {"admitted_here": left["admitted_here"], "unfinished_requests": left["unfinished_requests"]},
        "rounds": [{k: v for k, v in r.items() if k != "refusal_ms_all"} for r in rounds],
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    results = RESULTS.with_name("overload_open_connections.json") if args.open_connections else RESULTS
    results.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=1))


if __name__ == "__main__":
    main()
