"""The engine replica: one Serve replica = one vLLM engine for one model (a GPU, or a set of them).

It serves no HTTP: the ingress (`serve/ingress.py`) forwards each request over the channel
(`serve/channel.py`, a TCP port this replica opens on its node), and the replica answers with the
bytes the client gets, built here where the tokens are made (`serve/local.py`), with the token
ids that let the ingress resume a stream elsewhere if this replica dies (`serve/forward.py`).
Serve's handle reaches it only to learn that port (`endpoint`).

Scaling, lifecycle and draining: the replica reports the requests it holds and until when it wants
its model loaded (`record_autoscaling_stats`, read by `serve/scaling.py`; the keep_alive rules are
`serve/lifecycle.py`); when Serve stops it (downscale, unload, redeploy, shutdown), it takes no new
requests and lets those in flight finish before its engine stops (`__del__`, within the
deployment's graceful shutdown timeout), while the ingress sends new ones elsewhere.

Health: Serve replaces a replica whose `check_health` fails. vLLM's own check only sees an engine
process that died; an engine that holds requests and stops giving outputs (a hung step, Ray issue
#61263) is alive to it, so the replica also fails its check after `stall_timeout_s` without an
output. Once the engine is dead, every call fails at once with `EngineDied`, which the ingress
answers by sending the request to another replica; the death is logged once, with its cause.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve

from vllama.engine.vllm_engine import ChatOptions, VllmEngine
from vllama.errors import EngineDied, VllamaError
from vllama.models.describe import ModelDescription, describe
from vllama.models.resolve import ResolvedModel, weights_dir
from vllama.serve import scaling, telemetry
from vllama.serve.channel import ChannelServer, channel_secret
from vllama.serve.hop import Call, Piece
from vllama.serve.lifecycle import KeepAlive
from vllama.serve.load_progress import LoadReporter
from vllama.serve.local import LocalModel

logger = logging.getLogger("vllama")


@dataclass(frozen=True)
class ReplicaSettings:
    accelerator: str
    stream_interval_ms: float
    #: Seconds an engine may hold requests without any output before the replica reports itself
    #: unhealthy (0: never).
    stall_timeout_s: float = 120.0
    #: How long a stopping replica lets its requests finish (the deployment's graceful
    #: shutdown timeout, less a margin for the engine's own stop).
    drain_timeout_s: float = 20.0
    #: A failed engine start fails the replica's constructor (the model loads at start: the
    #: server stops at once with the cause); otherwise the replica stays up to report it.
    fail_at_start: bool = True
    #: The model's keep_alive (seconds; negative: forever) when its requests do not say.
    keep_alive_s: float = -1.0
    #: The application whose ingress sends this replica its requests (its channel secret), when
    #: not this replica's own: a model deployed as an application of its own at its first use.
    channel_app: str | None = None


class EngineReplica:
    """Owns one engine; serves the requests the ingress forwards for its model."""

    #: Why the model's engine did not start (a replica of a model loaded on demand).
    _load_error: VllamaError | None = None

    async def __init__(self, model: ResolvedModel, settings: ReplicaSettings) -> None:
        self._settings = settings
        self._model = model
        context = serve.get_replica_context()
        self.replica = context.replica_id.unique_id
        self._keep_alive = KeepAlive(settings.keep_alive_s)
        # Where the load is, for `vllama serve` to show (per model: weights, compilation, ready).
        self._load = LoadReporter(settings.channel_app or context.app_name, model.name, self.replica)
        try:
            await self._load_model(context)
        except BaseException as exc:
            self._load.failed(_first_line(exc))
            raise
        if self._load_error is not None:
            self._load.failed(self._load_error.message)
        else:
            self._load.ready()

    async def _load_model(self, context: Any) -> None:
        model, settings = self._model, self._settings
        loading = time.monotonic()
        try:
            self._engine = await self._start_engine()
        except VllamaError as exc:
            telemetry.LOADS.inc(model=model.name, outcome="failed")
            if settings.fail_at_start:
                raise
            # A model loaded on demand: Serve would count a failing constructor toward giving up
            # on the deployment for good (no retry until it is deployed again). Started, this
            # replica answers the waiting requests with the cause, reports that it wants no
            # keep_alive, and the policy scales it away: the next request starts a new attempt.
            logger.error("model %s failed to load: %s", model.name, exc.message)
            self._load_error = exc
            self._keep_alive.touch(0.0)
            return
        telemetry.LOADS.inc(model=model.name, outcome="ok")
        telemetry.LOAD_SECONDS.observe(time.monotonic() - loading, model=model.name)
        description = describe(
            model,
            local_dir=weights_dir(self._source),
            hf_config=self._engine.hf_config,
            max_model_len=self._engine.max_model_len,
            chat_template=self._engine.chat_template,
            on_gpu=settings.accelerator == "gpu",
            embedding=self._engine.is_embedding,
            features=engine_features(self._engine),
        )
        self._local = LocalModel(self._engine, model, description)
        self._death_logged = False
        self._channel = ChannelServer(self._on_channel, channel_secret(settings.channel_app or context.app_name))
        self._endpoint = await self._channel.start(ray.util.get_node_ip_address())
        # What vLLM's own server does once started (vllm.utils.gc_utils): the ~760k objects of
        # the loaded engine (torch, transformers, vLLM) move out of the collector's sight. Left
        # in it, each full collection stopped this replica, every stream in it, for ~400 ms
        # (measured on the tiny model, 2 cores); frozen, none took over 15 ms.
        from vllm.utils.gc_utils import freeze_gc_heap

        freeze_gc_heap()

    async def _start_engine(self) -> VllmEngine:
        from vllama.serve.engine_metrics import RayEngineMetrics  # imports vLLM: engine replicas only

        self._source = self._model.local_source()
        chat = ChatOptions(tool_parser=self._model.tool_parser, think_default=self._model.think_default)
        return await VllmEngine.start(
            self._model.name, self._source, self._model.engine_kwargs, chat,
            stream_interval_s=self._settings.stream_interval_ms / 1000,
            stat_loggers=[RayEngineMetrics],
        )

    # --- called by the ingress -------------------------------------------------------------

    async def endpoint(self, pin: str | None = None) -> tuple[str, tuple[str, int]]:
        """This replica's id and channel endpoint. `pin`: read by the request router, which
        sends the call to that replica. A replica whose model failed to load raises the cause."""
        if self._load_error is not None:
            raise self._load_error
        return self.replica, self._endpoint

    def _on_channel(self, method: str, argument: Any) -> Any:
        if method == "stream":
            return self.stream(argument)
        if method == "once":
            return self.once(argument)
        if method == "describe":
            return self.describe()
        if method == "metrics":
            return self.metrics()
        if method == "keep_alive":
            return self.keep_alive(argument)
        return self.status()

    async def stream(self, call: Call) -> AsyncIterator[Piece]:
        self._check_alive()
        self._keep_alive.begin(call.keep_alive)
        try:
            async for piece in self._local.stream(call, self.replica):
                yield piece
        except EngineDied as exc:
            raise self._died(exc) from None
        finally:
            self._keep_alive.end()

    async def once(self, call: Call) -> bytes:
        self._check_alive()
        self._keep_alive.begin(call.keep_alive)
        try:
            return await self._local.once(call)
        except EngineDied as exc:
            raise self._died(exc) from None
        finally:
            self._keep_alive.end()

    async def keep_alive(self, seconds: float | None) -> float:
        """A load (or, with 0, unload) call for this model: restart its timer with `seconds`
        (None: the model's default). Returns when the model now expires."""
        self._keep_alive.touch(seconds)
        return self._keep_alive.expires_at()

    async def describe(self) -> ModelDescription:
        return self._local.description

    async def metrics(self) -> bytes:
        """This process's Prometheus metrics: vLLM's stat logger records there."""
        import prometheus_client

        return prometheus_client.generate_latest()

    async def status(self) -> dict[str, Any]:
        """This replica: its engine's requests (vLLM's own counts), prefix-cache hit rate, node."""
        state = "RUNNING" if not self._engine.dead else "ENGINE_DEAD"
        return {
            "replica": self.replica,
            "node": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "state": "STOPPING" if self._channel.stopping else state,
            "in_flight": self._channel.in_flight,
            "expires_at": self._keep_alive.expires_at(),
            "last_used": self._keep_alive.last_used,
            "active": self._keep_alive.active,
            **self._local.status(),
            **self._engine.cache_stats(),
        }

    # --- called by Serve ---------------------------------------------------------------------

    async def check_health(self) -> None:
        if self._load_error is not None:
            return  # healthy as a messenger: the policy scales it away
        if self._engine.dead:
            self._log_death()
            raise EngineDied(f"the engine of model '{self._model.name}' stopped: {self._engine.death_cause()}",
                             replica=self.replica)
        await self._engine.check_health()
        stalled = self._engine.stalled_for()
        if self._settings.stall_timeout_s and stalled > self._settings.stall_timeout_s:
            raise EngineDied(
                f"the engine of model '{self._model.name}' holds {self._engine.num_unfinished_requests()} "
                f"requests and gave no output for {stalled:.0f} s", replica=self.replica,
            )

    async def record_autoscaling_stats(self) -> dict[str, float]:
        if self._load_error is not None:
            return {scaling.IN_FLIGHT: 0.0, scaling.KEEP_UNTIL: self._keep_alive.keep_until()}
        # Serve asks every second: the replica's gauges are refreshed with it (telemetry.py).
        name = self._model.name
        telemetry.REPLICA_UP.set(1, model=name)
        telemetry.REPLICA_REQUESTS.set(self._channel.in_flight, model=name)
        telemetry.KV_CACHE_USAGE.set(self._engine.cache_stats().get("kv_cache_usage") or 0.0, model=name)
        return {scaling.IN_FLIGHT: float(self._channel.in_flight), scaling.KEEP_UNTIL: self._keep_alive.keep_until()}

    def __del__(self) -> Awaitable[None] | None:
        """Serve's stop (downscale, redeploy, shutdown): finish what is in flight, then stop the
        engine. Serve awaits what a destructor returns; the garbage collector (a process ending
        without Serve) gets no loop to drain on, and the engine stops at once."""
        channel = getattr(self, "_channel", None)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            channel = None
        if channel is None:
            self._stop_engine()
            return None
        return self._drain_then_stop(channel)

    async def _drain_then_stop(self, channel: ChannelServer) -> None:
        await channel.drain(self._settings.drain_timeout_s)
        self._stop_engine()

    def _stop_engine(self) -> None:
        load = getattr(self, "_load", None)
        if load is not None:
            self._load = None
            load.close()
        engine = getattr(self, "_engine", None)
        if engine is not None:
            self._engine = None
            engine.shutdown()

    # -------------------------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self._engine.dead:
            raise self._died(EngineDied(f"the engine of model '{self._model.name}' stopped"))

    def _died(self, exc: EngineDied) -> EngineDied:
        """The error to raise for a request this replica's dead engine failed: logged once, and
        naming this replica, so the ingress sends the request elsewhere."""
        self._log_death()
        return EngineDied(exc.message, replica=self.replica)

    def _log_death(self) -> None:
        """Once per replica, with the cause: not one traceback per request that it failed."""
        if not self._death_logged:
            self._death_logged = True
            logger.error("engine of model %s stopped: %s; Serve will replace this replica",
                         self._model.name, self._engine.death_cause())


def engine_features(engine: VllmEngine) -> list[str]:
    """What `capabilities` in /api/show lists beside completion, from what the engine can do."""
    flags = {"tools": engine.tools, "insert": engine.fim_tokens is not None,
             "vision": engine.is_multimodal, "thinking": engine.thinks}
    return [name for name, present in flags.items() if present]


def _first_line(exc: BaseException) -> str:
    text = (getattr(exc, "message", None) or str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__
