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

from vllama.errors import EngineDied
from vllama.models.describe import ModelDescription
from vllama.models.registry import CreatedModel
from vllama.ollama_api.schema import ChatRequest, GenerateRequest
from vllama.serve import routing
from vllama.serve.channel import ChannelClient
from vllama.serve.hop import Api, Call, Resume, StreamStart
from vllama.translate.prefixes import PrefixKey, ollama_prefix_key, openai_prefix_key

logger = logging.getLogger("vllama")

#: Replicas tried for one request before its failure is the client's answer.
MAX_ATTEMPTS = 3
#: How long a replica that failed a request is passed over (Serve replaces or removes it meanwhile).
SUSPECT_S = 10.0
#: How long a request waits for a replica to exist (one being replaced, or starting).
REPLICA_WAIT_S = 120.0
#: How long a status answer may take (a busy engine can hold its replica's event loop).
STATUS_TIMEOUT_S = 10.0

Endpoint = tuple[str, int]


class RemoteModel:
    """One model, as the ingress reaches it: its deployment's replicas."""

    def __init__(
        self, name: str, handle: Any, channel: ChannelClient, *, app_name: str, deployment: str,
        prefix_routing: bool, failover: bool,
    ) -> None:
        self.name = name
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
        self._describing = asyncio.Lock()

    # --- requests -------------------------------------------------------------------------------

    def _call(self, api: Api, kind: str, body: bytes, parsed: Any, echo: str, created: CreatedModel | None) -> Call:
        return Call(api, kind, body, echo, created=created, prefix=self._prefix(api, parsed))

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
        sent: list[int] = []  # the generated tokens the client has
        start: StreamStart | None = None
        first_token_ns = 0
        answered = done = False
        for _ in range(MAX_ATTEMPTS):
            replica = await self._choose(call)
            try:
                endpoint = await self._take(replica)
                call = dataclasses.replace(call, elapsed_ns=time.monotonic_ns() - arrival_ns)
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
            finally:
                self._in_flight[replica] -= 1
        raise EngineDied(f"the engines of model '{self.name}' failed this request {MAX_ATTEMPTS} times")

    async def once(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> bytes:
        call = self._call(api, kind, body, parsed, echo, created)
        for _ in range(MAX_ATTEMPTS):
            replica = await self._choose(call)
            try:
                endpoint = await self._take(replica)
                call = dataclasses.replace(call, elapsed_ns=time.monotonic_ns() - arrival_ns)
                return bytes(await self._channel.call(endpoint, "once", call))
            except Exception as exc:
                self._failure(replica, exc)
                call = dataclasses.replace(call, avoid=(*call.avoid, replica))
            finally:
                self._in_flight[replica] -= 1
        raise EngineDied(f"the engines of model '{self.name}' failed this request {MAX_ATTEMPTS} times")

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
        one (up to REPLICA_WAIT_S): it starts the handle's router on the first request, and it is
        the queued request Serve's autoscaler sees when a deployment has no replica."""
        replicas = [r.replica_id.unique_id for r in routing.replicas_of(self._app_name, self._deployment)]
        if replicas:
            if len(self._endpoints) > 2 * len(replicas) + 8:  # replicas that are gone
                self._endpoints = {r: e for r, e in self._endpoints.items() if r in replicas}
            return replicas
        response = self._handle.endpoint.remote()
        try:
            replica, endpoint = await asyncio.wait_for(response, REPLICA_WAIT_S)
        except TimeoutError:
            response.cancel()
            raise EngineDied(f"no replica of model '{self.name}' is running") from None
        self._endpoints[replica] = tuple(endpoint)
        return [r.replica_id.unique_id for r in routing.replicas_of(self._app_name, self._deployment)] or [replica]

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
            raise ConnectionError(f"replica {replica} did not give its endpoint: {exc}") from None
        return tuple(endpoint)

    # --- what operators see ---------------------------------------------------------------------

    async def describe(self) -> ModelDescription:
        async with self._describing:  # one handle call at a time (see `routing`)
            if self._description is None:  # the same for every replica, and static once an engine is up
                replica = (await self._running())[0]
                self._description = await self._channel.call(await self._endpoint(replica), "describe", None)
        return self._description

    def replica_count(self) -> int:
        """Running replicas, as this ingress replica's router knows them."""
        return len(routing.replicas_of(self._app_name, self._deployment))

    async def status(self) -> dict[str, Any]:
        """Every running replica's own status, and the model's totals."""
        replicas = await self._running()
        rows = list(await asyncio.gather(*(self._replica_status(r) for r in replicas)))
        rows.sort(key=lambda r: r["replica"])
        totals = {
            key: sum(r.get(key) or 0 for r in rows)
            for key in ("unfinished_requests", "completed_requests", "aborted_requests",
                        "prefix_cache_queries", "prefix_cache_hits")
        }
        engine = next((r["engine"] for r in rows if "engine" in r), {})
        return {**totals, "engine": engine, "replicas": rows}

    async def metrics(self) -> list[tuple[str, bytes]]:
        """Each running replica's Prometheus exposition (those that answer)."""
        replicas = await self._running()
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
