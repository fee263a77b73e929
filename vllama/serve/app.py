"""`build_app(args)`: the one way in, for `serve run` (import_path) and for `vllama serve`.

config (pydantic) -> resolved models -> one Serve deployment per model, the first model's
deployment being the application's ingress. Its peers are bound in, so that it can forward
requests for the other models by the body's `model` (HAProxy routes by path only).
"""

from __future__ import annotations

import logging
from typing import Any

from ray import serve
from ray.serve import Application

from vllama.config import DeploymentSettings, ServingConfig
from vllama.models.resolve import ResolvedModel, detect_accelerator, home_dir, resolve
from vllama.serve.server import IngressModelServer, ModelServer, ServerSettings

logger = logging.getLogger("vllama")

#: When neither the config nor the engine settings say: `vllm serve`'s usual max_num_seqs x 2.
DEFAULT_MAX_ONGOING_REQUESTS = 512

#: Set in each replica's process (read when Ray Serve's modules load there). By default Serve
#: runs a replica's code on an event loop in a thread of its own and hands every response chunk
#: over to its HTTP server's loop in the main thread: for a token stream that is one cross-thread
#: hop per token. With the replica's code on the HTTP server's loop, as Ray's own
#: RAY_SERVE_THROUGHPUT_OPTIMIZED mode does, the replica's CPU per request fell from 6.6 to 4.2 ms
#: (tiny model, 32 streams, 2 cores; vLLM's own api_server: 4.3 ms), see docs/PERFORMANCE.md.
#: The cost: code that blocks the loop also delays Serve's health checks and metrics, so
#: vllama's handlers keep blocking work (downloads) off the loop.
REPLICA_ENV_VARS = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0"}


def build_app(args: dict[str, Any]) -> Application:
    config = ServingConfig.model_validate(args)
    accelerator = detect_accelerator() if config.accelerator == "auto" else config.accelerator
    settings = ServerSettings(
        accelerator=accelerator,
        forward_batch_interval_ms=config.forward_batch_interval_ms,
        stream_interval_ms=config.stream_interval_ms,
        home=str(home_dir()),
    )
    resolved = [resolve(m, accelerator) for m in config.models]
    # Engine arguments are checked by each replica before its engine starts (VllmEngine.start):
    # checking them here too would import vLLM in the driver, 10 s of every start on our machines.
    deployments = [
        (model, deployment_options(model, model_config.deployment, accelerator, access_log=config.access_log))
        for model, model_config in zip(resolved, config.models, strict=True)
    ]

    ingress_model, ingress_options = deployments[0]
    peers = {  # by display name; the ingress forwards requests for these models to them
        model.name: serve.deployment(ModelServer).options(**options).bind(model, {}, settings)
        for model, options in deployments[1:]
    }
    return serve.deployment(IngressModelServer).options(**ingress_options).bind(ingress_model, peers, settings)


def deployment_name(model_name: str) -> str:
    """As the Ray dashboard lists it: `ModelServer:qwen2_5:1_5b` (Serve LLM's convention for / and .)."""
    return "ModelServer:" + model_name.replace("/", "--").replace(".", "_")


def deployment_options(
    model: ResolvedModel, settings: DeploymentSettings, accelerator: str, *, access_log: bool = True
) -> dict[str, Any]:
    """Serve options for one model: resources per replica, scaling and health checks.

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
    runtime_env = dict(user_actor_options.pop("runtime_env", None) or {})
    runtime_env["env_vars"] = {**REPLICA_ENV_VARS, **(runtime_env.get("env_vars") or {})}
    actor.update(user_actor_options)
    actor["runtime_env"] = runtime_env
    options["ray_actor_options"] = actor

    max_num_seqs = model.engine_kwargs.get("max_num_seqs")
    options["max_ongoing_requests"] = settings.max_ongoing_requests or (
        2 * int(max_num_seqs) if max_num_seqs else DEFAULT_MAX_ONGOING_REQUESTS
    )
    if settings.autoscaling_config is not None:
        options["autoscaling_config"] = settings.autoscaling_config
    else:
        options["num_replicas"] = 1 if settings.num_replicas is None else settings.num_replicas
    if not access_log:
        options["logging_config"] = {"enable_access_log": False}
    for key in ("health_check_period_s", "health_check_timeout_s", "max_constructor_retry_count"):
        if (value := getattr(settings, key)) is not None:
            options[key] = value
    return options
