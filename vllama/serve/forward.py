"""The ingress's side of the hop: pick one of a model's engine replicas, send it the request over
the channel (`channel.py`), relay the answer, and go on elsewhere when that replica fails.

Which replicas exist is Serve's to say: the running replicas of the model's deployment, as
Serve's request router in this process knows them (`routing.replicas_of`), each asked once for
its channel endpoint. Which one takes a request is `routing.prefer` (prefix affinity, with load
as the tie-breaker) or the less loaded of two, counting this ingress replica's requests in flight.

Failover. A replica can fail a request in three ways: its process died (the connection ends),
its engine died (it answers `EngineDied`), or it is stopping (`ReplicaStopping`). Then:
- nothing sent to the client yet (a whole answer, or a stream before its first line): the
  request is sent again, to another replica;
- a stream under way: if the replica said it can be resumed (our own Ollama path), another
  replica gets the same request with the tokens the client already has appended to the prompt,
  and the rest of the token budget; its lines follow the ones sent, and its final object counts
  the whole answer. The client sees one stream. Otherwise (vLLM's /v1 handlers; tools, thoughts,
  images: parser state that cannot move) the stream ends with an in-band error line, never a
  silent cut or a clean `done`.
At most `MAX_ATTEMPTS` replicas are tried; a replica that failed is avoided for a while.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from vllama.errors import EngineDied, EngineFailed, Overloaded, VllamaError
from vllama.models.describe import ModelDescription, describe_unloaded
from vllama.models.registry import CreatedModel
from vllama.models.resolve import ResolvedModel, cpu_engine_bytes, weights_dir
from vllama.ollama_api.schema import ChatRequest, GenerateRequest
from vllama.serve import lifecycle, request_log, routing, telemetry
from vllama.serve.admission import Admission, QueueBound
from vllama.serve.channel import ChannelClient
from vllama.serve.hop import Api, Call, Resume, StreamStart
from vllama.translate.prefixes import PrefixKey, ollama_prefix_key, openai_prefix_key

logger = logging.getLogger("vllama")

#: Replicas tried for one request before its failure is the client's answer.
MAX_ATTEMPTS = 3
#: How long a replica that failed a request is passed over (Serve replaces or removes it meanwhile).
SUSPECT_S = 10.0
#: How long a request waits for a replica to exist (one being replaced, or its model loading),
#: unless the application says (`load_timeout`).
REPLICA_WAIT_S = 300.0
#: How often a request waiting for its model to load asks Serve whether the load failed.
LOAD_POLL_S = 1.0
#: How vllama's messages for a model's bad settings begin (`engine/vllm_engine.py`): a load
#: that fails with one answers 400, as Ollama does for a bad option.
BAD_SETTING = ("invalid engine settings", "unknown vLLM engine argument", "engine_kwargs may not set", "chat settings")
#: How long an unload may take: the replicas finish their requests, then their engines stop.
UNLOAD_TIMEOUT_S = 120.0
#: How long a status answer may take (a busy engine can hold its replica's event loop).
STATUS_TIMEOUT_S = 10.0

Endpoint = tuple[str, int]


class RemoteModel:
    """One model, as the ingress reaches it: its deployment's replicas."""

    def __init__(
        self, name: str, handle: Any, channel: ChannelClient, *, app_name: str, deployment: str,
        prefix_routing: bool, failover: bool, model: ResolvedModel | None = None, on_gpu: bool = False,
        load_timeout_s: float = REPLICA_WAIT_S, budget: lifecycle.Budget | None = None,
        bound: QueueBound | None = None,
    ) -> None:
        self.name = name
        self._admission = Admission(bound)
        self._budget = budget
        self._model = model
        self._on_gpu = on_gpu
        self._load_timeout_s = load_timeout_s
        self._handle = handle.options(_by_reference=False)
        self._channel = channel
        self._app_name = app_name
        self._deployment = deployment
        self._prefix_routing = prefix_routing
        self._failover = failover
        self._memory = routing.AffinityMemory()
        self._endpoints: dict[str, Endpoint] = {}
        self._resolving: dict[str, asyncio.Future[Endpoint]] = {}
        self._in_flight: dict[str, int] = {}
        self._suspect: dict[str, float] = {}
        self._description: ModelDescription | None = None
        self._loading: asyncio.Future[tuple[str, Any]] | None = None
        self._describing = asyncio.Lock()
        self._needs: lifecycle.Room | None = None

    # --- requests -------------------------------------------------------------------------------

    def _call(self, api: Api, kind: str, body: bytes, parsed: Any, echo: str, created: CreatedModel | None) -> Call:
        keep_alive = getattr(parsed, "keep_alive", None)  # Ollama's requests; /v1 has none
        record = request_log.current()
        if record is not None:
            record.model = self.name
        return Call(api, kind, body, echo, created=created, prefix=self._prefix(api, parsed), keep_alive=keep_alive,
                    request_id=record.request_id if record is not None else "")

    def _prefix(self, api: Api, parsed: Any) -> PrefixKey | None:
        if not self._prefix_routing:
            return None
        if isinstance(parsed, GenerateRequest | ChatRequest):
            return ollama_prefix_key(parsed)
        if api == "openai" and isinstance(parsed, dict):
            return openai_prefix_key(parsed)
        return None

    async def stream(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> AsyncIterator[bytes]:
        call = self._call(api, kind, body, parsed, echo, created)
        self._admit()
        try:
            sent: list[int] = []  # the generated tokens the client has
            start: StreamStart | None = None
            first_token_ns = 0
            answered = done = False
            for _ in range(MAX_ATTEMPTS):
                replica = await self._choose(call)
                try:
                    endpoint = await self._take(replica)
                    call = dataclasses.replace(call, elapsed_ns=time.monotonic_ns() - arrival_ns)
                    self._forwarding(replica)
                    async for piece in self._channel.stream(endpoint, call):
                        if piece.start is not None:
                            start = piece.start
                        if piece.token_ids:
                            first_token_ns = first_token_ns or time.monotonic_ns() - arrival_ns
                            sent.extend(piece.token_ids)
                        done = done or piece.done
                        if piece.data:
                            answered = True
                            yield piece.data
                    return
                except Exception as exc:
                    if done:  # the answer is complete: what failed after it does not concern the client
                        return
                    failure = self._failure(replica, exc)
                    if answered:
                        if not (self._failover and start is not None and start.resumable):
                            raise EngineDied(f"the engine serving model '{self.name}' stopped during this answer") from None
                        call = dataclasses.replace(call, resume=Resume(tuple(sent), start, first_token_ns))
                        logger.warning("resuming a stream of %s elsewhere after %d tokens (%s)", self.name, len(sent), failure)
                    call = dataclasses.replace(call, avoid=(*call.avoid, replica))
                    telemetry.FAILOVERS.inc(model=self.name)
                finally:
                    self._in_flight[replica] -= 1
            raise EngineDied(f"the engines of model '{self.name}' failed this request {MAX_ATTEMPTS} times")
        finally:
            self._leave()

    async def once(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> bytes:
        call = self._call(api, kind, body, parsed, echo, created)
        self._admit()
        try:
            for _ in range(MAX_ATTEMPTS):
                replica = await self._choose(call)
                try:
                    endpoint = await self._take(replica)
                    call = dataclasses.replace(call, elapsed_ns=time.monotonic_ns() - arrival_ns)
                    self._forwarding(replica)
                    return bytes(await self._channel.call(endpoint, "once", call))
                except Exception as exc:
                    self._failure(replica, exc)
                    call = dataclasses.replace(call, avoid=(*call.avoid, replica))
                    telemetry.FAILOVERS.inc(model=self.name)
                finally:
                    self._in_flight[replica] -= 1
            raise EngineDied(f"the engines of model '{self.name}' failed this request {MAX_ATTEMPTS} times")
        finally:
            self._leave()

    def _admit(self) -> None:
        """Let the request in, or answer 503 at once when the model holds all it may
        (`admission.py`)."""
        try:
            self._admission.enter(self.replica_count())
        except Overloaded:
            telemetry.REFUSED.inc(model=self.name)
            raise
        telemetry.ADMITTED.set(self._admission.admitted, model=self.name)

    def _leave(self) -> None:
        self._admission.leave()
        telemetry.ADMITTED.set(self._admission.admitted, model=self.name)

    def _forwarding(self, replica: str) -> None:
        telemetry.FORWARDED.inc(model=self.name)
        request_log.note_replica(replica)

    async def _take(self, replica: str) -> Endpoint:
        """Count a request in flight on `replica` (the caller's `finally` gives it back), and
        its endpoint."""
        self._in_flight[replica] = self._in_flight.get(replica, 0) + 1
        return await self._endpoint(replica)

    def _failure(self, replica: str, exc: Exception) -> str:
        """Note a replica's failure; re-raise what is the request's own error (a bad request)."""
        if not isinstance(exc, EngineDied | ConnectionError | OSError | EOFError):
            raise exc  # the request's own error (a bad request): no other replica would do better
        self._suspect[replica] = time.monotonic() + SUSPECT_S
        described = f"{type(exc).__name__}: {exc}"
        logger.warning("replica %s of %s failed a request (%s)", replica, self.name, described)
        return described

    # --- which replica --------------------------------------------------------------------------

    async def _choose(self, call: Call) -> str:
        """A replica for this call: prefix affinity or the less loaded of two, among the running
        replicas this request has not failed on, preferring ones not suspect."""
        replicas = await self._running()
        now = time.monotonic()
        fresh = [r for r in replicas if r not in call.avoid]
        healthy = [r for r in fresh if self._suspect.get(r, 0) <= now]
        pool = healthy or fresh or replicas
        chosen = None
        if call.prefix is not None and len(pool) > 1:
            chosen = routing.prefer(call.prefix, pool, self._in_flight, self._memory)
        if chosen is None:
            pair = pool if len(pool) <= 2 else random.sample(pool, 2)
            chosen = min(pair, key=lambda r: self._in_flight.get(r, 0))
        if call.prefix is not None:
            self._memory.record(call.prefix.affinity, chosen)
        return chosen

    async def _running(self) -> list[str]:
        """The running replicas' ids. With none known, a call through Serve's handle waits for
        one (up to the load timeout): it starts the handle's router on the first request, and
        it is the queued request Serve's autoscaler sees when the model is not loaded (zero
        replicas), which starts one (`lifecycle.py`)."""
        replicas = [r.replica_id.unique_id for r in routing.replicas_of(self._app_name, self._deployment)]
        if replicas:
            if len(self._endpoints) > 2 * len(replicas) + 8:  # replicas that are gone
                self._endpoints = {r: e for r, e in self._endpoints.items() if r in replicas}
            return replicas
        # Requests that find no replica share one wait (one request queued at Serve's handle,
        # one engine start, one look at Serve's status per second); a waiter that goes away
        # leaves it to the others.
        if self._loading is None or self._loading.done():
            self._loading = asyncio.ensure_future(self._wait_for_replica())
        replica, endpoint = await asyncio.shield(self._loading)
        self._endpoints[replica] = tuple(endpoint)
        return [r.replica_id.unique_id for r in routing.replicas_of(self._app_name, self._deployment)] or [replica]

    async def _wait_for_replica(self) -> tuple[str, Any]:
        """One replica's id and endpoint, through Serve's handle: at once when one runs, else
        once the model has loaded. A load that Serve gave up on (the replica's constructor
        failed: a bad setting, too little memory) ends the wait with its explained cause."""
        if self._budget is not None and not await self.replica_states():  # a load: room for it first
            await self._budget.make_room(self, self._load_timeout_s)
        response = self._handle.endpoint.remote()
        waiting = asyncio.ensure_future(response)  # a DeploymentResponse is awaitable
        deadline = time.monotonic() + self._load_timeout_s
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=LOAD_POLL_S)
                if done and waiting.exception() is None:
                    return waiting.result()
                if done and (failed := self._load_failed(waiting.exception())) is not None:
                    raise failed  # the replica started to say why its engine did not
                failure = await asyncio.to_thread(lifecycle.load_failure, self._app_name, self._deployment)
                if failure is not None:  # Serve gave up on the replicas' constructor
                    raise self._load_failed(failure)
                if done:  # Serve refused the call for no cause it states
                    raise EngineFailed(f"model '{self.name}' failed to load: {waiting.exception()}")
                if time.monotonic() > deadline:
                    raise EngineDied(f"model '{self.name}' did not load within {self._load_timeout_s:g} s (load_timeout)")
        finally:
            if not waiting.done():
                waiting.cancel()
                response.cancel()

    def _load_failed(self, cause: BaseException | str | None) -> EngineFailed | None:
        """The client's error for a load that failed with `cause` (a message, or the error an
        engine replica raised for it; None for any other error): 400 for a bad setting."""
        cause = getattr(cause, "cause", None) or cause  # Ray wraps what a replica raised
        if isinstance(cause, VllamaError):
            cause = cause.message
        if not isinstance(cause, str):
            return None
        status = 400 if cause.startswith(BAD_SETTING) else 500
        return EngineFailed(f"model '{self.name}' failed to load: {cause}", status_code=status)

    async def _loaded_replicas(self) -> list[str]:
        """The running replicas, without loading the model when it has none."""
        known = [r.replica_id.unique_id for r in routing.replicas_of(self._app_name, self._deployment)]
        if known or routing.has_router(self._app_name, self._deployment):
            # Its router's word, not the controller's: the controller can still list a replica
            # the router knows is stopping, and a call through the handle would load it again.
            return known
        # This ingress replica's router starts with its first request for the model: until then
        # Serve's controller knows whether replicas run.
        if (await self.replica_states()).get("RUNNING"):
            return await self._running()
        return []

    async def replica_states(self) -> dict[str, int]:
        """The deployment's replicas by state, as Serve's controller knows them."""
        return await asyncio.to_thread(lifecycle.deployment_replicas, self._app_name, self._deployment)

    # --- lifecycle ------------------------------------------------------------------------------

    async def load(self, keep_alive: float | None) -> None:
        """Ollama's load call (no prompt): the model loaded, waited for, its timer restarted with
        `keep_alive` (None: the model's own)."""
        replicas = await self._running()
        await asyncio.gather(*(self._set_keep_alive(r, keep_alive) for r in replicas))

    async def unload(self) -> None:
        """`keep_alive: 0` with no prompt: every replica's timer runs out now; returns once Serve
        has stopped them all (their requests in flight finish first)."""
        started = time.monotonic()
        replicas = await self._loaded_replicas()
        await asyncio.gather(*(self._set_keep_alive(r, 0.0) for r in replicas))
        if not await lifecycle.wait_unloaded(self._app_name, self._deployment, UNLOAD_TIMEOUT_S):
            raise EngineDied(f"model '{self.name}' did not unload within {UNLOAD_TIMEOUT_S:g} s")
        if replicas:
            telemetry.UNLOADS.inc(model=self.name)
            telemetry.UNLOAD_SECONDS.observe(time.monotonic() - started, model=self.name)

    async def _set_keep_alive(self, replica: str, keep_alive: float | None) -> float | None:
        try:
            endpoint = await self._endpoint(replica)
            return await asyncio.wait_for(self._channel.call(endpoint, "keep_alive", keep_alive), STATUS_TIMEOUT_S)
        except Exception as exc:  # a replica that is going away needs no timer
            logger.warning("replica %s of %s: keep_alive not set (%s)", replica, self.name, exc)
            return None

    def needs(self) -> lifecycle.Room:
        """What one replica takes, for the budget: its GPUs; on a CPU, its host memory."""
        if self._needs is None:
            if self._model is None:
                self._needs = lifecycle.Room()
            elif self._on_gpu:
                self._needs = lifecycle.Room(gpus=float(self._model.parallel_size))
            else:
                import psutil

                self._needs = lifecycle.Room(memory_bytes=cpu_engine_bytes(self._model, psutil.virtual_memory().total))
        return self._needs

    async def usage(self) -> lifecycle.Usage:
        """Loaded (or loading), busy, last used: what the budget weighs (`lifecycle.Budget`)."""
        states = await self.replica_states()
        if not states:
            return lifecycle.Usage(loaded=False)
        if not states.get("RUNNING"):
            return lifecycle.Usage(loaded=True, busy=True)  # loading (or stopping)
        rows = await asyncio.gather(*(self._replica_status(r) for r in await self._loaded_replicas()))
        busy = any(r.get("active", 1) for r in rows)  # a replica that cannot answer counts as busy
        return lifecycle.Usage(loaded=True, busy=busy, last_used=max((r.get("last_used", 0.0) for r in rows), default=0.0))

    async def expires_at(self) -> float:
        """When the model unloads if no request comes: the latest of its replicas' timers."""
        replicas = await self._loaded_replicas()
        rows = await asyncio.gather(*(self._replica_status(r) for r in replicas))
        return max((r["expires_at"] for r in rows if "expires_at" in r), default=time.time())

    async def _endpoint(self, replica: str) -> Endpoint:
        """The replica's channel endpoint, asked of it once (Serve routes the call to it)."""
        if (known := self._endpoints.get(replica)) is not None:
            return known
        pending = self._resolving.get(replica)
        if pending is None:
            pending = asyncio.ensure_future(self._ask_endpoint(replica))
            self._resolving[replica] = pending
        try:
            endpoint = await asyncio.shield(pending)
        finally:
            if pending.done():
                self._resolving.pop(replica, None)
        self._endpoints[replica] = endpoint
        return endpoint

    async def _ask_endpoint(self, replica: str) -> Endpoint:
        response = self._handle.endpoint.remote(pin=replica)
        try:
            _, endpoint = await asyncio.wait_for(response, STATUS_TIMEOUT_S)
        except Exception as exc:
            response.cancel()
            if (failed := self._load_failed(exc)) is not None:
                raise failed from None  # a replica whose model failed to load, not yet scaled away
            raise ConnectionError(f"replica {replica} did not give its endpoint: {exc}") from None
        return tuple(endpoint)

    # --- what operators see ---------------------------------------------------------------------

    async def describe(self) -> ModelDescription:
        """The model as its engine describes it (once loaded: static from then on), or from its
        files while it is not loaded (asking would load it)."""
        async with self._describing:  # one handle call at a time (see `routing`)
            if self._description is None:
                replicas = await self._loaded_replicas()
                if not replicas and self._model is not None:
                    return describe_unloaded(self._model, weights_dir(self._model.source), on_gpu=self._on_gpu)
                replica = replicas[0] if replicas else (await self._running())[0]
                try:
                    self._description = await self._channel.call(await self._endpoint(replica), "describe", None)
                except EngineFailed:  # its load failed: what its files say
                    if self._model is None:
                        raise
                    return describe_unloaded(self._model, weights_dir(self._model.source), on_gpu=self._on_gpu)
        return self._description

    def replica_count(self) -> int:
        """Running replicas, as this ingress replica's router knows them."""
        return len(routing.replicas_of(self._app_name, self._deployment))

    async def status(self) -> dict[str, Any]:
        """Every running replica's own status, and the model's totals (none while not loaded)."""
        replicas = await self._loaded_replicas()
        rows = list(await asyncio.gather(*(self._replica_status(r) for r in replicas)))
        rows.sort(key=lambda r: r["replica"])
        totals = {
            key: sum(r.get(key) or 0 for r in rows)
            for key in ("unfinished_requests", "completed_requests", "aborted_requests",
                        "prefix_cache_queries", "prefix_cache_hits")
        }
        # The fullest replica's KV cache: a fraction per replica, which a sum would not be.
        totals["kv_cache_usage"] = max((r.get("kv_cache_usage") or 0 for r in rows), default=0)
        engine = next((r["engine"] for r in rows if "engine" in r), {})
        bound = self._admission.bound
        admission = {"admitted_here": self._admission.admitted,
                     "capacity_here": bound.capacity(self.replica_count()) if bound else None}
        return {**totals, **admission, "engine": engine, "replicas": rows}

    async def metrics(self) -> list[tuple[str, bytes]]:
        """Each running replica's Prometheus exposition (those that answer)."""
        replicas = await self._loaded_replicas()
        results = await asyncio.gather(*(self._replica_metrics(r) for r in replicas))
        return [(r, text) for r, text in zip(replicas, results, strict=True) if text is not None]

    async def _replica_metrics(self, replica: str) -> bytes | None:
        try:
            return bytes(await asyncio.wait_for(self._channel.call(await self._endpoint(replica), "metrics", None),
                                                STATUS_TIMEOUT_S))
        except Exception:  # a replica that cannot answer is left out of this scrape
            return None

    async def _replica_status(self, replica: str) -> dict[str, Any]:
        try:
            endpoint = await self._endpoint(replica)
            row = await asyncio.wait_for(self._channel.call(endpoint, "status", None), STATUS_TIMEOUT_S)
            return {**row, "in_flight_here": self._in_flight.get(replica, 0)}
        except Exception as exc:  # a replica that cannot answer is shown as such
            return {"replica": replica, "state": "UNREACHABLE", "error": f"{type(exc).__name__}: {exc}"}
