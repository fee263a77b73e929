"""Models the configuration does not list but this machine has (`models/available.py`): listed
by /api/tags, described by /api/show, and loaded by their first request, as Ollama serves
whatever has been pulled. `vllama pull X`, or a model directory copied under
`$VLLAMA_HOME/models`, and then a request for X serves it with no restart.

A Serve application's deployments are fixed when it is deployed, so each such model becomes a
Serve application of its own (`<application>.<model>`, no HTTP route: only the ingress reaches
it, over the channel, with the ingress application's secret), deployed by the first ingress
replica that needs it. From then on it is what a configured `load: demand` model is: its
deployment starts with no replica, the first request's queued call starts one (`lifecycle.py`),
keep_alive scales it back to zero (the application stays, empty, ready for the next load), and
the budget counts it. Ingress replicas agree on who deploys through Ray's key-value store, and
one that finds the application deployed uses it as it is.

Their applications go when Serve does: `vllama serve` deletes them as it stops, `serve shutdown`
too. A redeploy of a `serve deploy` config leaves them (Serve deletes only the applications a
config deployed).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from unittest import mock

from vllama.config import ModelConfig, ServingConfig
from vllama.models.available import available_models, find_available
from vllama.models.describe import ModelDescription, describe_unloaded
from vllama.models.names import ModelName
from vllama.models.registry import CreatedModel
from vllama.models.resolve import ResolvedModel, resolve, weights_dir
from vllama.serve import lifecycle
from vllama.serve.admission import queue_bound
from vllama.serve.channel import ChannelClient
from vllama.serve.forward import RemoteModel
from vllama.serve.hop import Api
from vllama.serve.targets import ModelTarget

logger = logging.getLogger("vllama")

#: How long another ingress replica's claim to deploy a model holds before this one deploys it.
CLAIM_S = 60.0
#: How long a listing of the available models is reused (each one reads directories).
LISTING_TTL_S = 2.0


def application_name(app_name: str, model_name: str) -> str:
    """The Serve application of a model deployed at its first use: `vllama.my-model:latest`."""
    return f"{app_name}.{model_name.replace('/', '--')}"


@dataclasses.dataclass(frozen=True)
class AvailableSettings:
    """What the ingress needs to deploy an available model as the configuration would have."""

    app_name: str
    home: Path
    config: ServingConfig
    accelerator: str
    load_timeout_s: float


class AvailableModels:
    """The available models this ingress replica has been asked about, each an `AvailableTarget`."""

    def __init__(
        self, settings: AvailableSettings, channel: ChannelClient, budget: lifecycle.Budget,
        configured: dict[str, ModelTarget] | None = None,
    ) -> None:
        self.settings = settings
        self.channel = channel
        self.budget = budget
        #: The configured models by source: an available model with the same weights is one of
        #: them under another name (`all-minilm:22m` when `all-minilm:latest` is configured).
        self._configured = configured or {}
        self._targets: dict[str, AvailableTarget] = {}
        self._listing: tuple[float, list[ModelConfig]] = (0.0, [])

    def find(self, name: str) -> ModelTarget | None:
        """Where requests for `name` go when it is an available model, or None: its own target,
        or the configured model with the same weights."""
        config = find_available(name, self.settings.home)
        if config is None:
            return None
        target = self._target(config)
        return self._configured.get(target.source, target)

    def listed(self) -> list[AvailableTarget]:
        """Every available model that no configured one serves (for /api/tags and /api/ps)."""
        at, configs = self._listing
        if time.monotonic() - at > LISTING_TTL_S:
            configs = available_models(self.settings.home)
            self._listing = (time.monotonic(), configs)
        targets = [self._target(c) for c in configs]
        return [t for t in targets if t.source not in self._configured]

    def _target(self, config: ModelConfig) -> AvailableTarget:
        key = ModelName.parse(config.name).key
        if (target := self._targets.get(key)) is None:
            target = self._targets[key] = AvailableTarget(config, self)
        return target


class AvailableTarget:
    """An available model as the ingress reaches it (`targets.ModelTarget`): described from its
    files until its application exists, then a `RemoteModel` of that application."""

    def __init__(self, config: ModelConfig, owner: AvailableModels) -> None:
        self.name = ModelName.parse(config.name).display
        self._config = config
        self._owner = owner
        self._app = application_name(owner.settings.app_name, self.name)
        self._remote: RemoteModel | None = None
        self._deploying: asyncio.Future[RemoteModel] | None = None
        self._resolved: ResolvedModel | None = None

    # --- requests: deploy first -----------------------------------------------------------------

    async def stream(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> AsyncIterator[bytes]:
        remote = await self._ready()
        async for piece in remote.stream(api, kind, body, parsed, arrival_ns, echo, created):
            yield piece

    async def once(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> bytes:
        return await (await self._ready()).once(api, kind, body, parsed, arrival_ns, echo, created)

    async def load(self, keep_alive: float | None) -> None:
        await (await self._ready()).load(keep_alive)

    # --- what operators see: never deploys ------------------------------------------------------

    async def describe(self) -> ModelDescription:
        if (remote := await self._existing()) is not None:
            return await remote.describe()
        model = self._model()
        return describe_unloaded(model, weights_dir(model.source), on_gpu=self._owner.settings.accelerator == "gpu")

    async def status(self) -> dict[str, Any]:
        if (remote := await self._existing()) is not None:
            return await remote.status()
        return {"engine": {}, "replicas": []}

    def replica_count(self) -> int:
        return self._remote.replica_count() if self._remote is not None else 0

    async def metrics(self) -> list[tuple[str, bytes]]:
        return await self._remote.metrics() if self._remote is not None else []

    async def unload(self) -> None:
        if (remote := await self._existing()) is not None:
            await remote.unload()

    async def replica_states(self) -> dict[str, int]:
        remote = await self._existing()
        return await remote.replica_states() if remote is not None else {}

    async def expires_at(self) -> float:
        remote = await self._existing()
        return await remote.expires_at() if remote is not None else time.time()

    @property
    def deployed(self) -> bool:
        return self._remote is not None

    @property
    def source(self) -> str:
        """Where its weights are, as the configuration would resolve it."""
        return self._model().source

    # --- its application ------------------------------------------------------------------------

    def _model(self) -> ResolvedModel:
        if self._resolved is None:
            self._resolved = resolve(self._config, self._owner.settings.accelerator)
        return self._resolved

    async def _existing(self) -> RemoteModel | None:
        """Its RemoteModel when its application exists (deployed by any ingress replica)."""
        if self._remote is None and await asyncio.to_thread(self._application_exists):
            await self._adopt()
        return self._remote

    async def _ready(self) -> RemoteModel:
        """Its RemoteModel, its application deployed first if need be (once, shared by the
        requests that arrive meanwhile; a failed deploy is tried again by the next request)."""
        if self._remote is not None:
            return self._remote
        if self._deploying is None or (self._deploying.done() and self._deploying.exception() is not None):
            self._deploying = asyncio.ensure_future(self._deploy())
        return await asyncio.shield(self._deploying)

    async def _deploy(self) -> RemoteModel:
        deadline = time.monotonic() + self._owner.settings.load_timeout_s
        while not await asyncio.to_thread(self._application_exists):
            if await asyncio.to_thread(self._claim):
                logger.info("deploying model %s, available here but not configured, as application %s",
                            self.name, self._app)
                try:
                    await asyncio.to_thread(self._deploy_application)
                except BaseException:
                    await asyncio.to_thread(self._release_claim)  # the next request tries again
                    raise
                break
            if time.monotonic() > deadline:  # another ingress replica claimed it and never deployed
                raise TimeoutError(f"model '{self.name}' was not deployed within the load timeout")
            await asyncio.sleep(0.5)
        return await self._adopt()

    async def _adopt(self) -> RemoteModel:
        if self._remote is None:
            from ray import serve

            from vllama.serve.app import deployment_name

            owner = self._owner
            routing = self._config.routing or owner.settings.config.routing
            # The first handle of a process looks Serve's controller up: off the event loop.
            handle = await asyncio.to_thread(serve.get_deployment_handle, deployment_name(self.name), self._app)
            if self._remote is not None:  # adopted meanwhile
                return self._remote
            self._remote = RemoteModel(
                self.name, handle, owner.channel, app_name=self._app, deployment=deployment_name(self.name),
                prefix_routing=routing == "prefix", failover=owner.settings.config.failover, model=self._model(),
                on_gpu=owner.settings.accelerator == "gpu", load_timeout_s=owner.settings.load_timeout_s,
                budget=owner.budget, bound=queue_bound(self._model(), self._config.deployment, owner.settings.config.max_queue),
            )
            owner.budget.add(self._remote)
        return self._remote

    def _application_exists(self) -> bool:
        from ray import serve

        return self._app in serve.status().applications

    def _claim(self) -> bool:
        """Whether this ingress replica deploys the model: the first to claim it, or any once a
        claim is older than `CLAIM_S` with no application (its claimer went away)."""
        from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_put

        key = f"vllama/{self._app}/deploying".encode()
        now = str(time.time()).encode()
        if not _internal_kv_put(key, now, overwrite=False, namespace="vllama"):
            return True
        claimed = _internal_kv_get(key, namespace="vllama")
        if claimed is None or time.time() - float(claimed) > CLAIM_S:
            _internal_kv_put(key, now, overwrite=True, namespace="vllama")
            return True
        return False

    def _release_claim(self) -> None:
        from ray.experimental.internal_kv import _internal_kv_del

        _internal_kv_del(f"vllama/{self._app}/deploying".encode(), namespace="vllama")

    def _deploy_application(self) -> None:
        # Imported here: the engine replica's module is what Serve deploys; the ingress only
        # names it (it loads no engine module: vLLM is imported by the replica, at its start).
        from ray import serve

        from vllama.serve.app import engine_application, with_cpu_memory_shares

        settings = self._owner.settings
        model = self._model()
        if settings.accelerator == "cpu":  # one engine in what is free now: loaded models hold theirs
            model = with_cpu_memory_shares([model])[0]
        application = engine_application(
            model, self._config, settings.config, settings.accelerator, channel_app=settings.app_name,
        )
        # Under HAProxy, Serve refuses a custom request router on an application's ingress
        # deployment (HAProxy would pass it by). This application has no route: no HTTP reaches
        # it, only the ingress's calls through the router, so the check is lifted for its build
        # (it is made in this process only; the controller has no such check).
        from ray.serve._private import build_app

        with mock.patch.object(build_app, "RAY_SERVE_ENABLE_HA_PROXY", False):
            serve.run(application, name=self._app, route_prefix=None)
