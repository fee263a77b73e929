"""The ingress: the application's HTTP entry, with no engine (no vLLM, no torch in its process).

Behind Ray Serve's HAProxy, its replicas answer Ollama's routes and OpenAI's `/v1` (FastAPI),
resolve the `model` of each request (HAProxy routes by path only) and forward it to one of that
model's engine replicas (`serve/forward.py`, over `serve/channel.py`), relaying the answer the
engine replica built. Model
management (create, copy, delete, pull, blobs) runs here: it is files under `$VLLAMA_HOME`, no
engine. Its replicas scale on ongoing requests like any Serve deployment, independently of the
engines; every model is reached the same way, so any model can scale, fail over, or (with the
lifecycle) go to zero replicas.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import serve

from vllama.config import ServingConfig
from vllama.models.names import ModelName
from vllama.models.registry import Registry
from vllama.models.resolve import ResolvedModel
from vllama.serve import stopping
from vllama.serve.admission import QueueBound
from vllama.serve.available import AvailableModels, AvailableSettings
from vllama.serve.channel import ChannelClient, channel_secret
from vllama.serve.directory import ModelDirectory
from vllama.serve.forward import RemoteModel
from vllama.serve.guard import GuardSettings, machine_hosts
from vllama.serve.http import build_http_app
from vllama.serve.lifecycle import Budget

logger = logging.getLogger("vllama")


@dataclass(frozen=True)
class IngressSettings:
    #: vllama's home directory (created models, blobs, pulled weights), as the driver sees it.
    home: str
    #: Per served model, by display name: its deployment's name and its routing policy.
    deployments: dict[str, str]
    prefix_routing: dict[str, bool]
    failover: bool = True
    #: Per served model, by display name: what it resolved to (its files describe it while it
    #: is not loaded).
    models: dict[str, ResolvedModel] = field(default_factory=dict)
    #: How long a request waits for its model to load.
    load_timeout_s: float = 300.0
    on_gpu: bool = False
    #: At most this many models loaded at once (None: as many as memory and GPUs take).
    max_loaded_models: int | None = None
    max_queue: int = 512
    #: Per served model, by display name: how many requests it takes before answering 503.
    bounds: dict[str, QueueBound] = field(default_factory=dict)
    #: The application's configuration and accelerator: how a model it does not list is
    #: deployed when it is available here and asked for (None: only the listed models).
    config: ServingConfig | None = None
    accelerator: str = "cpu"
    #: Who may call (`serve/guard.py`): keys, extra origins (the config's and the environment's
    #: at build time), the request size limit. The bind address comes from Serve's HTTP options.
    guard: GuardSettings = field(default_factory=GuardSettings)


@serve.ingress()
class Ingress:
    """Every route of the application; each model's requests go to its engine deployment."""

    def __init__(self, models: dict[str, Any], settings: IngressSettings) -> None:
        import ray

        context = serve.get_replica_context()
        app_name = context.app_name
        self._about = {"replica": context.replica_id.unique_id, "node": ray.get_runtime_context().get_node_id()}
        self._channel = ChannelClient(channel_secret(app_name))
        budget = Budget(settings.max_loaded_models, max_queue=settings.max_queue)
        remotes = {
            ModelName.parse(name).key: RemoteModel(
                name, handle, self._channel, app_name=app_name, deployment=settings.deployments[name],
                prefix_routing=settings.prefix_routing[name], failover=settings.failover,
                model=settings.models.get(name), on_gpu=settings.on_gpu, load_timeout_s=settings.load_timeout_s,
                budget=budget, bound=settings.bounds.get(name),
            )
            for name, handle in models.items()
        }
        budget.models = list(remotes.values())
        available = None
        if settings.config is not None and settings.config.available_models:
            available = AvailableModels(
                AvailableSettings(app_name=app_name, home=Path(settings.home), config=settings.config,
                                  accelerator=settings.accelerator, load_timeout_s=settings.load_timeout_s),
                self._channel, budget,
                configured={m.source: remotes[m.key] for m in settings.models.values() if m.key in remotes},
            )
        self._settings = settings
        self._guard = dataclasses.replace(settings.guard, bind_host=_bind_host(), own_hosts=machine_hosts(),
                                          stopping=stopping.watch(app_name))
        self._directory = ModelDirectory(remotes, Registry(settings.home), available)

    async def __serve_build_asgi_app__(self) -> Any:
        return build_http_app(self._directory, Path(self._settings.home), self._about, self._guard,
                              log_requests=self._settings.config is None or self._settings.config.access_log)


def _bind_host() -> str | None:
    """The address Serve's HTTP side listens on (`vllama serve --host`, `http_options.host` of a
    `serve run` config): a loopback one turns the Host check on. None when the controller does
    not say (no Host check)."""
    import ray
    from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE

    try:
        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        return ray.get(controller.get_http_config.remote(), timeout=30).host
    except Exception as exc:  # noqa: BLE001  # any failure: serve without the check, and say so
        logger.warning("the HTTP bind address is unknown (%s): requests' Host is not checked", exc)
        return None
