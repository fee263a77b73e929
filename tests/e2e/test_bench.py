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
