"""`vllama bench` against the real application: Ollama's API side by side with OpenAI's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import PRIMARY


def test_bench_sweep_with_compare_json_and_plot(base_url: str, tmp_path: Path) -> None:
    plot = tmp_path / "sweep.png"
    result = subprocess.run(
        [sys.executable, "-m", "vllama", "bench", PRIMARY, "--url", base_url, "--iterations", "12",
         "--concurrency", "1,4", "--output-tokens", "16", "--name", "ollama-api",
         "--compare", base_url, "--compare-api", "openai", "--compare-name", "openai-api",
         "--json", "--plot", str(plot)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(result.stdout)
    assert doc["schema"] == "vllama-bench/1" and doc["hardware"]["cores"] >= 1
    assert [t["name"] for t in doc["targets"]] == ["ollama-api", "openai-api"]
    for target in doc["targets"]:
        assert [p["concurrency"] for p in target["points"]] == [1, 4]
        for point in target["points"]:
            s = point["summary"]
            assert s["completed"] == 12 and s["failed"] == 0
            assert s["mean_output_tokens"] == 16  # exact lengths: num_predict / max_tokens with ignore_eos
            assert 0 < s["ttft_ms"]["p50"] <= s["e2e_ms"]["p50"]
            assert s["requests_per_s"] > 0 and s["itl_ms"]["p50"] > 0
    assert [r["concurrency"] for r in doc["ratios"]] == [1, 4]
    assert all(r["requests_per_s"] > 0 for r in doc["ratios"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_multiturn_reads_the_prefix_cache(base_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vllama", "bench", PRIMARY, "--url", base_url, "--workload", "multiturn",
         "--conversations", "3", "--turns", "3", "-c", "2", "--output-tokens", "8", "--system-words", "40",
         "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(result.stdout)
    assert doc["workload"]["kind"] == "multiturn" and doc["workload"]["iterations"] == 9
    (point,) = doc["targets"][0]["points"]
    s = point["summary"]
    assert s["completed"] == 9 and s["failed"] == 0 and s["mean_output_tokens"] == 8
    assert [t["requests"] for t in s["turns"]] == [3, 3, 3]
    # Each turn re-sends the history: later prompts are longer.
    prompts = [t["mean_prompt_tokens"] for t in s["turns"]]
    assert prompts[0] < prompts[1] < prompts[2]
    cache = s["prefix_cache"]
    assert cache["available"], cache["note"]
    assert 0 <= cache["hit_rate"] <= 1 and cache["prefix_cache_queries"] > 0
    assert sum(r["completed_requests"] or 0 for r in cache["replicas"]) >= 9  # other tests' requests may add some
