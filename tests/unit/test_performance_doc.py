"""The harness's report: targets judged from the measured points, and the markers respected."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import performance_doc  # noqa: E402


def _summary(tok_s: float, ttft_p50: float) -> dict:
    ms = {"mean": 1.0, "p50": 1.0, "p90": 1.0, "p99": 1.0}
    return {"requests_per_s": tok_s / 50, "output_tokens_per_s": tok_s, "failed": 0,
            "ttft_ms": {**ms, "p50": ttft_p50}, "itl_ms": ms, "tpot_ms": ms, "e2e_ms": ms}


def _target(name: str, startup: float, by_c: dict[int, tuple[float, float]]) -> dict:
    return {"name": name, "label": name, "startup_s": startup,
            "points": [{"concurrency": c, "summary": _summary(*v)} for c, v in by_c.items()]}


RESULTS = {
    "created_at": "2026-11-26T00:00:00Z", "command": "python bench/harness.py",
    "hardware": {"cpu": "cpu", "cores": 2, "memory_gib": 24.0, "gpus": []},
    "versions": {"vllama": "0.1.0"},
    "workload": {"output_tokens": 50, "input_words": 32, "iterations": 10, "repeat": 1, "engine": {}},
    "targets": [
        _target("vllm", 30.0, {1: (450, 10.0), 32: (4000, 100.0)}),
        _target("vllama", 50.0, {1: (440, 13.0), 32: (4400, 90.0)}),
        _target("vllama-2", 60.0, {1: (430, 14.0), 32: (3400, 95.0)}),
        _target("llamacpp", 5.0, {1: (900, 4.0), 32: (800, 1500.0)}),
    ],
}


def test_targets_are_judged_from_the_points() -> None:
    rows = {name: (measured, met) for name, measured, _, met in performance_doc.targets(RESULTS)}
    assert rows["throughput at C=32 vs vLLM's own server"] == ("1.10x", True)
    assert rows["throughput at C=1 vs vLLM's own server"] == ("0.98x", False)
    assert "throughput at C=8 vs vLLM's own server" not in rows  # not measured
    assert rows["second model: throughput at C=32 vs vLLM's own server"] == ("0.85x", False)
    assert rows["TTFT p50 at C=1 vs vLLM's own"] == ("+3.0 ms (13.0 vs 10.0)", True)
    assert rows["TTFT p50 at C=32 vs vLLM's own"] == ("-10.0 ms (90.0 vs 100.0)", True)
    assert rows["second model: TTFT p50 at C=32 vs vLLM's own"] == ("-5.0 ms (95.0 vs 100.0)", True)
    assert rows["E2E p50 at C=1 vs vLLM's own"] == ("1.00x (1.0 vs 1.0 ms)", True)
    assert rows["throughput at C=32 vs llama.cpp one request at a time"] == ("5.50x", True)
    assert rows["large model: throughput at C=32 vs vLLM's own"] == ("n/a", None)  # not measured
    assert rows["ready to serve vs vLLM's own start"] == ("50.0 s vs 30.0 s", False)


def test_only_the_marked_block_is_rewritten(tmp_path: Path) -> None:
    doc = tmp_path / "PERFORMANCE.md"
    doc.write_text(f"# Performance\n\nhand-written intro\n\n{performance_doc.BEGIN}\nold\n{performance_doc.END}\n\nanalysis\n")
    performance_doc.write(RESULTS, doc)
    text = doc.read_text()
    assert "hand-written intro" in text and text.rstrip().endswith("analysis")
    assert "old" not in text and "| vllama | 50 s | 1 |" in text


def test_workload_says_how_many_starts_and_runs_make_a_point() -> None:
    say = performance_doc.runs_per_point
    assert say({"repeat": 3}) == "3 runs against one start of each server"  # results from before --starts
    assert say({"repeat": 1, "starts": 3}) == "3 starts of each server, in rounds over the whole list (alternating its order), one run each"
    assert say({"repeat": 2, "starts": 4}) == "4 starts of each server, in rounds over the whole list (alternating its order), 2 runs each"


def _runs(name: str, tok_s_by_run: list[float], ttft_by_run: list[float], c: int) -> dict:
    runs = [_summary(t, f) for t, f in zip(tok_s_by_run, ttft_by_run, strict=True)]
    lower_median = sorted(runs, key=lambda r: r["output_tokens_per_s"])[(len(runs) - 1) // 2]
    return {"concurrency": c, "summary": lower_median, "repeats": runs}


def test_targets_take_the_median_over_every_run_not_the_shown_run() -> None:
    # Four starts each: the lower medians would say 1.10x, the upper ones 0.96x; the medians 1.02x.
    vllm = {"name": "vllm", "label": "vLLM", "startup_s": 36.0, "startups_s": [35.0, 34.0, 35.0, 36.0],
            "points": [_runs("vllm", [500, 600, 500, 500], [10.0, 11.0, 12.0, 13.0], 1),
                       _runs("vllm", [3113, 3869, 3804, 3025], [1.0] * 4, 32)]}
    vllama = {"name": "vllama", "label": "vllama", "startup_s": 43.0, "startups_s": [43.0, 42.0, 40.0, 41.0],
              "points": [_runs("vllama", [450, 490, 540, 540], [12.0, 13.0, 14.0, 20.0], 1),
                         _runs("vllama", [3364, 3638, 3424, 3765], [1.0] * 4, 32)]}
    results = {**RESULTS, "targets": [vllm, vllama]}
    rows = {name: measured for name, measured, _, _ in performance_doc.targets(results)}
    assert rows["throughput at C=32 vs vLLM's own server"] == "1.02x"  # 3531 / 3458.5
    assert rows["TTFT p50 at C=1 vs vLLM's own"] == "+2.0 ms (13.5 vs 11.5)"
    assert rows["ready to serve vs vLLM's own start"] == "41.5 s vs 35.0 s"
    table = "\n".join(performance_doc.runs_at_highest_concurrency(results))
    assert "| vLLM | 32 | 62.3, 77.4, 76.1, 60.5 | 69.2 |" in table
    assert "| vllama | 32 | 67.3, 72.8, 68.5, 75.3 | 70.6 |" in table
