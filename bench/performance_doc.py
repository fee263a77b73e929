"""Render the harness's results into docs/PERFORMANCE.md.

Only the part between `<!-- harness:begin -->` and `<!-- harness:end -->` is rewritten, so the
analysis written around it by hand survives a new run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vllama.bench.stats import median_over_runs

BEGIN, END = "<!-- harness:begin -->", "<!-- harness:end -->"


def point(results: dict[str, Any], key: str, c: int) -> dict[str, Any] | None:
    for target in results["targets"]:
        if target["name"] == key:
            for p in target["points"]:
                if p["concurrency"] == c:
                    return p
    return None


def median_of(p: dict[str, Any] | None, value: Callable[[dict[str, Any]], float]) -> float | None:
    return None if p is None else median_over_runs(p, value)


def startup(results: dict[str, Any], key: str) -> float | None:
    """A server's time to ready, the median over its starts."""
    target = next((t for t in results["targets"] if t["name"] == key), None)
    if target is None:
        return None
    return statistics.median(target.get("startups_s") or [target["startup_s"]])


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, bar, met) for each of the issues' targets that the run can judge: for
    vllama and for a second model in the same application, throughput at every level at least
    vLLM's own server's, time to first token within 5 ms of it alone and no worse under load,
    end-to-end latency alone within 5 %."""
    rows: list[tuple[str, str, str, bool | None]] = []

    def throughput(key: str, c: int) -> float | None:
        return median_of(point(results, key, c), lambda run: run["output_tokens_per_s"])

    def add_ratio(name: str, key: str, base: str, c: int, bar: float) -> None:
        ours, theirs = throughput(key, c), throughput(base, c)
        r = ours / theirs if ours is not None and theirs else None
        rows.append((name, "n/a" if r is None else f"{r:.2f}x", f">= {bar:g}x", None if r is None else r >= bar))

    def latency(key: str, c: int, what: str) -> float | None:
        return median_of(point(results, key, c), lambda run: run[what]["p50"])

    def add_delta(name: str, key: str, c: int, what: str, bar_ms: float) -> None:
        ours, theirs = latency(key, c, what), latency("vllm", c, what)
        if ours is None or theirs is None:
            return
        delta = ours - theirs
        rows.append((name, f"{delta:+.1f} ms ({ours:.1f} vs {theirs:.1f})", f"<= {bar_ms:+g} ms", delta <= bar_ms))

    def add_latency_ratio(name: str, key: str, c: int, what: str, bar: float) -> None:
        ours, theirs = latency(key, c, what), latency("vllm", c, what)
        if ours is None or not theirs:
            return
        r = ours / theirs
        rows.append((name, f"{r:.2f}x ({ours:.1f} vs {theirs:.1f} ms)", f"<= {bar:g}x", r <= bar))

    for key, who in (("vllama", ""), ("vllama-2", "second model: ")):
        if point(results, key, 1) is None and point(results, key, 32) is None:
            continue
        for c in (1, 8, 32):
            if point(results, key, c) is not None:
                add_ratio(f"{who}throughput at C={c} vs vLLM's own server", key, "vllm", c, 1.0)
        add_delta(f"{who}TTFT p50 at C=1 vs vLLM's own", key, 1, "ttft_ms", 5)
        add_delta(f"{who}TTFT p50 at C=32 vs vLLM's own", key, 32, "ttft_ms", 0)
        add_latency_ratio(f"{who}E2E p50 at C=1 vs vLLM's own", key, 1, "e2e_ms", 1.05)
    add_ratio("throughput at C=32 vs llama.cpp one request at a time", "vllama", "llamacpp", 32, 5.0)
    add_ratio("large model: throughput at C=32 vs vLLM's own", "vllama-large", "vllm-large", 32, 0.97)
    ours_s, theirs_s = startup(results, "vllama"), startup(results, "vllm")
    if ours_s is not None and theirs_s is not None:
        rows.append(("ready to serve vs vLLM's own start", f"{ours_s:.1f} s vs {theirs_s:.1f} s",
                     "<= vLLM + 15 s", ours_s <= theirs_s + 15))
    return rows


def runs_per_point(workload: dict[str, Any]) -> str:
    starts, repeat = workload.get("starts", 1), workload["repeat"]
    if starts == 1:
        return f"{repeat} runs against one start of each server"
    runs = f"{repeat} runs each" if repeat > 1 else "one run each"
    return f"{starts} starts of each server, in rounds over the whole list (alternating its order), {runs}"


def runs_at_highest_concurrency(results: dict[str, Any]) -> list[str]:
    """Every run's throughput at each server's highest level, in the order they ran: the spread
    the medians above are taken over."""
    lines = ["| server | C | req/s of each run, in the order of the run | median |", "|---|---|---|---|"]
    for target in results["targets"]:
        if not target["points"]:
            continue
        top = max(target["points"], key=lambda p: p["concurrency"])
        runs = [run["requests_per_s"] for run in top.get("repeats") or [top["summary"]]]
        lines.append(f"| {target['label']} | {top['concurrency']} | {', '.join(_rate(r) for r in runs)} "
                     f"| {_rate(statistics.median(runs))} |")
    return lines


def _rate(requests_per_s: float) -> str:
    return f"{requests_per_s:.1f}" if requests_per_s >= 10 else f"{requests_per_s:.2f}"


def render(results: dict[str, Any]) -> str:
    hw, v, w = results["hardware"], results["versions"], results["workload"]
    lines = [
        BEGIN,
        f"Measured {results['created_at']} by `{results['command']}` (the whole run, servers one after another).",
        "",
        f"- Hardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory_gib']} GiB"
        + (f", GPUs: {', '.join(hw['gpus'])}" if hw["gpus"] else ", no GPU"),
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- Workload: streaming chat, {w['output_tokens']} output tokens per request (exact: `ignore_eos`), "
        f"prompts of {w['input_words']} words, {w['iterations']} measured requests per point after a warm-up, "
        f"a sliding window of C requests in flight, each point the median of "
        f"{runs_per_point(w)}; engine settings "
        f"for every vLLM-based server: `{w['engine']}`.",
        "",
        "### Targets",
        "",
        "| target | measured | bar | met |",
        "|---|---|---|---|",
    ]
    for name, measured, bar, met in targets(results):
        lines.append(f"| {name} | {measured} | {bar} | {'yes' if met else ('no' if met is False else 'n/a')} |")
    memory = [f"{t['label']}: {t['ingress_rss_bytes'] / 2**20:.0f} MiB" for t in results["targets"]
              if t.get("ingress_rss_bytes")]
    if memory:
        lines += ["", "Ingress replica's resident memory after the sweep (the largest over starts; it holds no engine): "
                  + "; ".join(memory) + "."]
    lines += [
        "",
        "Each target compares medians over every run of its points (with an even number of runs, the",
        "mean of the middle two); the sweep below shows one real run per point, the lower median.",
        "",
        *runs_at_highest_concurrency(results),
        "",
        "### Sweep",
        "",
        "| server | start | C | req/s | out tok/s | TTFT p50 | TTFT p99 | ITL p50 | TPOT p50 | E2E p50 | E2E p99 | failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for target in results["targets"]:
        label, started = target["label"], f"{startup(results, target['name']):.0f} s"
        for i, p in enumerate(target["points"]):
            s = p["summary"]
            lines.append(
                f"| {label if i == 0 else ''} | {started if i == 0 else ''} "
                f"| {p['concurrency']} | {s['requests_per_s']:.2f} | {s['output_tokens_per_s']:.0f} "
                f"| {_ms(s['ttft_ms']['p50'])} | {_ms(s['ttft_ms']['p99'])} | {_ms(s['itl_ms']['p50'])} "
                f"| {_ms(s['tpot_ms']['p50'])} | {_ms(s['e2e_ms']['p50'])} | {_ms(s['e2e_ms']['p99'])} "
                f"| {s['failed']} |"
            )
    lines += ["", "![tiny model](perf/tiny.png)", ""]
    if any(t["name"].endswith("-large") for t in results["targets"]):
        lines += ["![large model](perf/large.png)", ""]
    lines += ["Raw results, every repeat included: [perf/results.json](perf/results.json).", END]
    return "\n".join(lines)


def _ms(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1f} ms"


def write(results: dict[str, Any], path: Path) -> None:
    block = render(results)
    text = path.read_text() if path.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + block + tail)
