"""How many engine replicas a model needs: Serve's autoscaler, fed with the requests each
replica holds on the channel.

Serve's own policy counts the requests that went through its handles; vllama's requests take the
channel (`channel.py`), so each replica reports how many it holds (`EngineReplica.
record_autoscaling_stats`) and this policy divides their sum by the deployment's
`target_ongoing_requests`, as Serve's queue-length policy does with its own count. Serve wraps a
custom policy with the rest of its autoscaling config (bounds, upscale and downscale delays,
scaling factors), so those keep their meaning.
"""

from __future__ import annotations

from typing import Any

from ray.serve.config import AutoscalingContext

#: The metric each engine replica reports: requests it holds now (streams included).
IN_FLIGHT = "in_flight"
POLICY = "vllama.serve.scaling:in_flight_policy"


def in_flight_policy(ctx: AutoscalingContext) -> tuple[float, dict[str, Any]]:
    """Replicas wanted: requests in flight over all replicas / target per replica."""
    if ctx.current_num_replicas == 0:
        return ctx.target_num_replicas, {}
    per_replica = (ctx.aggregated_metrics or {}).get(IN_FLIGHT) or {}
    total = sum(per_replica.values())
    return total / ctx.config.get_target_ongoing_requests(), {}
