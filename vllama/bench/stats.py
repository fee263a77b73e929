"""Latency and throughput statistics of one benchmark run. Pure: tested against known latencies.

Definitions follow vLLM's `vllm bench serve`, so figures compare with published ones:
- TTFT: from sending the request to the first chunk that carries text;
- ITL (inter-token latency): the gaps between consecutive text chunks, all requests pooled (a
  chunk may carry several tokens when the server merges them);
- TPOT (time per output token): per request, (end - first token) / (output tokens - 1);
- E2E: from sending the request to its last byte;
- throughput: completed requests, and output tokens, per second of the measured window (from
  the first request sent to the last one finished; warm-up requests are outside it).
Percentiles interpolate linearly between ranks (NumPy's default), in milliseconds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50, 90, 99)


@dataclass
class RequestRecord:
    """One request as the client saw it (times in seconds, from `time.perf_counter`)."""

    start: float
    end: float = 0.0
    first_token: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int = 0
    error: str | None = None
    #: The streamed text's pieces, when the caller asked for them (`timed_request(keep_text=)`).
    text: list[str] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values_s: Sequence[float]) -> dict[str, float]:
    """Mean and percentiles, in milliseconds."""
    ms = [v * 1000 for v in values_s]
    summary = {"mean": sum(ms) / len(ms) if ms else math.nan}
    summary.update({f"p{q}": percentile(ms, q) for q in PERCENTILES})
    return summary


def summarize(records: Sequence[RequestRecord]) -> dict[str, Any]:
    done = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    window = (max(r.end for r in records) - min(r.start for r in records)) if records else 0.0
    ttft = [r.first_token - r.start for r in done if r.first_token is not None]
    itl = [b - a for r in done for a, b in zip(r.chunk_times, r.chunk_times[1:])]
    tpot = [
        (r.end - r.first_token) / (r.output_tokens - 1)
        for r in done
        if r.first_token is not None and r.output_tokens > 1
    ]
    e2e = [r.end - r.start for r in done]
    output_tokens = sum(r.output_tokens for r in done)
    return {
        "completed": len(done),
        "failed": len(failed),
        "first_error": failed[0].error if failed else None,
        "duration_s": window,
        "requests_per_s": len(done) / window if window > 0 else 0.0,
        "output_tokens_per_s": output_tokens / window if window > 0 else 0.0,
        "output_tokens": output_tokens,
        "mean_output_tokens": output_tokens / len(done) if done else 0.0,
        "mean_prompt_tokens": sum(r.prompt_tokens for r in done) / len(done) if done else 0.0,
        "ttft_ms": distribution(ttft),
        "itl_ms": distribution(itl),
        "tpot_ms": distribution(tpot),
        "e2e_ms": distribution(e2e),
    }


def median_run(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Of repeated runs, the one with the median throughput (a real run, not a blend of several;
    of an even number, the lower of the middle two). For tables that show one run's figures."""
    ordered = sorted(runs, key=lambda r: r["output_tokens_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def median_over_runs(point: dict[str, Any], value: Callable[[dict[str, Any]], float]) -> float:
    """One statistic's median over every run of a point (`{"summary", "repeats"}`): with an even
    number of runs, the mean of the middle two. Comparisons between servers use this rather than
    `median_run`: of two quite different middle runs, taking the lower one on each side picks
    one answer by an arbitrary rule (four starts each on 2026-11-30: 1.10x from the lower
    middle runs, 0.96x from the upper ones, 1.02x from the medians)."""
    return statistics.median(value(run) for run in point.get("repeats") or [point["summary"]])
