"""`GET /metrics`: the Prometheus metrics of every engine replica (vLLM's own), as one page.

Each engine replica renders its process's registry (`prometheus_client`, where vLLM's stat
logger records); the ingress asks every running replica of every model for it over the channel,
labels each sample with the replica it came from (vLLM's samples already carry `model_name`), and
merges the families: one `# HELP`/`# TYPE` per metric, the samples of all replicas under it. The
ingress's own process metrics come first. One scrape of one node so sees the whole application
on a single-node setup; a scrape of Ray's per-node metrics export covers several nodes (the
operations work).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

#: The label each engine replica's samples get.
REPLICA_LABEL = "replica"


def merge(own: bytes, replicas: Iterable[tuple[str, bytes]]) -> bytes:
    """One exposition from this process's (`own`) and each `(replica id, exposition)`."""
    families: dict[str, Metric] = {}
    for replica, text in ((None, own), *replicas):
        for family in text_string_to_metric_families(text.decode("utf-8", "replace")):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                labels = sample.labels if replica is None else {**sample.labels, REPLICA_LABEL: replica}
                merged.add_sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(list(families.values())))
    return generate_latest(registry)


class _Fixed:
    """A collector that yields metrics already gathered."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics
