"""Bounded waiting: each model takes what its replicas can hold plus a bounded queue, and answers
any request past that at once with Ollama's 503 "server busy" (its `OLLAMA_MAX_QUEUE`).

Why here and not Serve's `max_queued_requests`: requests reach the engine replicas over vllama's
channel (`channel.py`), not through Serve's handles, so Serve never sees them queue. The ingress
replica counts the model's requests it has let in (waiting for a load, in an engine's batch, or
in the engine's own queue) and compares with

    running replicas x max_ongoing_requests + max_queued_requests

the same two numbers, with the same meaning, as Serve's options of those names: what one replica
takes at once, and how many may wait beyond that. As Serve bounds its queue per caller, the bound
holds per ingress replica. While the model is not loaded (no replica) only the queue is open:
the requests that wait for its load.

A refused request costs one comparison: no routing, no engine, no replica touched, so a 503
comes back in about the time a 404 does, however loaded the engines are.
"""

from __future__ import annotations

from dataclasses import dataclass

from vllama.config import DeploymentSettings
from vllama.errors import Overloaded
from vllama.models.resolve import ResolvedModel

#: Ollama's answer when it cannot take a request now (its ErrMaxQueue); two spaces after "again.".
SERVER_BUSY = "server busy, please try again.  maximum pending requests exceeded"
#: Ollama's `OLLAMA_MAX_QUEUE`.
DEFAULT_MAX_QUEUED = 512
#: When neither the config nor the engine settings say: `vllm serve`'s usual max_num_seqs x 2.
DEFAULT_MAX_ONGOING_REQUESTS = 512


@dataclass(frozen=True)
class QueueBound:
    #: Requests one replica takes at once (its deployment's `max_ongoing_requests`).
    per_replica: int
    #: Requests that may wait beyond those (-1: no bound, as Serve's `max_queued_requests`).
    queued: int = DEFAULT_MAX_QUEUED

    def capacity(self, replicas: int) -> int | None:
        """Requests let in at once with `replicas` running (None: no bound)."""
        if self.queued < 0:
            return None
        return replicas * self.per_replica + self.queued


class Admission:
    """One model's count of requests let in, on this ingress replica."""

    def __init__(self, bound: QueueBound | None) -> None:
        self.bound = bound
        self.admitted = 0

    def enter(self, replicas: int) -> None:
        """Let one request in, or raise `Overloaded` (503 server busy) when the model is full.
        The caller calls `leave` once the request is over, however it ends."""
        capacity = self.bound.capacity(replicas) if self.bound is not None else None
        if capacity is not None and self.admitted >= capacity:
            raise Overloaded(SERVER_BUSY)
        self.admitted += 1

    def leave(self) -> None:
        self.admitted -= 1


def max_ongoing_requests(model: ResolvedModel, settings: DeploymentSettings) -> int:
    """What one replica of `model` takes at once: the config's word, else twice its engine's
    batch (vLLM queues the second half itself, ready for the next step)."""
    max_num_seqs = model.engine_kwargs.get("max_num_seqs")
    return settings.max_ongoing_requests or (2 * int(max_num_seqs) if max_num_seqs else DEFAULT_MAX_ONGOING_REQUESTS)


def queue_bound(model: ResolvedModel, settings: DeploymentSettings, server_max_queue: int) -> QueueBound:
    """The model's bound: its deployment's `max_queued_requests`, else the server's `max_queue`."""
    queued = settings.max_queued_requests if settings.max_queued_requests is not None else server_max_queue
    return QueueBound(per_replica=max_ongoing_requests(model, settings), queued=queued)
