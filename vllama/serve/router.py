"""vllama's Ray Serve request router for the engine deployments (`request_router_config`).

It serves two purposes. It registers itself in `routing`, so that the ingress reads the set of
running replicas that Serve keeps current here. And it routes the few calls that do take Serve's
handle path (an engine replica's endpoint, `pin`: to that replica), the less loaded of two
otherwise. Requests themselves go over the channel (`channel.py`).

Serve ships a router class to the processes that route by value (it pickles this module's
contents): everything it needs beyond Serve's own API is reached through the `routing` module,
which each process imports for itself, so that the ingress and the router share its registry.
"""

from __future__ import annotations

import random

from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica

from vllama.serve import routing


class VllamaRouter(RequestRouter):
    """See the module's docstring."""

    def initialize_state(self) -> None:
        if self._deployment_id is not None:
            routing.register(self._deployment_id.app_name, self._deployment_id.name, self)

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        if pending_request is not None:
            # Serve retries at once, without backing off, unless told to: a pinned replica that
            # is gone, or replicas that are all full, would spin this loop.
            pending_request.routing_context.should_backoff = True
            if pin := pending_request.kwargs.get("pin"):
                return [[r for r in candidate_replicas if r.replica_id.unique_id == pin]]
        if len(candidate_replicas) <= 2:
            return [candidate_replicas]
        return [random.sample(candidate_replicas, 2)]
