"""Which engine replica of a model takes a request.

The ingress decides (`forward.py`), among the running replicas that Serve's request router in
its process knows (`replicas_of`: Serve keeps that set current through its request-router API,
`router.py`), with one of two policies:

- `prefix` (the default): a request goes to the replica whose prefix cache holds its
  conversation (`translate/prefixes.py`: a chat re-sends its history each turn, all of it
  starting with the same opening), so a conversation's history is computed once, not once per
  turn. Rendezvous hashing of the opening picks the replica, so every ingress replica sends one
  conversation to the same engine replica without sharing any state, and conversations that
  share only a system prompt spread over the replicas (each caches that prompt once). Each
  ingress also remembers where it sent a conversation: when load or a failure moved one of its
  turns, the next ones follow its history. Load wins, as in SGLang's cache-aware balancer, when
  the chosen replica has `imbalance` (8) more requests in flight than the least loaded one, or
  only `spread` (2) more for a new conversation (nothing of it is cached anywhere yet).
- `least_loaded`: the less loaded of two random replicas (Serve's power of two choices).

Why not `ray.serve.llm`'s `PrefixCacheAffinityRouter`: it keeps its prefix tree in one detached
actor and calls it with a blocking `ray.get` twice per request (match, then insert) from inside
the router's event loop, so every routing decision waits for two actor round trips; it reads the
prompt's text from the request's `messages`/`prompt` attributes, which a raw forwarded body does
not have; its longest-prefix match sends every conversation that shares a system prompt to one
replica; and it runs inside Serve's handle path, which the data path does not take (see
`channel.py`). Here a decision costs microseconds, and rendezvous hashing keeps ingress replicas
in agreement without a shared tree.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ray.serve.request_router import RunningReplica

from vllama.translate.prefixes import PrefixKey


class AffinityMemory:
    """Which replicas each conversation was sent to: affinity -> {replica: when}, the least
    recently used conversations forgotten past `capacity`."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[int, dict[str, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def holders(self, affinity: int, live: Iterable[str]) -> set[str]:
        """The live replicas this conversation was sent to."""
        entry = self._entries.get(affinity)
        return set(live).intersection(entry) if entry else set()

    def latest(self, affinity: int, live: Iterable[str]) -> str | None:
        """The live replica this conversation was last sent to: its latest turn, so its whole
        history so far, is cached there."""
        entry = self._entries.get(affinity)
        if not entry:
            return None
        alive = [r for r in live if r in entry]
        return max(alive, key=entry.__getitem__) if alive else None

    def record(self, affinity: int, replica: str, now: float | None = None) -> None:
        when = time.monotonic() if now is None else now
        entry = self._entries.get(affinity)
        if entry is None:
            self._entries[affinity] = {replica: when}
        else:
            entry[replica] = when
            self._entries.move_to_end(affinity)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)


def rendezvous(affinity: int, replica: str) -> int:
    """Highest-random-weight hashing: each replica's weight for a key. Adding or removing a
    replica moves only the keys it wins or held, and every process computes the same weights."""
    return int.from_bytes(hashlib.blake2b(f"{affinity}:{replica}".encode(), digest_size=8).digest(), "little")


def prefer(
    key: PrefixKey,
    replicas: Sequence[str],
    loads: Mapping[str, int],
    memory: AffinityMemory,
    *,
    imbalance: int = 8,
    spread: int = 2,
) -> str | None:
    """The replica a request of this conversation should go to, or None when load must decide.

    A conversation already under way goes where its latest turn went (its history is cached
    there), unless that replica has more than `imbalance` requests in flight above the least
    loaded one: moving it costs its whole history again. A new conversation goes to its
    rendezvous pick (so every ingress replica agrees), unless that one has more than `spread`
    above the least loaded: any replica holds as much of a new conversation (at most a shared
    system prompt), so only balance is at stake."""
    if not replicas:
        return None
    latest = memory.latest(key.affinity, replicas)
    chosen = latest or max(replicas, key=lambda r: rendezvous(key.affinity, r))
    lightest = min(loads.get(r, 0) for r in replicas)
    if loads.get(chosen, 0) - lightest > (imbalance if latest else spread):
        return None
    return chosen


#: The routers of this process, by (application, deployment): the ingress reads their replica
#: sets (Serve creates each router inside the handle that uses it, and keeps its set current).
_ROUTERS: weakref.WeakValueDictionary[tuple[str, str], Any] = weakref.WeakValueDictionary()


def register(app_name: str, deployment: str, router: Any) -> None:
    _ROUTERS[(app_name, deployment)] = router


def has_router(app_name: str, deployment: str) -> bool:
    return (app_name, deployment) in _ROUTERS


def replicas_of(app_name: str, deployment: str) -> list[RunningReplica]:
    """The running replicas the router for `deployment` knows (none until the first call through
    its handle has started the router)."""
    router = _ROUTERS.get((app_name, deployment))
    return list(router.curr_replicas.values()) if router is not None else []
