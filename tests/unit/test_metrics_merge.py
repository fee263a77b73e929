"""`GET /metrics`: every engine replica's exposition merged into one, each sample labelled with
its replica, one HELP/TYPE per family."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from vllama.serve.metrics import merge


def exposition(running: int, hits: int) -> bytes:
    registry = CollectorRegistry()
    Gauge("vllm:num_requests_running", "Requests running", ["model_name"], registry=registry).labels("m").set(running)
    Counter("vllm:prefix_cache_hits", "Hits", ["model_name"], registry=registry).labels("m").inc(hits)
    Histogram("vllm:time_to_first_token_seconds", "TTFT", ["model_name"], buckets=(0.1, 1.0),
              registry=registry).labels("m").observe(0.05)
    return generate_latest(registry)


def own() -> bytes:
    registry = CollectorRegistry()
    Counter("ingress_requests", "Requests", registry=registry).inc(3)
    return generate_latest(registry)


def test_samples_of_every_replica_under_one_family() -> None:
    text = merge(own(), [("r1", exposition(2, 5)), ("r2", exposition(7, 1))]).decode()
    assert text.count("# TYPE vllm:num_requests_running gauge") == 1
    assert text.count("# HELP vllm:prefix_cache_hits_total Hits") == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    running = {s.labels["replica"]: s.value for s in families["vllm:num_requests_running"].samples}
    assert running == {"r1": 2.0, "r2": 7.0}
    hits = {s.labels["replica"]: s.value for s in families["vllm:prefix_cache_hits"].samples if s.name.endswith("_total")}
    assert hits == {"r1": 5.0, "r2": 1.0}
    buckets = [s for s in families["vllm:time_to_first_token_seconds"].samples if s.name.endswith("_bucket")]
    assert {(s.labels["replica"], s.labels["le"]) for s in buckets} >= {("r1", "0.1"), ("r2", "+Inf")}
    assert all(s.labels["model_name"] == "m" for s in buckets)
    # The ingress's own metrics are there, unlabelled.
    assert [s.value for s in families["ingress_requests"].samples if s.name.endswith("_total")] == [3.0]
    assert "replica" not in next(iter(families["ingress_requests"].samples)).labels


def test_no_replicas() -> None:
    assert "ingress_requests_total 3.0" in merge(own(), []).decode()
