"""The soak's mix (`vllama.bench.soak.mix`): seeded, with the shares the bench promises."""

from __future__ import annotations

from collections import Counter

import orjson

from vllama.bench.soak import mix


def test_the_mix_is_seeded_and_has_its_shares() -> None:
    requests = mix("m", 4000, seed=7)
    assert requests == mix("m", 4000, seed=7) and requests != mix("m", 4000, seed=8)
    kinds = Counter(r.kind for r in requests)
    assert 0.04 < kinds["bad"] / 4000 < 0.06 and 0.08 < kinds["abandon"] / 4000 < 0.12
    assert {r.path for r in requests} == {"/api/chat", "/api/generate", "/v1/chat/completions", "/v1/completions"}
    bad = [r for r in requests if r.kind == "bad"]
    assert {r.expected_status for r in bad} == {400, 404}
    streamed = [orjson.loads(r.body)["stream"] for r in requests if r.kind in ("stream", "abandon")]
    assert all(streamed)
