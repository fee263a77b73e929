"""Ray Serve options per model: GPUs, placement groups, scaling. Imports ray (no cluster started)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest

from vllama.config import DeploymentSettings, IngressConfig
from vllama.models.resolve import ResolvedModel
from vllama.serve import scaling
from vllama.serve.admission import DEFAULT_MAX_ONGOING_REQUESTS
from vllama.serve.app import (
    DEFAULT_INGRESS_AUTOSCALING,
    DEFAULT_MAX_NUM_SEQS,
    INGRESS_DEPLOYMENT,
    LOOK_BACK_S,
    REPLICA_ENV_VARS,
    ROUTER_CLASS,
    deployment_name,
    deployment_options,
    ingress_options,
    lifecycle_autoscaling,
)


def model(name: str = "qwen2.5:1.5b", **engine_kwargs: Any) -> ResolvedModel:
    return ResolvedModel(name=name, key=name, source="Qwen/x", engine_kwargs=engine_kwargs)


def options(accelerator: str = "gpu", settings: dict[str, Any] | None = None, **engine_kwargs: Any) -> dict[str, Any]:
    return deployment_options(model(**engine_kwargs), DeploymentSettings.model_validate(settings or {}), accelerator)


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("qwen2.5:1.5b", "qwen2_5:1_5b"),
        ("org/model:latest", "org--model:latest"),
        ("host:5000/ns/m:v1.0", "host:5000--ns--m:v1_0"),
    ],
)
def test_deployment_name(name: str, suffix: str) -> None:
    # A fixed prefix, then the model name with '/' and '.' (which Serve's dashboard and
    # routes dislike) replaced.
    result = deployment_name(name)
    prefix = deployment_name("m:t").removesuffix("m:t")
    assert prefix and prefix.endswith(":")
    assert result == prefix + suffix
    assert "/" not in result and "." not in result


def test_deployment_names_distinct_for_distinct_models() -> None:
    names = ["qwen2.5:1.5b", "qwen2.5:0.5b", "ns/qwen2.5:1.5b", "llama3.2:1b"]
    assert len({deployment_name(n) for n in names}) == len(names)


def resources(result: dict[str, Any]) -> dict[str, Any]:
    """The actor options other than the replica's environment (tested on its own below)."""
    return {k: v for k, v in result["ray_actor_options"].items() if k != "runtime_env"}


def test_gpu_single() -> None:
    result = options()
    assert result.pop("request_router_config").request_router_class == ROUTER_CLASS
    assert result == {
        "name": deployment_name("qwen2.5:1.5b"),
        "ray_actor_options": {"num_cpus": 1, "num_gpus": 1, "runtime_env": {"env_vars": REPLICA_ENV_VARS}},
        "max_ongoing_requests": DEFAULT_MAX_ONGOING_REQUESTS,
        "autoscaling_config": lifecycle_autoscaling(DeploymentSettings(), "start"),
    }
    assert DEFAULT_MAX_ONGOING_REQUESTS == 512


@pytest.mark.parametrize(
    ("engine_kwargs", "gpus"),
    [
        ({"tensor_parallel_size": 2}, 2),
        ({"tensor_parallel_size": 4}, 4),
        ({"pipeline_parallel_size": 2}, 2),
        ({"tensor_parallel_size": 2, "pipeline_parallel_size": 2}, 4),
        ({"tensor_parallel_size": 2, "distributed_executor_backend": "mp"}, 2),
    ],
)
def test_gpu_multiprocessing_backend(engine_kwargs: dict[str, Any], gpus: int) -> None:
    result = options(**engine_kwargs)
    assert resources(result) == {"num_cpus": 1, "num_gpus": gpus}
    assert "placement_group_bundles" not in result
    assert "placement_group_strategy" not in result


@pytest.mark.parametrize("strategy", [None, "SPREAD", "STRICT_PACK"])
def test_gpu_ray_backend_placement_group(strategy: str | None) -> None:
    settings = {"placement_group_strategy": strategy} if strategy else {}
    result = options(
        settings=settings, tensor_parallel_size=2, pipeline_parallel_size=2, distributed_executor_backend="ray"
    )
    assert resources(result) == {"num_cpus": 1, "num_gpus": 0}
    assert result["placement_group_bundles"] == [{"CPU": 1, "GPU": 1}, {"GPU": 1}, {"GPU": 1}, {"GPU": 1}]
    assert result["placement_group_strategy"] == (strategy or "PACK")


def test_gpu_ray_backend_single_gpu() -> None:
    result = options(distributed_executor_backend="ray")
    assert result["placement_group_bundles"] == [{"CPU": 1, "GPU": 1}]


@pytest.mark.parametrize("engine_kwargs", [{}, {"tensor_parallel_size": 2}, {"distributed_executor_backend": "ray"}])
def test_cpu(engine_kwargs: dict[str, Any]) -> None:
    result = options("cpu", **engine_kwargs)
    assert resources(result) == {"num_cpus": 0}
    assert "placement_group_bundles" not in result


@pytest.mark.parametrize(
    ("settings", "engine_kwargs", "expected"),
    [
        ({}, {}, 512),
        ({}, {"max_num_seqs": 64}, 128),
        ({}, {"max_num_seqs": 1}, 2),
        ({"max_ongoing_requests": 7}, {"max_num_seqs": 64}, 7),
        ({"max_ongoing_requests": 1000}, {}, 1000),
    ],
)
def test_max_ongoing_requests(settings: dict[str, Any], engine_kwargs: dict[str, Any], expected: int) -> None:
    assert options(settings=settings, **engine_kwargs)["max_ongoing_requests"] == expected


@pytest.mark.parametrize(
    ("num_replicas", "load", "loaded", "initial"),
    [(None, "start", 1, 1), (0, "start", 1, 0), (3, "start", 3, 3), (None, "demand", 1, 0), (3, "demand", 3, 0)],
)
def test_fixed_replicas_are_what_a_loaded_model_has(num_replicas: int | None, load: str, loaded: int, initial: int) -> None:
    """Every engine deployment can go to zero (unloaded) and back; loaded, it has its
    `num_replicas` (a `load: demand` model, or `num_replicas: 0`, starts with none)."""
    settings = DeploymentSettings.model_validate({"num_replicas": num_replicas})
    result = deployment_options(model(), settings, "gpu", load=load)
    scaling_config = result["autoscaling_config"]
    assert "num_replicas" not in result
    assert (scaling_config["min_replicas"], scaling_config["max_replicas"]) == (0, loaded)
    assert scaling_config["initial_replicas"] == initial
    assert scaling_config["downscale_to_zero_delay_s"] == 0  # keep_alive is the delay
    assert scaling_config["policy"] == {
        "policy_function": scaling.POLICY, "policy_kwargs": {"replicas": loaded, "by_load": False}}


def test_autoscaling_config_is_kept_with_zero_allowed() -> None:
    autoscaling = {"min_replicas": 2, "max_replicas": 4, "target_ongoing_requests": 128}
    result = options(settings={"autoscaling_config": autoscaling})
    # Requests take the channel, not Serve's handles: the replicas report what they hold, and the
    # policy keeps min_replicas while the model is loaded.
    assert result["autoscaling_config"] == {
        "look_back_period_s": LOOK_BACK_S, "metrics_interval_s": 1.0, "downscale_to_zero_delay_s": 0,
        **autoscaling, "min_replicas": 0, "initial_replicas": 2,
        "policy": {"policy_function": scaling.POLICY, "policy_kwargs": {"replicas": 2, "by_load": True}},
    }
    assert "num_replicas" not in result


def test_autoscaling_target_defaults_to_the_engines_batch() -> None:
    result = options(settings={"autoscaling_config": {"min_replicas": 1, "max_replicas": 2}}, max_num_seqs=64)
    assert result["autoscaling_config"]["target_ongoing_requests"] == 64
    assert options(settings={"autoscaling_config": {"max_replicas": 2}})["autoscaling_config"][
        "target_ongoing_requests"] == DEFAULT_MAX_NUM_SEQS


def test_engine_deployments_use_vllamas_router() -> None:
    config = options()["request_router_config"]
    assert config.request_router_class == ROUTER_CLASS
    module, name = ROUTER_CLASS.rsplit(".", 1)
    assert getattr(importlib.import_module(module), name).__name__ == name


def test_graceful_shutdown_timeout_passed_on() -> None:
    assert options(settings={"graceful_shutdown_timeout_s": 45})["graceful_shutdown_timeout_s"] == 45
    assert "graceful_shutdown_timeout_s" not in options()


def test_ingress_options() -> None:
    default = ingress_options(IngressConfig())
    assert default["name"] == INGRESS_DEPLOYMENT
    assert default["autoscaling_config"] == DEFAULT_INGRESS_AUTOSCALING and "num_replicas" not in default
    assert default["ray_actor_options"]["num_cpus"] == 0
    assert default["ray_actor_options"]["runtime_env"]["env_vars"] == REPLICA_ENV_VARS
    # vllama's JSON request log (request_log.py) stands in for Serve's access log on the ingress.
    assert default["logging_config"] == {"encoding": "JSON", "enable_access_log": False}
    fixed = ingress_options(IngressConfig(num_replicas=2, max_ongoing_requests=100))
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed
    assert fixed["max_ongoing_requests"] == 100


def test_user_ray_actor_options_merged_over_defaults() -> None:
    result = options(settings={"ray_actor_options": {"num_cpus": 4, "resources": {"node:a": 0.01}}}, tensor_parallel_size=2)
    assert resources(result) == {"num_cpus": 4, "num_gpus": 2, "resources": {"node:a": 0.01}}
    cpu = options("cpu", settings={"ray_actor_options": {"memory": 1024}})
    assert resources(cpu) == {"num_cpus": 0, "memory": 1024}


@pytest.mark.parametrize("accelerator", ["gpu", "cpu"])
def test_replica_code_runs_on_serves_http_loop(accelerator: str) -> None:
    env = options(accelerator)["ray_actor_options"]["runtime_env"]["env_vars"]
    assert env["RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD"] == "0"


def test_replicas_report_their_metrics_every_second() -> None:
    """A keep_alive runs out within about a second of its time, not Serve's default ten."""
    env = options("cpu")["ray_actor_options"]["runtime_env"]["env_vars"]
    assert env["RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S"] == "1"


def test_user_runtime_env_kept_and_its_env_vars_win() -> None:
    runtime_env = {"pip": ["x"], "env_vars": {"A": "1", "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1"}}
    result = options(settings={"ray_actor_options": {"runtime_env": runtime_env}})
    assert result["ray_actor_options"]["runtime_env"] == {
        "pip": ["x"], "env_vars": {**REPLICA_ENV_VARS, "A": "1", "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1"}
    }
    assert runtime_env["env_vars"] == {"A": "1", "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1"}  # not changed


def test_health_checks_and_retries_passed_when_set() -> None:
    result = options(
        settings={"health_check_period_s": 5, "health_check_timeout_s": 30, "max_constructor_retry_count": 1}
    )
    assert result["health_check_period_s"] == 5
    assert result["health_check_timeout_s"] == 30
    assert result["max_constructor_retry_count"] == 1
    plain = options()
    for key in ("health_check_period_s", "health_check_timeout_s", "max_constructor_retry_count"):
        assert key not in plain


def test_options_are_accepted_by_serve() -> None:
    # Every key produced must be one Ray Serve's `Deployment.options` takes.
    from ray import serve

    result = options(
        settings={"autoscaling_config": {"min_replicas": 1, "max_replicas": 2}, "health_check_period_s": 5,
                  "max_constructor_retry_count": 2},
        tensor_parallel_size=2,
        distributed_executor_backend="ray",
    )

    @serve.deployment
    class Dummy:
        pass

    configured = Dummy.options(**result)
    assert configured.name == result["name"]


def test_access_log_off_is_serve_logging_config() -> None:
    from ray import serve

    assert "logging_config" not in options()  # Serve's default: an access log line per request
    quiet = deployment_options(model(), DeploymentSettings(), "cpu", access_log=False)
    assert quiet["logging_config"] == {"enable_access_log": False}

    @serve.deployment
    class Dummy:
        pass

    assert Dummy.options(**quiet).logging_config["enable_access_log"] is False


GIB = 1 << 30


@pytest.mark.parametrize(
    ("weights", "engines", "available", "total", "share"),
    [
        (0, 1, 20 * GIB, 24 * GIB, 0.20),  # 5 GiB of 24: a KV cache of 4 GiB and the engine
        (3 * GIB, 1, 20 * GIB, 24 * GIB, 0.33),  # with its weights
        (0, 2, 20 * GIB, 24 * GIB, 0.20),  # two fit in 20 GiB free
        # Five do not at 5 GiB each: 90% of what is free, shared, less each engine's processes
        # outside its share (1.75 GiB): 3.6 - 1.75 = 1.85 GiB of 24.
        (0, 5, 20 * GIB, 24 * GIB, 0.07),
        (14 * GIB, 1, 20 * GIB, 24 * GIB, 0.67),  # a large model takes what is free, never more
        (100 * GIB, 1, 500 * GIB, 512 * GIB, 0.2),
        (500 * GIB, 1, 510 * GIB, 512 * GIB, 0.89),
        (0, 2, 7 * GIB, 24 * GIB, 0.05),  # a busy machine: still a KV cache for each
        (0, 1000, GIB, 24 * GIB, 0.01),  # at least 0.01: vLLM then says what is missing
    ],
)
def test_cpu_memory_share(weights: int, engines: int, available: int, total: int, share: float) -> None:
    from vllama.models.resolve import cpu_memory_share

    assert cpu_memory_share(weights, engines, available=available, total=total) == pytest.approx(share)


def test_cpu_shares_only_where_nobody_set_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from vllama.serve.app import with_cpu_memory_shares

    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    models = [model("a"), model("b", gpu_memory_utilization=0.3), model("c", kv_cache_memory_bytes=GIB)]
    shared = with_cpu_memory_shares(models)
    assert 0.01 <= shared[0].engine_kwargs["gpu_memory_utilization"] <= 0.92
    assert shared[1].engine_kwargs == {"gpu_memory_utilization": 0.3}
    assert shared[2].engine_kwargs == {"kv_cache_memory_bytes": GIB}
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "2")
    assert with_cpu_memory_shares(models) == models


def test_cpu_engine_bytes_for_the_budget() -> None:
    """What the budget counts a CPU engine as taking: its share of the machine and its processes
    outside it; with no share set, the least it runs with (its share then shrinks to fit)."""
    from vllama.models.resolve import CPU_ENGINE_PROCESSES_BYTES, cpu_engine_bytes

    total = 24 * GIB
    assert cpu_engine_bytes(model("a", gpu_memory_utilization=0.25), total) == 6 * GIB + CPU_ENGINE_PROCESSES_BYTES
    assert cpu_engine_bytes(model("b"), total) == 2 * GIB + CPU_ENGINE_PROCESSES_BYTES  # 1 GiB KV + runtime
    assert cpu_engine_bytes(model("c", kv_cache_memory_bytes=3 * GIB), total) == 4 * GIB + CPU_ENGINE_PROCESSES_BYTES
