"""vllama's own metrics, recorded twice: for the cluster and for one process's `/metrics`.

- **Ray's metrics export.** Each metric is a `ray.serve.metrics` one: Ray collects it from every
  replica on every node and each node's metrics agent exports it for Prometheus (its port is in
  Ray's service-discovery file), with the labels Serve adds (`application`, `deployment`,
  `replica`) and Ray's prefix: `vllama_requests_total` is scraped as `ray_vllama_requests_total`.
  One scrape configuration so covers every ingress and engine replica of the cluster, beside the
  engines' own vLLM metrics (exported the same way by `engine_metrics.py`). This is what Ray
  Serve LLM does for vLLM's metrics, and the way to watch several replicas or nodes.
- **This process's `prometheus_client` registry**, which `GET /metrics` renders (`metrics.py`)
  with every engine replica's: the single-node view, without Ray's export in between.

A record costs about 3 us on each side (measured: 2 cores, Ray 2.60), so even the per-chunk
histogram stays far below a token's time. Outside a Ray worker (unit tests) only the process's
registry records.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import prometheus_client

#: Request durations: from a few ms (an error, a short answer) to minutes (a long generation).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Gaps between two chunks of a stream: a token's time, from 1 ms (a GPU) up.
CHUNK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
#: A model's load: seconds (a small model) to many minutes (weights fetched, graphs compiled).
LOAD_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 1200.0)


class _Metric:
    """One metric in both places. Created at import, bound to Ray on first record in a worker."""

    def __init__(self, kind: str, name: str, description: str, labels: Sequence[str],
                 buckets: Sequence[float] | None = None) -> None:
        self.kind, self.name, self.description, self.labels = kind, name, description, tuple(labels)
        self.buckets = tuple(buckets) if buckets is not None else None
        self._local = _local_metric(kind, name, description, self.labels, self.buckets)
        self._ray: Any = None
        self._ray_checked = False
        self._lock = threading.Lock()

    def _cluster(self) -> Any:
        if self._ray_checked:
            return self._ray
        with self._lock:
            if not self._ray_checked:
                self._ray = _ray_metric(self.kind, self.name, self.description, self.labels, self.buckets)
                self._ray_checked = True
        return self._ray

    def _record(self, method: str, value: float, labels: dict[str, str], *, to_cluster: bool = True) -> None:
        local = self._local.labels(**labels) if self.labels else self._local
        getattr(local, method)(value)
        cluster = self._cluster() if to_cluster else None
        if cluster is not None:
            getattr(cluster, method)(value, tags=labels)


class Counter(_Metric):
    def __init__(self, name: str, description: str, labels: Sequence[str] = ()) -> None:
        super().__init__("counter", name, description, labels)

    def inc(self, value: float = 1.0, **labels: str) -> None:
        # Ray's counters refuse 0 (prometheus_client's show the series at 0).
        self._record("inc", value, labels, to_cluster=value > 0)


class Histogram(_Metric):
    def __init__(self, name: str, description: str, labels: Sequence[str], buckets: Sequence[float]) -> None:
        super().__init__("histogram", name, description, labels, buckets)

    def observe(self, value: float, **labels: str) -> None:
        self._record("observe", value, labels)


class Gauge(_Metric):
    def __init__(self, name: str, description: str, labels: Sequence[str] = ()) -> None:
        super().__init__("gauge", name, description, labels)

    def set(self, value: float, **labels: str) -> None:
        self._record("set", value, labels)


def _local_metric(kind: str, name: str, description: str, labels: tuple[str, ...],
                  buckets: tuple[float, ...] | None) -> Any:
    if kind == "counter":
        # prometheus_client adds `_total` to a counter's name itself.
        return prometheus_client.Counter(name.removesuffix("_total"), description, labels)
    if kind == "histogram":
        return prometheus_client.Histogram(name, description, labels, buckets=buckets or DURATION_BUCKETS)
    return prometheus_client.Gauge(name, description, labels)


def _ray_metric(kind: str, name: str, description: str, labels: tuple[str, ...],
                buckets: tuple[float, ...] | None) -> Any:
    """The Ray side, in a Ray worker (a Serve replica gets Serve's labels too); None elsewhere."""
    import ray

    if not ray.is_initialized():
        return None
    try:
        from ray.serve import metrics
    except ImportError:  # pragma: no cover - ray[serve] is a dependency
        return None
    if kind == "counter":
        return metrics.Counter(name, description=description, tag_keys=labels)
    if kind == "histogram":
        return metrics.Histogram(name, description=description, boundaries=list(buckets or DURATION_BUCKETS),
                                 tag_keys=labels)
    return metrics.Gauge(name, description=description, tag_keys=labels)


# --- the catalogue ------------------------------------------------------------------------
# Ingress replicas (`request_log.py`): every HTTP request, as its client saw it.
REQUESTS = Counter("vllama_requests_total", "HTTP requests answered, by route, model and status.",
                   ("route", "model", "status"))
IN_FLIGHT = Gauge("vllama_requests_in_flight", "HTTP requests being answered by this ingress replica.")
REQUEST_SECONDS = Histogram("vllama_request_duration_seconds",
                            "End to end: from the request's arrival to its answer's last byte.",
                            ("route", "model", "status"), DURATION_BUCKETS)
FIRST_CHUNK_SECONDS = Histogram("vllama_time_to_first_chunk_seconds",
                                "From a streamed request's arrival to its answer's first chunk after the headers "
                                "(the time to first token a client sees).", ("route", "model"), DURATION_BUCKETS)
INTER_CHUNK_SECONDS = Histogram("vllama_inter_chunk_seconds", "Gaps between two chunks of a streamed answer.",
                                ("route", "model"), CHUNK_BUCKETS)
# The ingress's admission (`admission.py`) and forwarding (`forward.py`).
ADMITTED = Gauge("vllama_model_requests_admitted",
                 "Requests for the model this ingress replica has let in (waiting for a load, queued or running).",
                 ("model",))
REFUSED = Counter("vllama_refused_total", "Requests answered 503 because the model's queue was full.", ("model",))
FORWARDED = Counter("vllama_forwarded_total", "Requests relayed to an engine replica over the channel.", ("model",))
FAILOVERS = Counter("vllama_failovers_total",
                    "Requests moved to another replica after theirs failed (resumed streams included).", ("model",))
# Engine replicas (`inference.py`): Ollama's own measures of each generate/chat answer.
PROMPT_TOKENS = Counter("vllama_prompt_tokens_total", "Prompt tokens evaluated (Ollama's prompt_eval_count).",
                        ("model",))
GENERATED_TOKENS = Counter("vllama_generated_tokens_total", "Tokens generated (Ollama's eval_count).", ("model",))
QUEUE_SECONDS = Histogram("vllama_queue_wait_seconds",
                          "Before the engine worked on a request: routing, template, tokenization and the engine's "
                          "queue (Ollama's load_duration).", ("model",), DURATION_BUCKETS)
ENGINE_SECONDS = Histogram("vllama_engine_time_seconds",
                           "In the engine: prompt evaluation and generation (prompt_eval_duration + eval_duration).",
                           ("model",), DURATION_BUCKETS)
FRAMEWORK_SECONDS = Histogram("vllama_framework_time_seconds",
                              "In vllama: total_duration less the engine's time and its queue (the hop from the "
                              "ingress, template, tokenization, streaming the answer).", ("model",), DURATION_BUCKETS)
# Engine replicas, refreshed every second (`EngineReplica.record_autoscaling_stats`): Ray's
# export drops a gauge not set for two report intervals, so a gauge set only on change would
# vanish while nothing changes.
REPLICA_UP = Gauge("vllama_replica_up", "1 for each running engine replica, by model.", ("model",))
REPLICA_REQUESTS = Gauge("vllama_replica_requests", "Requests an engine replica holds (running or queued in "
                         "its engine), by model.", ("model",))
KV_CACHE_USAGE = Gauge("vllama_kv_cache_usage", "The share of an engine replica's KV cache in use, by model.",
                       ("model",))
# Loads and unloads (`replica.py`, `forward.py`).
LOADS = Counter("vllama_model_loads_total", "Engine replicas started, by model and outcome (ok, failed).",
                ("model", "outcome"))
LOAD_SECONDS = Histogram("vllama_model_load_seconds", "Time for an engine replica's engine to start.",
                         ("model",), LOAD_BUCKETS)
UNLOADS = Counter("vllama_model_unloads_total", "Unload requests (keep_alive 0), by model.", ("model",))
UNLOAD_SECONDS = Histogram("vllama_model_unload_seconds", "Time from an unload request to no replica left.",
                           ("model",), DURATION_BUCKETS)

NANOSECONDS = 1e-9


def record_answer(model: str, values: dict[str, int], engine_queue_ns: int = 0) -> None:
    """Ollama's six measures of one answer (`translate.responses.metrics`), as metrics.
    `engine_queue_ns`: the part of load_duration spent in the engine's own queue, when known."""
    engine_ns = values.get("prompt_eval_duration", 0) + values.get("eval_duration", 0)
    PROMPT_TOKENS.inc(values.get("prompt_eval_count", 0), model=model)
    GENERATED_TOKENS.inc(values.get("eval_count", 0), model=model)
    QUEUE_SECONDS.observe(values.get("load_duration", 0) * NANOSECONDS, model=model)
    ENGINE_SECONDS.observe(engine_ns * NANOSECONDS, model=model)
    FRAMEWORK_SECONDS.observe(max(values.get("total_duration", 0) - engine_ns - engine_queue_ns, 0) * NANOSECONDS, model=model)
