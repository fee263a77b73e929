"""The autoscaling policy (`vllama.serve.scaling`): replicas wanted from the requests the engine
replicas report holding on the channel, and zero once every replica's keep_alive has run out."""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

import pytest

from vllama.serve import scaling
from vllama.serve.scaling import IN_FLIGHT, KEEP_UNTIL, LifecyclePolicy, expired, in_flight_policy


def context(current: int, target: int, metrics: Any, target_ongoing: float = 4.0) -> Any:
    """Only what the policy reads of Serve's AutoscalingContext."""
    config = SimpleNamespace(get_target_ongoing_requests=lambda: target_ongoing)
    return SimpleNamespace(
        current_num_replicas=current, target_num_replicas=target, aggregated_metrics=metrics, config=config,
        total_num_requests=0.0,
    )


@pytest.mark.parametrize(
    ("per_replica", "target_ongoing", "wanted"),
    [
        ({"r1": 3.0, "r2": 5.0}, 4.0, 2.0),
        ({"r1": 16.0, "r2": 16.0}, 4.0, 8.0),  # more than the bounds allow: Serve clips it
        ({"r1": 1.0}, 4.0, 0.25),
        ({"r1": 0.0, "r2": 0.0}, 4.0, 0.0),
        ({"r1": 7.0, "r2": 2.0, "r3": 0.0}, 3.0, 3.0),
    ],
)
def test_total_over_target(per_replica: dict[str, float], target_ongoing: float, wanted: float) -> None:
    decision, state = in_flight_policy(context(len(per_replica), 2, {IN_FLIGHT: per_replica}, target_ongoing))
    assert decision == pytest.approx(wanted)
    assert state == {}


def test_other_metrics_are_ignored() -> None:
    metrics = {IN_FLIGHT: {"r1": 2.0}, "something_else": {"r1": 100.0}}
    assert in_flight_policy(context(1, 1, metrics))[0] == pytest.approx(0.5)


@pytest.mark.parametrize("target", [0, 1, 3])
def test_no_replicas_keeps_the_target(target: int) -> None:
    """Nothing reports yet: Serve's own cold start decides, the policy keeps its target."""
    metrics = {IN_FLIGHT: {"r1": 50.0}}  # stale figures from replicas that are gone
    assert in_flight_policy(context(0, target, metrics)) == (target, {})


@pytest.mark.parametrize("metrics", [None, {}, {IN_FLIGHT: {}}, {IN_FLIGHT: None}, {"other": {"r1": 9.0}}])
def test_missing_metric_is_zero(metrics: Any) -> None:
    assert in_flight_policy(context(2, 2, metrics)) == (0, {})


def test_policy_path_names_the_policy() -> None:
    """Serve imports the policy by this path."""
    module, name = scaling.POLICY.split(":")
    assert getattr(importlib.import_module(module), name) is LifecyclePolicy


def test_with_serves_own_context() -> None:
    """The attribute names the policy reads exist on Serve's AutoscalingContext."""
    from ray.serve.config import AutoscalingConfig, AutoscalingContext

    fields: dict[str, Any] = {  # replica ids are plain strings here: the policy only sums the values
        "deployment_id": None, "deployment_name": "dep", "app_name": "app", "current_num_replicas": 2,
        "target_num_replicas": 2, "running_replicas": [], "total_num_requests": 0.0, "total_queued_requests": 0.0,
        "aggregated_metrics": lambda: {IN_FLIGHT: {"r1": 6.0, "r2": 6.0}}, "raw_metrics": None,
        "capacity_adjusted_min_replicas": 1, "capacity_adjusted_max_replicas": 8, "policy_state": {},
        "last_scale_up_time": None, "last_scale_down_time": None, "current_time": None,
        "config": AutoscalingConfig(target_ongoing_requests=4, min_replicas=1, max_replicas=8),
    }
    ctx = AutoscalingContext(**fields)
    assert in_flight_policy(ctx) == (3.0, {})


def point(value: float, at: float = 0.0) -> Any:
    return SimpleNamespace(timestamp=at, value=value)


def lifecycle_context(current: int, keep: dict[str, list[Any]], held: dict[str, list[Any]],
                      aggregated: dict[str, float] | None = None, target: int = 1) -> Any:
    ctx = context(current, target, {IN_FLIGHT: aggregated or {}})
    ctx.raw_metrics = {KEEP_UNTIL: keep, IN_FLIGHT: held}
    ctx.running_replicas = list(keep) or list(held)
    return ctx


NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("keep", "held", "gone"),
    [
        ({"r1": [point(NOW - 1)]}, {"r1": [point(0)]}, True),  # ran out, nothing held
        ({"r1": [point(NOW + 5)]}, {"r1": [point(0)]}, False),  # still to run
        ({"r1": [point(NOW - 1)]}, {"r1": [point(2)]}, False),  # a request in it
        ({"r1": [point(NOW - 1)], "r2": [point(NOW + 60)]}, {}, False),  # the model's time is the latest
        ({"r1": [point(NOW - 9)], "r2": [point(NOW - 1)]}, {"r1": [point(0)], "r2": [point(0)]}, True),
        ({"r1": [point(NOW + 60, at=1), point(NOW - 1, at=2)]}, {}, True),  # the latest sample counts
        ({"r1": [point(NOW - 1, at=2), point(NOW + 60, at=1)]}, {}, True),  # by its timestamp
        ({"r1": []}, {}, False),  # not reported yet: kept
    ],
)
def test_expired_when_every_replica_ran_out_holding_nothing(keep: Any, held: Any, gone: bool) -> None:
    assert expired(lifecycle_context(len(keep), keep, held), now=NOW) is gone


def test_a_running_replica_that_has_not_reported_keeps_the_model() -> None:
    ctx = lifecycle_context(2, {"r1": [point(NOW - 1)]}, {})
    ctx.running_replicas = ["r1", "r2"]
    assert expired(ctx, now=NOW) is False


def test_lifecycle_policy_loaded_unloaded_and_by_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scaling.time, "time", lambda: NOW)
    kept = lifecycle_context(1, {"r1": [point(NOW + 10)]}, {}, aggregated={"r1": 12.0})
    assert LifecyclePolicy(replicas=2)(kept) == (2, {})  # fixed: its replicas whatever the load
    assert LifecyclePolicy(replicas=1, by_load=True)(kept) == (3.0, {})  # 12 in flight / 4 each
    assert LifecyclePolicy(replicas=2, by_load=True)(
        lifecycle_context(1, {"r1": [point(NOW + 10)]}, {}, aggregated={"r1": 1.0})) == (2, {})
    ran_out = lifecycle_context(2, {"r1": [point(NOW - 1)], "r2": [point(NOW - 2)]}, {})
    assert LifecyclePolicy(replicas=2, by_load=True)(ran_out) == (0, {})
    # Requests queued at a handle (a load under way, or its figure not yet gone): not now, since
    # at zero Serve's cold start would start a replica again at once.
    ran_out.total_num_requests = 1.95
    assert LifecyclePolicy(replicas=2, by_load=True)(ran_out) == (2, {})
    # At zero, Serve's target stands (its cold start raises it when a request waits).
    assert LifecyclePolicy(replicas=2)(lifecycle_context(0, {}, {}, target=0)) == (0, {})
    assert LifecyclePolicy(replicas=2)(lifecycle_context(0, {}, {}, target=1)) == (1, {})
