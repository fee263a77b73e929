"""The harness's rounds alternate their order, so that a drift of the machine's speed during a
run does not always fall on the same servers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from harness import round_order  # noqa: E402


def test_rounds_alternate_forwards_and_backwards() -> None:
    keys = ["vllm", "ray-llm", "vllama", "llamacpp"]
    assert round_order(keys, 0) == keys
    assert round_order(keys, 1) == ["llamacpp", "vllama", "ray-llm", "vllm"]
    assert round_order(keys, 2) == keys
    # Over two rounds every server is, on average, measured at the same point of the run.
    positions = {k: round_order(keys, 0).index(k) + round_order(keys, 1).index(k) for k in keys}
    assert set(positions.values()) == {len(keys) - 1}
    assert keys == ["vllm", "ray-llm", "vllama", "llamacpp"]  # not reordered in place
