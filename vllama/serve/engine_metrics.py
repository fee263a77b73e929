"""vLLM's engine metrics through Ray's metrics export, as Ray Serve LLM sends them.

vLLM records its engine metrics (`vllm:` counters and histograms: requests, tokens, TTFT,
inter-token latency, KV-cache use, prefix-cache hits...) with a stat logger. Its default one
writes to this process's `prometheus_client` registry, which `GET /metrics` merges across
replicas (`metrics.py`): a single node's view. vLLM's `RayPrometheusStatLogger` records the same
metrics as Ray metrics instead, which Ray exports on every node with a `ReplicaId` label beside
vLLM's `model_name`: the cluster's view, scraped through Ray's service discovery.

vLLM takes either, not both: a custom logger that *is* a `PrometheusStatLogger` replaces the
default one. `RayEngineMetrics` wraps Ray's logger in a plain stat logger, so vLLM keeps its
default beside it and both views hold the same numbers.
"""

from __future__ import annotations

from typing import Any

from vllm.v1.metrics.loggers import AggregateStatLoggerBase
from vllm.v1.metrics.ray_wrappers import RayPrometheusStatLogger


class RayEngineMetrics(AggregateStatLoggerBase):
    def __init__(self, vllm_config: Any, engine_indexes: list[int]) -> None:
        self._ray = RayPrometheusStatLogger(vllm_config, engine_indexes)

    def record(self, *args: Any, **kwargs: Any) -> None:
        self._ray.record(*args, **kwargs)

    def record_sleep_state(self, *args: Any, **kwargs: Any) -> None:
        self._ray.record_sleep_state(*args, **kwargs)

    def record_admission_rejection(self, reason: str) -> None:
        self._ray.record_admission_rejection(reason)

    def log_engine_initialized(self) -> None:
        self._ray.log_engine_initialized()

    def log(self) -> None:
        self._ray.log()
