"""`build_app(args)`: the one way in, for `serve run` (import_path) and for `vllama serve`.

config (pydantic) -> resolved models -> one engine deployment per model (`replica.py`), and the
ingress deployment (`ingress.py`), the application's HTTP entry, bound to all of them. Each
engine deployment has vllama's request router (`router.py`), through which the ingress learns
its running replicas, and, when autoscaled, vllama's policy (`scaling.py`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.config import RequestRouterConfig

from vllama.config import DeploymentSettings, IngressConfig, ModelConfig, ServingConfig
from vllama.models.resolve import (
    ResolvedModel,
    cpu_memory_share,
    detect_accelerator,
    home_dir,
    resolve,
    weights_bytes,
)
from vllama.serve import scaling
from vllama.serve.admission import max_ongoing_requests, queue_bound
from vllama.serve.guard import GuardSettings, split_list
from vllama.serve.ingress import Ingress, IngressSettings
from vllama.serve.replica import EngineReplica, ReplicaSettings

logger = logging.getLogger("vllama")

#: The engine's batch when the config does not set max_num_seqs (vLLM's usual default).
DEFAULT_MAX_NUM_SEQS = 256
INGRESS_DEPLOYMENT = "Ingress"
#: The window over which Serve aggregates the replicas' metrics for the engine deployments.
LOOK_BACK_S = 2.0
#: Serve's default `graceful_shutdown_timeout_s`: how long a stopping replica lets requests finish.
DEFAULT_GRACEFUL_SHUTDOWN_S = 20.0
#: By import path: Serve imports it in each process that routes to an engine deployment.
ROUTER_CLASS = "vllama.serve.router.VllamaRouter"
#: The ingress scales out on requests in flight; it needs no GPU and reserves no CPU.
DEFAULT_INGRESS_AUTOSCALING = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 256}

#: Set in each replica's process (read when Ray Serve's modules load there). By default Serve
#: runs a replica's code on an event loop in a thread of its own and hands every message over to
#: the loop of its HTTP or gRPC server in the main thread: for a token stream that is one
#: cross-thread hop per chunk. With the replica's code on the server's loop, as Ray's own
#: RAY_SERVE_THROUGHPUT_OPTIMIZED mode does, the replica's CPU per request fell from 6.6 to 4.2 ms
#: (tiny model, 32 streams, 2 cores; vLLM's own api_server: 4.3 ms), see docs/PERFORMANCE.md.
#: The cost: code that blocks the loop also delays Serve's health checks and metrics, so
#: vllama's handlers keep blocking work (downloads) off the loop.
#: Replicas and handles push their autoscaling metrics every second (Serve's default: 10 s), so
#: that a model whose keep_alive ran out unloads within about a second, not ten (and a load's
#: queued requests, which hold an unload back, are seen gone as soon).
REPLICA_ENV_VARS = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
}


def build_app(args: dict[str, Any]) -> Application:
    config = ServingConfig.model_validate(args)
    accelerator = detect_accelerator() if config.accelerator == "auto" else config.accelerator
    resolved = [resolve(m, accelerator) for m in config.models]
    if accelerator == "cpu":
        resolved = with_cpu_memory_shares(resolved)
    # Engine arguments are checked by each replica before its engine starts (VllmEngine.start):
    # checking them here too would import vLLM in the driver, 10 s of every start on our machines.
    engines = {
        model.name: engine_application(model, model_config, config, accelerator)
        for model, model_config in zip(resolved, config.models, strict=True)
    }
    routings = [c.routing or config.routing for c in config.models]
    ingress = IngressSettings(
        home=str(home_dir()),
        deployments={m.name: deployment_name(m.name) for m in resolved},
        prefix_routing={m.name: r == "prefix" for m, r in zip(resolved, routings, strict=True)},
        failover=config.failover,
        models={m.name: m for m in resolved},
        load_timeout_s=float(config.load_timeout or 300.0),
        on_gpu=accelerator == "gpu",
        max_loaded_models=config.max_loaded_models or default_max_loaded_models(accelerator),
        max_queue=config.max_queue,
        bounds={m.name: queue_bound(m, c.deployment, config.max_queue) for m, c in zip(resolved, config.models, strict=True)},
        config=config,
        accelerator=accelerator,
        guard=GuardSettings(
            api_keys=(*config.api_keys, *split_list(os.environ.get("VLLAMA_API_KEYS"))),
            origins=(*config.origins, *split_list(os.environ.get("OLLAMA_ORIGINS"))),
            max_request_bytes=config.max_request_bytes,
        ),
    )
    options = ingress_options(config.ingress)
    return serve.deployment(Ingress).options(**options).bind(engines, ingress)


def engine_application(
    model: ResolvedModel, model_config: ModelConfig, config: ServingConfig, accelerator: str,
    *, channel_app: str | None = None,
) -> Application:
    """One model's engine deployment, bound to what its replicas need. `channel_app`: the
    application whose ingress talks to it, when the deployment is an application of its own (a
    model loaded on demand that the config does not list, `serve/available.py`)."""
    settings = model_config.deployment
    options = deployment_options(model, settings, accelerator, load=model_config.load, access_log=config.access_log)
    replica = ReplicaSettings(
        accelerator=accelerator,
        stream_interval_ms=config.stream_interval_ms,
        stall_timeout_s=settings.engine_stall_timeout_s,
        # Serve kills a stopping replica after its graceful shutdown timeout: leave its engine
        # the time to stop.
        drain_timeout_s=max((settings.graceful_shutdown_timeout_s or DEFAULT_GRACEFUL_SHUTDOWN_S) - 2, 0),
        keep_alive_s=config.model_keep_alive(model_config),
        fail_at_start=model_config.load == "start",
        channel_app=channel_app,
    )
    return serve.deployment(EngineReplica).options(**options).bind(model, replica)


#: Ollama's default OLLAMA_MAX_LOADED_MODELS: 3 per GPU.
MODELS_PER_GPU = 3


def default_max_loaded_models(accelerator: str) -> int | None:
    """3 per GPU of the cluster, as Ollama; none on a CPU (memory shares are sized to fit)."""
    if accelerator != "gpu":
        return None
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0
    return MODELS_PER_GPU * gpus or None


def with_cpu_memory_shares(models: list[ResolvedModel]) -> list[ResolvedModel]:
    """On a CPU, each engine whose memory share nobody set gets one that lets all of them be
    loaded together in what this machine has free (`resolve.cpu_memory_share`)."""
    import psutil

    memory = psutil.virtual_memory()
    if os.environ.get("VLLM_CPU_KVCACHE_SPACE"):  # the user sized the KV cache: vLLM skips the share
        return models
    shared = []
    for model in models:
        if "gpu_memory_utilization" not in model.engine_kwargs and "kv_cache_memory_bytes" not in model.engine_kwargs:
            share = cpu_memory_share(weights_bytes(model.source), len(models), available=memory.available,
                                     total=memory.total)
            logger.info("model %s: gpu_memory_utilization %.2f of this machine's memory (on a CPU)", model.name, share)
            model = dataclasses.replace(model, engine_kwargs={**model.engine_kwargs, "gpu_memory_utilization": share})
        shared.append(model)
    return shared


def deployment_name(model_name: str) -> str:
    """As the Ray dashboard lists it: `ModelServer:qwen2_5:1_5b` (Serve LLM's convention for / and .)."""
    return "ModelServer:" + model_name.replace("/", "--").replace(".", "_")


def ingress_options(config: IngressConfig) -> dict[str, Any]:
    actor = {"num_cpus": 0, **(config.ray_actor_options or {})}
    actor["runtime_env"] = _replica_runtime_env(actor.get("runtime_env"))
    options: dict[str, Any] = {
        "name": INGRESS_DEPLOYMENT,
        "ray_actor_options": actor,
        "max_ongoing_requests": config.max_ongoing_requests,
    }
    if config.num_replicas is not None:
        options["num_replicas"] = config.num_replicas
    else:
        options["autoscaling_config"] = config.autoscaling_config or dict(DEFAULT_INGRESS_AUTOSCALING)
    # vllama's own request log (`request_log.py`) replaces Serve's access log on the ingress: one
    # JSON line per request with the request's id, model, tokens and timings, in the replica's
    # Serve log file (`logs/serve/` of Ray's session directory) and on stderr.
    options["logging_config"] = {"encoding": "JSON", "enable_access_log": False}
    return options


def deployment_options(
    model: ResolvedModel,
    settings: DeploymentSettings,
    accelerator: str,
    *,
    load: str = "start",
    access_log: bool = True,
) -> dict[str, Any]:
    """Serve options for one model's engine deployment: resources per replica, scaling, routing
    and health checks.

    GPU placement: a replica of a model with tensor_parallel_size x pipeline_parallel_size = n
    - with vLLM's default multiprocessing backend takes n GPUs on one node
      (`ray_actor_options.num_gpus`; the engine's workers see them through CUDA_VISIBLE_DEVICES);
    - with `distributed_executor_backend: ray` reserves a placement group of n GPU bundles that
      may span nodes, and vLLM places its Ray workers in it (bundle 0 also holds the replica).
    On a CPU the replica asks Ray for no CPU: the engine's own processes do the work, and Ray's
    logical CPUs would otherwise leave no room for the proxy on a small machine.
    """
    n = model.parallel_size
    actor: dict[str, Any] = {}
    options: dict[str, Any] = {"name": deployment_name(model.name)}
    if accelerator == "gpu":
        if model.engine_kwargs.get("distributed_executor_backend") == "ray":
            actor = {"num_cpus": 1, "num_gpus": 0}
            options["placement_group_bundles"] = [{"CPU": 1, "GPU": 1}] + [{"GPU": 1} for _ in range(n - 1)]
            options["placement_group_strategy"] = settings.placement_group_strategy
        else:
            actor = {"num_cpus": 1, "num_gpus": n}
    else:
        actor = {"num_cpus": 0}
    user_actor_options = dict(settings.ray_actor_options or {})
    runtime_env = _replica_runtime_env(user_actor_options.pop("runtime_env", None))
    actor.update(user_actor_options)
    actor["runtime_env"] = runtime_env
    options["ray_actor_options"] = actor

    max_num_seqs = model.engine_kwargs.get("max_num_seqs")
    options["max_ongoing_requests"] = max_ongoing_requests(model, settings)
    options["autoscaling_config"] = lifecycle_autoscaling(settings, load, max_num_seqs)
    options["request_router_config"] = RequestRouterConfig(request_router_class=ROUTER_CLASS)
    if not access_log:
        options["logging_config"] = {"enable_access_log": False}
    for key in ("health_check_period_s", "health_check_timeout_s", "max_constructor_retry_count",
                "graceful_shutdown_timeout_s", "max_replicas_per_node"):
        if (value := getattr(settings, key)) is not None:
            options[key] = value
    return options


def lifecycle_autoscaling(settings: DeploymentSettings, load: str, max_num_seqs: Any = None) -> dict[str, Any]:
    """Every engine deployment is autoscaled by vllama's policy (`scaling.py`), so that its model
    can unload (zero replicas) and load again (see `lifecycle.py`). A loaded model has
    `num_replicas` replicas, or with an `autoscaling_config` from `min_replicas` (at least one)
    to `max_replicas` by its requests in flight; `load: demand` starts it with none."""
    given = dict(settings.autoscaling_config or {})
    by_load = settings.autoscaling_config is not None
    if by_load:
        replicas = max(1, int(given.get("min_replicas", 1)))
        most = int(given.get("max_replicas", replicas))
    else:
        replicas = most = max(1, settings.num_replicas if settings.num_replicas is not None else 1)
    starting = settings.num_replicas == 0 or load == "demand"
    return {
        # What fills the engine's batch: more requests than that wait in its queue.
        "target_ongoing_requests": int(max_num_seqs or DEFAULT_MAX_NUM_SEQS),
        # The replicas' metrics are recorded every look_back_period_s / 5: a keep_alive runs out
        # within about a second of its time.
        "look_back_period_s": LOOK_BACK_S,
        "metrics_interval_s": 1.0,  # what REPLICA_ENV_VARS sets (Serve checks the window against it)
        # keep_alive is the delay before zero: Serve adds none of its own.
        "downscale_to_zero_delay_s": 0,
        **given,
        "min_replicas": 0,
        "max_replicas": most,
        "initial_replicas": 0 if starting else int(given.get("initial_replicas", replicas)),
        "policy": {"policy_function": scaling.POLICY, "policy_kwargs": {"replicas": replicas, "by_load": by_load}},
    }


def _replica_runtime_env(given: dict[str, Any] | None) -> dict[str, Any]:
    runtime_env = dict(given or {})
    runtime_env["env_vars"] = {**REPLICA_ENV_VARS, **(runtime_env.get("env_vars") or {})}
    return runtime_env
