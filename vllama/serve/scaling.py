"""How many engine replicas a model needs: Serve's autoscaler, fed with what each replica reports.

Every engine deployment is scaled by `LifecyclePolicy`, which Serve calls on each tick of its
control loop with the metrics the replicas report (`EngineReplica.record_autoscaling_stats`):

- `in_flight`: the requests a replica holds. Serve's own policy counts the requests that went
  through its handles; vllama's take the channel (`channel.py`), so the replicas count them. An
  autoscaled model wants their sum over its `target_ongoing_requests`, as Serve's queue-length
  policy does with its own count; a model with a fixed number of replicas wants that number.
- `keep_until`: until when a replica wants its model loaded (`lifecycle.KeepAlive`). Once every
  replica's time has passed and none holds a request, the model wants no replica: it unloads.

At zero replicas the policy keeps Serve's target: a request queued at a handle is what starts a
replica (Serve's cold start, see `lifecycle.py`). Serve wraps a custom policy with the rest of the
autoscaling config (bounds, upscale and downscale delays, scaling factors), so those keep their
meaning; `app.deployment_options` sets the bounds so that zero is allowed.
"""

from __future__ import annotations

import time
from typing import Any

from ray.serve.config import AutoscalingContext

#: The metrics each engine replica reports: requests it holds now (streams included), and the
#: wall-clock time until which it wants its model loaded.
IN_FLIGHT = "in_flight"
KEEP_UNTIL = "keep_until"
POLICY = "vllama.serve.scaling:LifecyclePolicy"


def in_flight_policy(ctx: AutoscalingContext) -> tuple[float, dict[str, Any]]:
    """Replicas wanted: requests in flight over all replicas / target per replica."""
    if ctx.current_num_replicas == 0:
        return ctx.target_num_replicas, {}
    per_replica = (ctx.aggregated_metrics or {}).get(IN_FLIGHT) or {}
    total = sum(per_replica.values())
    return total / ctx.config.get_target_ongoing_requests(), {}


def expired(ctx: AutoscalingContext, now: float | None = None) -> bool:
    """Whether every running replica's keep_alive has run out with no request in it (by the
    latest value each reported). A replica that has not reported yet keeps its model."""
    raw = ctx.raw_metrics or {}
    keep = raw.get(KEEP_UNTIL) or {}
    held = raw.get(IN_FLIGHT) or {}
    replicas = list(ctx.running_replicas or keep)
    if not replicas:
        return False
    now = time.time() if now is None else now
    for replica in replicas:
        until, in_flight = _latest(keep.get(replica)), _latest(held.get(replica))
        if until is None or until > now or (in_flight or 0) > 0:
            return False
    return True


def _latest(series: Any) -> float | None:
    if not series:
        return None
    return max(series, key=lambda point: point.timestamp).value


class LifecyclePolicy:
    """Serve's autoscaling policy for an engine deployment (instantiated once per deployment
    with `policy_kwargs`). `replicas`: how many a loaded model has at least; `by_load`: whether
    requests in flight add more (an `autoscaling_config` in vllama's config)."""

    def __init__(self, replicas: int = 1, by_load: bool = False) -> None:
        self.replicas = replicas
        self.by_load = by_load

    def __call__(self, ctx: AutoscalingContext) -> tuple[float, dict[str, Any]]:
        if ctx.current_num_replicas == 0:
            return ctx.target_num_replicas, {}
        # Requests Serve counts are ones queued at a handle for a replica: a load under way. Its
        # figure lags (the handles report every second, averaged over the look-back window), and
        # at zero replicas any figure above zero starts one again: wait until it reads zero.
        if expired(ctx) and not ctx.total_num_requests:
            return 0, {}
        wanted = in_flight_policy(ctx)[0] if self.by_load else 0
        return max(self.replicas, wanted), {}
