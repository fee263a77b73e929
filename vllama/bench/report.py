"""Results of `vllama bench`: the JSON document, the terminal table, the ratios, the plot.

JSON schema `vllama-bench/1` (one document per invocation):

    {
      "schema": "vllama-bench/1",
      "created_at": "2026-11-26T19:00:00Z",
      "hardware": {"cpu": str, "cores": int, "memory_gib": float, "gpus": [str]},
      "versions": {"vllama": str, "python": str},
      "workload": {"kind": "single"|"multiturn",
                   "api": "ollama"|"openai", "endpoint": "chat"|"generate", "model": str,
                   "iterations": int, "warmup": int|null, "output_tokens": int,
                   "input_words": int, "request_rate": float|null, "repeat": int,
                   # multiturn only (iterations: conversations * turns, warmup: 0; the
                   # words of a run come from seed + its index, new each invocation):
                   "conversations": int, "turns": int, "system_words": int, "seed": int},
      "targets": [
        {"name": str, "url": str, "api": str, "model": str,
         "points": [
           {"concurrency": int,
            "summary": SUMMARY,          # the repeat with the median output tokens/s
            "repeats": [SUMMARY, ...]}   # every repeat, in order
         ]}
      ],
      "ratios": [                        # present with --compare: first target / second, each
        {"concurrency": int,             # side's median over its repeats (of an even number,
         "requests_per_s": float,        # the mean of the middle two)
         "output_tokens_per_s": float,
         "ttft_p50_ms_delta": float}     # first minus second
      ]
    }

    SUMMARY = {"completed", "failed", "first_error", "duration_s", "requests_per_s",
               "output_tokens_per_s", "output_tokens", "mean_output_tokens", "mean_prompt_tokens",
               "ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"}
    each *_ms = {"mean", "p50", "p90", "p99"} in milliseconds (see vllama.bench.stats).

    A multiturn run's SUMMARY has, besides (vllama.bench.multiturn):
      "first_turn", "later_turns": TURNS, "turns": [{"turn": int (from 1), **TURNS}, ...],
      "prefix_cache": {"available": bool, "hit_rate": float|null, "note": str|null,
                       # when available, over the run (deltas of /vllama/status's counters):
                       "prefix_cache_queries": int, "prefix_cache_hits": int, "completed_requests": int,
                       "replicas": [{"replica", "node", "state", "completed_requests", "share",
                                     "prefix_cache_queries", "prefix_cache_hits", "hit_rate"}]}
    TURNS = {"requests", "failed", "mean_prompt_tokens", "ttft_ms", "e2e_ms"}
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from vllama import __version__
from vllama.bench.stats import median_over_runs

SCHEMA = "vllama-bench/1"


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = 0.0
    try:
        memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        pass
    gpus: list[str] = []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=5)
        gpus = [line for line in out.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count() or 0, "memory_gib": round(memory_gib, 1), "gpus": gpus}


def document(workload: dict[str, Any], targets: list[dict[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "created_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hardware": hardware(),
        "versions": {"vllama": __version__, "python": sys.version.split()[0]},
        "workload": workload,
        "targets": targets,
    }
    if len(targets) == 2:
        doc["ratios"] = ratios(targets[0], targets[1])
    return doc


def ratios(first: dict[str, Any], second: dict[str, Any]) -> list[dict[str, Any]]:
    """First target against the second at each level, each side by its median over its repeats."""
    by_c = {p["concurrency"]: p for p in second["points"]}
    out = []
    for mine in first["points"]:
        theirs = by_c.get(mine["concurrency"])
        if theirs is None:
            continue
        rps = [median_over_runs(p, lambda run: run["requests_per_s"]) for p in (mine, theirs)]
        tok_s = [median_over_runs(p, lambda run: run["output_tokens_per_s"]) for p in (mine, theirs)]
        ttft = [median_over_runs(p, lambda run: run["ttft_ms"]["p50"]) for p in (mine, theirs)]
        out.append({
            "concurrency": mine["concurrency"],
            "requests_per_s": _ratio(*rps),
            "output_tokens_per_s": _ratio(*tok_s),
            "ttft_p50_ms_delta": ttft[0] - ttft[1],
        })
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def print_tables(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 150)
    for target in doc["targets"]:
        table = Table(title=f"{target['name']}  {target['url']}  ({target['api']}, {target['model']})")
        for column in ("C", "req/s", "out tok/s", "TTFT p50", "TTFT p99", "ITL p50", "TPOT p50", "E2E p50",
                       "E2E p99", "failed"):
            table.add_column(column, justify="right")
        for point in target["points"]:
            s = point["summary"]
            table.add_row(
                str(point["concurrency"]), f"{s['requests_per_s']:.2f}", f"{s['output_tokens_per_s']:.1f}",
                _ms(s["ttft_ms"]["p50"]), _ms(s["ttft_ms"]["p99"]), _ms(s["itl_ms"]["p50"]),
                _ms(s["tpot_ms"]["p50"]), _ms(s["e2e_ms"]["p50"]), _ms(s["e2e_ms"]["p99"]),
                f"{s['failed']}" + (f" ({s['first_error'][:40]})" if s["first_error"] else ""),
            )
        console.print(table)
        if doc["workload"].get("kind") == "multiturn":
            for point in target["points"]:
                _print_multiturn(console, point)
    if doc.get("ratios"):
        first, second = doc["targets"][0]["name"], doc["targets"][1]["name"]
        table = Table(title=f"{first} / {second}")
        for column in ("C", "req/s ratio", "out tok/s ratio", "TTFT p50 delta"):
            table.add_column(column, justify="right")
        for r in doc["ratios"]:
            table.add_row(str(r["concurrency"]), f"{r['requests_per_s']:.2f}x", f"{r['output_tokens_per_s']:.2f}x",
                          f"{r['ttft_p50_ms_delta']:+.1f} ms")
        console.print(table)


def _ms(value: float) -> str:
    return f"{value:.1f} ms"


def turn_rows(summary: dict[str, Any]) -> list[list[str]]:
    """A multiturn run by turn: each turn index, then turn 1 against all later turns."""
    def row(label: str, t: dict[str, Any]) -> list[str]:
        return [label, str(t["requests"]), f"{t['mean_prompt_tokens']:.0f}", _ms(t["ttft_ms"]["p50"]),
                _ms(t["ttft_ms"]["p99"]), _ms(t["e2e_ms"]["p50"]), str(t["failed"])]

    rows = [row(str(t["turn"]), t) for t in summary["turns"]]
    return [*rows, row("1", summary["first_turn"]), row("2+", summary["later_turns"])]


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def cache_rows(cache: dict[str, Any]) -> list[list[str]]:
    """The run's prefix-cache use per replica, then all replicas together."""
    rows = []
    for r in cache["replicas"]:
        counted = r["completed_requests"] is not None
        rows.append([str(r["replica"]), str(r.get("node") or ""), str(r["completed_requests"]) if counted else "n/a",
                     percent(r["share"]), percent(r["hit_rate"])])
    rows.append(["all", "", str(cache["completed_requests"]), percent(1.0 if cache["completed_requests"] else None),
                 percent(cache["hit_rate"])])
    return rows


def _print_multiturn(console: Any, point: dict[str, Any]) -> None:
    from rich.table import Table

    s = point["summary"]
    table = Table(title=f"C={point['concurrency']} by turn (later turns re-send the history)")
    for column in ("turn", "requests", "prompt tokens", "TTFT p50", "TTFT p99", "E2E p50", "failed"):
        table.add_column(column, justify="right")
    rows = turn_rows(s)
    for i, row in enumerate(rows):
        table.add_row(*row, end_section=i == len(rows) - 3)
    console.print(table)
    cache = s["prefix_cache"]
    if not cache["available"]:
        console.print(f"prefix cache: no figures ({cache['note']})")
        return
    table = Table(title=f"C={point['concurrency']} prefix cache over the run",
                  caption="hit rate: prompt tokens found cached / looked up")
    for column in ("replica", "node", "requests", "share", "hit rate"):
        table.add_column(column, justify="right")
    rows = cache_rows(cache)
    for i, row in enumerate(rows):
        table.add_row(*row, end_section=i == len(rows) - 2)
    console.print(table)
    if cache["note"]:
        console.print(f"note: {cache['note']}")


def plot(doc: dict[str, Any], path: Path) -> Path:
    """Throughput and latency against concurrency, one line per target, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for target in doc["targets"]:
        cs = [p["concurrency"] for p in target["points"]]
        left.plot(cs, [p["summary"]["output_tokens_per_s"] for p in target["points"]], marker="o", label=target["name"])
        right.plot(cs, [p["summary"]["ttft_ms"]["p50"] for p in target["points"]], marker="o",
                   label=f"{target['name']} TTFT p50")
        right.plot(cs, [p["summary"]["e2e_ms"]["p50"] for p in target["points"]], marker="s", linestyle="--",
                   label=f"{target['name']} E2E p50")
    for axis, title, label in ((left, "Throughput", "output tokens/s"), (right, "Latency", "ms")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent requests")
        axis.set_ylabel(label)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    right.set_yscale("log")
    workload = doc["workload"]
    fig.suptitle(f"{workload['model']}: {workload['output_tokens']} output tokens, {workload['api']} {workload['endpoint']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
