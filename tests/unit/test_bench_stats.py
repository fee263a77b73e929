"""vllama bench's statistics, checked against latencies known by construction."""

from __future__ import annotations

import math

import pytest

from vllama.bench.report import ratios
from vllama.bench.stats import RequestRecord, distribution, median_over_runs, median_run, percentile, summarize


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([1, 2, 3, 4], 50, 2.5), ([1, 2, 3, 4], 0, 1), ([1, 2, 3, 4], 100, 4), ([10], 99, 10),
     (list(range(1, 101)), 90, 90.1), (list(range(1, 101)), 99, 99.01), ([5, 1, 3], 50, 3)],
)
def test_percentile_interpolates_like_numpy(values, q, expected) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


def test_distribution_is_in_milliseconds() -> None:
    d = distribution([0.010, 0.020, 0.030])
    assert d == {"mean": pytest.approx(20.0), "p50": pytest.approx(20.0), "p90": pytest.approx(28.0),
                 "p99": pytest.approx(29.8)}


def _request(start: float, ttft: float, gap: float, tokens: int) -> RequestRecord:
    chunks = [start + ttft + i * gap for i in range(tokens)]
    return RequestRecord(start=start, end=chunks[-1], first_token=chunks[0], chunk_times=chunks,
                         output_tokens=tokens, prompt_tokens=7)


def test_summary_of_known_requests() -> None:
    # Two at a time for 1 s: each takes 0.1 s to the first token, then 10 tokens 20 ms apart.
    records = [_request(start=(i // 2) * 0.28, ttft=0.1, gap=0.02, tokens=10) for i in range(8)]
    s = summarize(records)
    assert s["completed"] == 8 and s["failed"] == 0 and s["first_error"] is None
    assert s["ttft_ms"]["p50"] == pytest.approx(100.0)
    assert s["itl_ms"]["mean"] == pytest.approx(20.0)
    assert s["tpot_ms"]["p99"] == pytest.approx(20.0)
    assert s["e2e_ms"]["p50"] == pytest.approx(280.0)
    window = 3 * 0.28 + 0.28
    assert s["duration_s"] == pytest.approx(window)
    assert s["requests_per_s"] == pytest.approx(8 / window)
    assert s["output_tokens_per_s"] == pytest.approx(80 / window)
    assert s["mean_prompt_tokens"] == 7 and s["mean_output_tokens"] == 10


def test_failures_are_counted_with_the_first_error() -> None:
    ok = _request(0.0, 0.1, 0.01, 5)
    bad = [RequestRecord(start=0.0, end=0.2, error="HTTP 500: boom"), RequestRecord(start=0.1, end=0.3, error="later")]
    s = summarize([ok, *bad])
    assert (s["completed"], s["failed"], s["first_error"]) == (1, 2, "HTTP 500: boom")
    assert s["e2e_ms"]["p50"] == pytest.approx(140.0)  # failed requests are not in the latencies


def test_median_run_is_one_of_the_runs() -> None:
    runs = [{"output_tokens_per_s": v, "id": v} for v in (30.0, 10.0, 20.0)]
    assert median_run(runs)["id"] == 20.0
    assert median_run(runs[:2])["id"] == 10.0


def _run(tok_s: float, ttft_p50: float) -> dict:
    return {"requests_per_s": tok_s / 50, "output_tokens_per_s": tok_s, "ttft_ms": {"p50": ttft_p50}}


def test_comparisons_use_the_median_over_every_run() -> None:
    point = {"summary": _run(3113, 0), "repeats": [_run(v, 0) for v in (3113, 3869, 3804, 3025)]}
    assert median_over_runs(point, lambda r: r["output_tokens_per_s"]) == pytest.approx(3458.5)
    assert median_over_runs({"summary": _run(100, 7.0)}, lambda r: r["ttft_ms"]["p50"]) == 7.0  # no repeats kept


def test_compare_ratios_are_of_medians_not_of_the_shown_runs() -> None:
    def target(tok_s: list[float], ttft: list[float]) -> dict:
        runs = [_run(t, f) for t, f in zip(tok_s, ttft, strict=True)]
        return {"points": [{"concurrency": 32, "summary": median_run(runs), "repeats": runs}]}

    vllama = target([3364, 3638, 3424, 3765], [12.0, 13.0, 14.0, 20.0])
    vllm = target([3113, 3869, 3804, 3025], [10.0, 11.0, 12.0, 13.0])
    (r,) = ratios(vllama, vllm)
    assert r["output_tokens_per_s"] == pytest.approx(3531 / 3458.5)  # the lower middle runs would say 1.10
    assert r["requests_per_s"] == pytest.approx(3531 / 3458.5)
    assert r["ttft_p50_ms_delta"] == pytest.approx(13.5 - 11.5)
