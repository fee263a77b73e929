"""CPU time per request of every process on this machine, while a fixed load runs against a server.

    .venv/bin/python bench/cpu_per_request.py --url http://127.0.0.1:11434 --model vllama-tiny
    .venv/bin/python bench/cpu_per_request.py --url http://127.0.0.1:8000 --api openai --model vllama-tiny:latest

Throughput on a small machine swings from one start of a server to the next; the CPU each process
spends per request does not, so this is how two servers' front ends are compared (docs/PERFORMANCE.md,
"Where the time goes"). Linux only: it reads /proc before and after `vllama bench`'s load
generator sends the requests (a warm-up of 2 x C first, left out).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vllama.bench.runner import LoadSpec, run_load
from vllama.bench.stats import summarize

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_ticks() -> dict[int, tuple[int, str]]:
    """pid -> (user + system ticks, process name) for every process still readable."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(entry)] = (int(fields[11]) + int(fields[12]), name)  # utime, stime
    return out


def run_delays_ns() -> dict[int, int]:
    """pid -> nanoseconds its threads spent runnable but waiting for a CPU (the scheduler's
    run delay, /proc/PID/task/*/schedstat), summed over the threads still alive."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        total = 0
        try:
            for task in os.listdir(f"/proc/{entry}/task"):
                total += int(Path(f"/proc/{entry}/task/{task}/schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile, or no schedstats in this kernel
            continue
        out[int(entry)] = total
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:11434")
    parser.add_argument("--api", default="ollama", choices=["ollama", "openai"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--min-ms", type=float, default=0.05, help="leave out processes below this, ms per request")
    args = parser.parse_args()

    def spec(requests: int) -> LoadSpec:
        return LoadSpec(base_url=args.url, api=args.api, model=args.model, requests=requests,
                        concurrency=args.concurrency, warmup=0)

    asyncio.run(run_load(spec(2 * args.concurrency)))  # warm-up
    before, delays_before, started = cpu_ticks(), run_delays_ns(), time.monotonic()
    summary = summarize(asyncio.run(run_load(spec(args.requests))))
    elapsed, after, delays_after = time.monotonic() - started, cpu_ticks(), run_delays_ns()

    rows = []
    for pid, (ticks, name) in after.items():
        seconds = (ticks - before.get(pid, (0, ""))[0]) / TICKS_PER_S
        if 1000 * seconds / args.requests >= args.min_ms:
            waited = (delays_after.get(pid, 0) - delays_before.get(pid, 0)) / 1e9
            rows.append((seconds, waited, pid, name + (" (this load generator)" if pid == os.getpid() else "")))
    print(f"{summary['requests_per_s']:.1f} req/s, {args.requests} requests at C={args.concurrency} in {elapsed:.1f} s, "
          f"failed {summary['failed']}; {os.cpu_count()} CPUs, {os.cpu_count() * elapsed:.1f} CPU s available")
    # "waited": runnable but not running (the threads' run delay), per request: for the engine's
    # processes, how long each step stood still for want of a CPU.
    print(f"{'CPU s':>8} {'ms/request':>11} {'waited ms/request':>18} {'pid':>8}  process")
    for seconds, waited, pid, name in sorted(rows, reverse=True):
        print(f"{seconds:8.2f} {1000 * seconds / args.requests:11.2f} {1000 * waited / args.requests:18.2f} {pid:>8}  {name}")
    total = sum(r[0] for r in rows)
    print(f"{total:8.2f} {1000 * total / args.requests:11.2f} {'':18} {'':>8}  all listed")


if __name__ == "__main__":
    main()
