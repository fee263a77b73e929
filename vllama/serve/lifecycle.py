"""Ollama's model lifecycle on Serve's scaling: a model is *loaded* while its engine deployment
has replicas, and unloaded at zero. Nothing here starts or stops an engine by hand: Serve does,
as it scales any deployment, and vllama tells its autoscaler when.

- **keep_alive.** Each engine replica keeps the `keep_alive` of the latest request it got
  (Ollama's rule: each request sets the timer, to the model's default when it gives none) and
  reports until when it wants its model loaded (`KeepAlive.keep_until`), with the requests it
  holds, as an autoscaling metric. The policy (`scaling.py`) scales the deployment to zero once
  every replica's time has passed and none holds a request. Serve then stops the replicas as it
  does on any downscale: each finishes what it holds, its engine's processes exit, and its
  resources go back to Ray.
- **Load on demand.** A request for a model with no replica waits on Serve's handle
  (`forward.RemoteModel`); that queued request is what Serve's autoscaler counts, and it starts a
  replica at once (its cold-start path). Requests that arrive meanwhile queue the same way and
  share that one engine start.
- **Unload now** (`keep_alive: 0` and no prompt). The ingress sets each replica's keep_alive to
  0 and answers once Serve has no replica of the model left (`wait_unloaded`).
- **A failed load.** The replica of a model loaded on demand whose engine does not start stays up
  without one (Serve gives up on a deployment for good once its constructor has failed before
  any replica started): it answers the waiting requests with the cause and reports a keep_alive
  already run out, so it is scaled away and the next request tries again.
- **A budget** (`Budget`, Ollama's `OLLAMA_MAX_LOADED_MODELS` and its memory check): before a
  model loads, the least recently used idle model unloads when `max_loaded_models` are loaded
  already, or when the model's replica would not fit in the GPUs Ray has free (its tensor x
  pipeline parallel size) or, on a CPU, in the memory free (its share and its processes); when
  none is idle, the load waits (at most `max_queue` requests wait, each up to its load timeout)
  and then fails with Ollama's "server busy" (503).

A deployment with several replicas scales to zero in two steps, as Serve allows: down to one
after the deployment's `downscale_delay_s`, then to zero at once.
"""

from __future__ import annotations

import asyncio
import datetime
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from vllama.errors import Overloaded
from vllama.models.describe import FOREVER
from vllama.serve.admission import SERVER_BUSY


#: What a replica reports while it must not unload (requests in flight, or keep_alive < 0).
FOREVER_TS = 1e12
#: Ollama's `expires_at` for a model kept forever (Go's far future).
FOREVER_TEXT = FOREVER


class KeepAlive:
    """One engine replica's timer: the keep_alive in force, when its last request ended, and how
    many it holds."""

    def __init__(self, default_s: float, clock: Callable[[], float] = time.time) -> None:
        self.default_s = default_s
        self.seconds = default_s
        self._clock = clock
        self.last_used = clock()  # a model just loaded gets its whole keep_alive, as in Ollama
        self.active = 0

    def begin(self, keep_alive: float | None) -> None:
        """A request starts: its keep_alive, or without one the model's default, is the one in
        force from now on (as Ollama sets each request's on the model it runs on)."""
        self.seconds = self.default_s if keep_alive is None else keep_alive
        self.active += 1

    def end(self) -> None:
        self.active -= 1
        self.last_used = self._clock()

    def touch(self, keep_alive: float | None) -> None:
        """A load or unload call (a request with no prompt): it restarts the timer."""
        self.seconds = self.default_s if keep_alive is None else keep_alive
        self.last_used = self._clock()

    def keep_until(self) -> float:
        """Wall-clock time until which this replica wants its model loaded."""
        if self.active or self.seconds < 0:
            return FOREVER_TS
        return self.last_used + self.seconds

    def expires_at(self) -> float:
        """As `/api/ps` shows it: while a request runs, its keep_alive counts from now."""
        if self.seconds < 0:
            return FOREVER_TS
        return (self._clock() if self.active else self.last_used) + self.seconds


def expires_text(timestamp: float) -> str:
    """Ollama's `expires_at`: RFC 3339 in local time, to the second's fraction."""
    if timestamp >= FOREVER_TS:
        return FOREVER_TEXT
    return datetime.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="microseconds")


def deployment_replicas(app_name: str, deployment: str) -> dict[str, int]:
    """The deployment's replicas by state (STARTING, RUNNING, STOPPING...), as Serve's controller
    knows them. Blocking (a call to the controller): run it in a thread."""
    from ray import serve

    application = serve.status().applications.get(app_name)
    if application is None or deployment not in application.deployments:
        return {}
    states = application.deployments[deployment].replica_states
    return {str(getattr(state, "value", state)): count for state, count in states.items() if count}


def load_failure(app_name: str, deployment: str) -> str | None:
    """Why the deployment's replicas fail to start, once Serve has given up on them (its status
    DEPLOY_FAILED or UNHEALTHY with no replica running), else None. Blocking: run it in a thread.
    The cause is vllama's own message when the replica raised one (`startup.explain`'s words),
    not Serve's traceback around it."""
    from ray import serve

    application = serve.status().applications.get(app_name)
    status = application.deployments.get(deployment) if application is not None else None
    if status is None or str(getattr(status.status, "value", status.status)) not in ("DEPLOY_FAILED", "UNHEALTHY"):
        return None
    if any(str(getattr(state, "value", state)) == "RUNNING" and n for state, n in status.replica_states.items()):
        return None
    return vllama_message(status.message or "") or (status.message or "its replicas failed to start")


def vllama_message(text: str) -> str | None:
    """vllama's own error message in a traceback Serve reports (`vllama.errors.ConfigError: ...`)."""
    if match := re.search(r"vllama\.errors\.\w+: (.+)", text, re.DOTALL):
        return match.group(1).strip()
    return None


async def wait_unloaded(app_name: str, deployment: str, timeout_s: float, poll_s: float = 0.25) -> bool:
    """Until Serve has no replica of the deployment left (stopped ones included): True, or False
    after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not await asyncio.to_thread(deployment_replicas, app_name, deployment):
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(poll_s)


@dataclass(frozen=True)
class Usage:
    """A model as the budget sees it: loaded (or loading), busy (requests in it, or loading),
    and when its last request ended."""

    loaded: bool
    busy: bool = False
    last_used: float = 0.0


@dataclass(frozen=True)
class Room:
    """What one replica of a model takes, or what is free for one: GPUs (in the Ray cluster),
    and host memory for an engine on a CPU (on this node)."""

    gpus: float = 0.0
    memory_bytes: int = 0

    def covers(self, need: Room) -> bool:
        return self.gpus >= need.gpus and self.memory_bytes >= need.memory_bytes

    def __sub__(self, other: Room) -> Room:
        return Room(self.gpus - other.gpus, self.memory_bytes - other.memory_bytes)

    def __bool__(self) -> bool:
        return bool(self.gpus or self.memory_bytes)


class Loadable(Protocol):
    name: str

    async def usage(self) -> Usage: ...

    async def unload(self) -> None: ...

    def needs(self) -> Room: ...


async def free_room() -> Room:
    """The GPUs Ray has free in the cluster, and the memory free on this node (what vLLM's CPU
    engine checks its share against as it starts)."""

    def measure() -> Room:
        import psutil
        import ray

        return Room(gpus=ray.available_resources().get("GPU", 0.0), memory_bytes=psutil.virtual_memory().available)

    return await asyncio.to_thread(measure)


#: How long a model let in by the budget counts as loaded before Serve lists its replica.
ADMITTED_S = 10.0


class Budget:
    """At most `limit` models loaded at once (None: no limit), and never more than the GPUs and
    memory that are free: `make_room(model)` returns once `model` may load. At once when it is
    under the limit and its replica fits in what is free; else after the least recently used
    idle model has unloaded, or after a wait for one to become idle (at most `max_queue` loads
    wait, each up to its timeout, then Ollama's "server busy"). A model that does not fit even
    with nothing else loaded is let in: its engine then says what it lacks. One room-making at a
    time in this process."""

    def __init__(
        self, limit: int | None, *, max_queue: int = 512, poll_s: float = 1.0,
        free: Callable[[], Awaitable[Room]] | None = free_room,
    ) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.poll_s = poll_s
        self.models: Sequence[Loadable] = ()
        self._free = free
        self._turn = asyncio.Lock()
        self._waiting = 0
        # Models let in whose replica Serve may not list yet: counted as loaded for a while,
        # and what they need as taken.
        self._admitted: dict[int, tuple[float, Room]] = {}

    def add(self, model: Loadable) -> None:
        """A model that joined after the start (available, not configured: `available.py`)."""
        self.models = [*self.models, model]

    async def make_room(self, model: Loadable, timeout_s: float) -> None:
        need = model.needs()
        if self.limit is None and not (need and self._free is not None):
            return
        if self._waiting >= self.max_queue:
            raise Overloaded(SERVER_BUSY)
        self._waiting += 1
        deadline = time.monotonic() + timeout_s
        try:
            async with self._turn:
                while True:
                    others = [m for m in self.models if m is not model]
                    usages = await asyncio.gather(*(m.usage() for m in others))
                    now = time.monotonic()
                    admitted = {key for key, (until, _) in self._admitted.items() if until > now}
                    loaded = [
                        (m, u if u.loaded else Usage(loaded=True, busy=True))  # admitted: loading
                        for m, u in zip(others, usages, strict=True) if u.loaded or id(m) in admitted
                    ]
                    # Let in, with no replica yet: what they will take is not free, whatever Ray says.
                    unplaced = [self._admitted[id(m)][1] for m, u in zip(others, usages, strict=True)
                                if not u.loaded and id(m) in admitted]
                    if await self._fits(need, loaded, unplaced):
                        self._admitted[id(model)] = (now + ADMITTED_S, need)
                        return
                    idle = [(m, u) for m, u in loaded if not u.busy]
                    if idle:
                        victim = min(idle, key=lambda pair: pair[1].last_used)[0]
                        await victim.unload()
                        continue
                    if time.monotonic() > deadline:
                        raise Overloaded(SERVER_BUSY)
                    await asyncio.sleep(self.poll_s)
        finally:
            self._waiting -= 1

    async def _fits(self, need: Room, loaded: list[tuple[Loadable, Usage]], unplaced: list[Room]) -> bool:
        if self.limit is not None and len(loaded) >= self.limit:
            return False
        if not need or self._free is None or not loaded:
            return True  # nothing to unload: let it try (its engine says what it lacks)
        free = await self._free()
        for room in unplaced:
            free = free - room
        return free.covers(need)
