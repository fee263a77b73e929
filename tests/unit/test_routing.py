"""Replica choice (`vllama.serve.routing`): the memory of where conversations went, rendezvous hashing, `prefer`, and
the registry of this process's request routers. Pure: no Ray cluster."""

from __future__ import annotations

import random
import time
from collections import Counter
from types import SimpleNamespace

import pytest

from vllama.ollama_api.schema import ChatRequest
from vllama.serve import routing
from vllama.serve.routing import AffinityMemory, prefer, rendezvous
from vllama.translate.prefixes import PrefixKey, ollama_prefix_key


def winner(affinity: int, replicas: list[str]) -> str:
    return max(replicas, key=lambda r: rendezvous(affinity, r))


def affinity_won_by(replica: str, replicas: list[str]) -> int:
    """An affinity whose rendezvous winner among `replicas` is `replica`."""
    return next(a for a in range(1000) if winner(a, replicas) == replica)


# --- AffinityMemory --------------------------------------------------------------------------


def test_holders_are_the_live_replicas_a_conversation_was_sent_to() -> None:
    memory = AffinityMemory()
    memory.record(1, "a")
    memory.record(1, "b")
    memory.record(2, "c")
    assert memory.holders(1, {"a", "b", "c"}) == {"a", "b"}
    assert memory.holders(1, ["b", "c"]) == {"b"}  # a is gone
    assert memory.holders(1, iter(["a", "x"])) == {"a"}  # any iterable of replica ids
    assert memory.holders(1, []) == set()
    assert memory.holders(2, ["a", "b", "c"]) == {"c"}
    assert memory.holders(3, ["a", "b", "c"]) == set()  # never seen
    assert len(memory) == 2  # by conversation, not by replica


def test_record_notes_when() -> None:
    memory = AffinityMemory()
    memory.record(1, "a", now=5.0)
    memory.record(1, "b", now=6.0)
    memory.record(1, "a", now=7.0)
    assert memory._entries[1] == {"a": 7.0, "b": 6.0}
    assert len(memory) == 1


def test_record_defaults_to_the_monotonic_clock() -> None:
    memory = AffinityMemory()
    before = time.monotonic()
    memory.record(1, "a")
    assert before <= memory._entries[1]["a"] <= time.monotonic()


def test_default_capacity() -> None:
    assert AffinityMemory().capacity == 100_000
    assert len(AffinityMemory()) == 0


def test_least_recently_used_conversations_are_forgotten_past_capacity() -> None:
    memory = AffinityMemory(capacity=3)
    for affinity in (1, 2, 3):
        memory.record(affinity, "a")
    assert len(memory) == 3
    memory.record(4, "a")
    assert len(memory) == 3
    assert memory.holders(1, ["a"]) == set()  # the oldest went
    assert all(memory.holders(a, ["a"]) == {"a"} for a in (2, 3, 4))
    assert list(memory._entries) == [2, 3, 4]


def test_re_recorded_conversation_moves_to_the_end() -> None:
    memory = AffinityMemory(capacity=3)
    for affinity in (1, 2, 3):
        memory.record(affinity, "a")
    memory.record(1, "b")  # conversation 1 is used again: now 2 is the oldest
    assert list(memory._entries) == [2, 3, 1]
    memory.record(4, "a")
    assert len(memory) == 3
    assert memory.holders(1, ["a", "b"]) == {"a", "b"}
    assert memory.holders(2, ["a", "b"]) == set()
    assert list(memory._entries) == [3, 1, 4]
    memory.record(3, "a")  # the same replica again counts as a use too
    memory.record(5, "a")
    assert list(memory._entries) == [4, 3, 5]

# --- rendezvous ------------------------------------------------------------------------------


def test_rendezvous_is_deterministic() -> None:
    assert rendezvous(12345, "replica-a") == rendezvous(12345, "replica-a")
    assert rendezvous(12345, "replica-a") != rendezvous(12345, "replica-b")
    assert rendezvous(12345, "replica-a") != rendezvous(12346, "replica-a")
    assert 0 <= rendezvous(2**64 - 1, "x") < 2**64


def test_rendezvous_balances_keys() -> None:
    rng = random.Random(7)
    keys = [rng.getrandbits(64) for _ in range(1000)]
    counts = Counter(winner(k, ["a", "b"]) for k in keys)
    assert set(counts) == {"a", "b"}
    assert all(400 <= n <= 600 for n in counts.values()), counts


def test_adding_a_replica_moves_keys_only_to_it() -> None:
    rng = random.Random(8)
    keys = [rng.getrandbits(64) for _ in range(1000)]
    before = {k: winner(k, ["a", "b"]) for k in keys}
    after = {k: winner(k, ["a", "b", "c"]) for k in keys}
    moved = [k for k in keys if before[k] != after[k]]
    assert all(after[k] == "c" for k in moved)  # none between a and b
    assert 200 <= len(moved) <= 470  # about a third of them went to the new one


# --- prefer ----------------------------------------------------------------------------------


def test_prefer_without_memory_is_rendezvous_over_all() -> None:
    replicas = ["a", "b", "c"]
    for affinity in range(50):
        assert prefer(PrefixKey(affinity), replicas, {}, AffinityMemory()) == winner(affinity, replicas)
    assert {prefer(PrefixKey(a), replicas, {}, AffinityMemory()) for a in range(50)} == set(replicas)


def test_prefer_does_not_record() -> None:
    memory = AffinityMemory()
    prefer(PrefixKey(1), ["a", "b"], {}, memory)
    assert len(memory) == 0


def test_prefer_follows_the_memory_against_rendezvous() -> None:
    """The conversation was moved to b (load, a failure): its history is cached there."""
    memory = AffinityMemory()
    affinity = affinity_won_by("a", ["a", "b"])
    memory.record(affinity, "b")
    assert prefer(PrefixKey(affinity), ["a", "b"], {}, memory) == "b"
    assert prefer(PrefixKey(affinity), ["a", "b"], {}, AffinityMemory()) == "a"
    # Another conversation is not affected.
    other = next(a for a in range(affinity + 1, 1000) if winner(a, ["a", "b"]) == "a")
    assert prefer(PrefixKey(other), ["a", "b"], {}, memory) == "a"


def test_prefer_ignores_remembered_replicas_that_are_not_running() -> None:
    memory = AffinityMemory()
    affinity = affinity_won_by("a", ["a", "b"])
    memory.record(affinity, "gone")
    assert prefer(PrefixKey(affinity), ["a", "b"], {}, memory) == "a"
    memory.record(affinity, "b")
    assert prefer(PrefixKey(affinity), ["a", "b"], {}, memory) == "b"
    assert prefer(PrefixKey(affinity), ["a", "c"], {}, memory) == winner(affinity, ["a", "c"])  # b is gone too


def test_prefer_follows_the_latest_turn_among_holders() -> None:
    """A conversation sent to several replicas goes where its latest turn went: its whole history
    so far is cached there, not on the replica of its older turns."""
    memory = AffinityMemory()
    affinity = next(a for a in range(1000) if winner(a, ["a", "b", "c"]) == "b" and winner(a, ["a", "c"]) == "c")
    memory.record(affinity, "c", now=1.0)
    memory.record(affinity, "a", now=2.0)  # load moved its last turn to a
    assert prefer(PrefixKey(affinity), ["a", "b", "c"], {}, memory) == "a"
    memory.record(affinity, "c", now=3.0)
    assert prefer(PrefixKey(affinity), ["a", "b", "c"], {}, memory) == "c"
    # ... among the holders that are running.
    assert prefer(PrefixKey(affinity), ["a", "b"], {}, memory) == "a"
    assert memory.latest(affinity, ["b"]) is None
    assert memory.latest(affinity + 1, ["a", "b", "c"]) is None


@pytest.mark.parametrize(
    ("loads", "imbalance", "expected"),
    [
        ({}, 8, "b"),
        ({"b": 8}, 8, "b"),  # exactly `imbalance` more: still the cache's choice
        ({"b": 9}, 8, None),  # more: load decides
        ({"b": 9, "a": 1}, 8, "b"),  # measured from the least loaded
        ({"b": 10, "a": 1}, 8, None),
        ({"b": 9, "a": 1, "gone": 0}, 8, "b"),  # only the replicas given count
        ({"b": 3}, 2, None),
        ({"b": 1}, 0, None),
        ({"b": 1, "a": 1}, 0, "b"),
        ({"a": 50}, 8, "b"),
    ],
)
def test_prefer_gives_way_to_load(loads: dict[str, int], imbalance: int, expected: str | None) -> None:
    memory = AffinityMemory()
    affinity = affinity_won_by("a", ["a", "b"])
    memory.record(affinity, "b")
    assert prefer(PrefixKey(affinity), ["a", "b"], loads, memory, imbalance=imbalance) == expected


@pytest.mark.parametrize(
    ("loads", "spread", "expected"),
    [({"a": 2}, 2, "a"), ({"a": 3}, 2, None), ({"b": 5, "a": 7}, 2, "a"), ({"b": 5, "a": 8}, 2, None),
     ({"a": 8}, 8, "a"), ({"a": 9}, 8, None)],
)
def test_a_new_conversation_gives_way_to_load_sooner(loads: dict[str, int], spread: int, expected: str | None) -> None:
    """Nothing of a new conversation is cached anywhere: its rendezvous pick yields to balance as
    soon as it has `spread` more requests in flight (a conversation under way: `imbalance`)."""
    affinity = affinity_won_by("a", ["a", "b"])
    assert prefer(PrefixKey(affinity), ["a", "b"], loads, AffinityMemory(), spread=spread) == expected


def test_prefer_without_replicas() -> None:
    memory = AffinityMemory()
    memory.record(1, "a")
    assert prefer(PrefixKey(1), [], {}, memory) is None
    assert prefer(PrefixKey(1), [], {}, AffinityMemory()) is None


def test_prefer_with_one_replica() -> None:
    assert prefer(PrefixKey(1), ["only"], {"only": 100}, AffinityMemory()) == "only"


def test_later_turn_follows_the_earlier_one_against_rendezvous() -> None:
    """The first turn went to the replica rendezvous does not pick (it was the only one running,
    or load decided): the next turn goes where its history is cached."""
    system = "Answer in French, in one sentence, with care. " * 30
    history = [{"role": "system", "content": system}, {"role": "user", "content": "What is a cache?"}]
    first = ollama_prefix_key(ChatRequest.model_validate({"model": "m", "messages": history}))
    later = ollama_prefix_key(
        ChatRequest.model_validate(
            {"model": "m", "messages": [*history, {"role": "assistant", "content": "Un cache."},
                                        {"role": "user", "content": "Why?"}]}
        )
    )
    replicas = ["r1", "r2"]
    favourite = winner(first.affinity, replicas)
    other = next(r for r in replicas if r != favourite)
    memory = AffinityMemory()
    memory.record(first.affinity, other)
    assert prefer(later, replicas, {}, memory) == other
    # Without that history rendezvous would have chosen the favourite.
    assert prefer(later, replicas, {}, AffinityMemory()) == favourite

# --- routers of this process -----------------------------------------------------------------


class FakeRouter:
    def __init__(self, *ids: str) -> None:
        self.curr_replicas = {i: SimpleNamespace(replica_id=SimpleNamespace(unique_id=i)) for i in ids}


def test_register_and_replicas_of() -> None:
    router = FakeRouter("x1", "x2")
    assert not routing.has_router("test-app", "test-dep")
    assert routing.replicas_of("test-app", "test-dep") == []
    routing.register("test-app", "test-dep", router)
    assert routing.has_router("test-app", "test-dep")
    assert not routing.has_router("test-app", "other-dep")
    assert [r.replica_id.unique_id for r in routing.replicas_of("test-app", "test-dep")] == ["x1", "x2"]
    router.curr_replicas.pop("x1")  # Serve keeps the set current: the next read sees the change
    assert [r.replica_id.unique_id for r in routing.replicas_of("test-app", "test-dep")] == ["x2"]
    del router  # the last reference: CPython frees it now
    assert not routing.has_router("test-app", "test-dep")  # the registry does not keep a router alive
    assert routing.replicas_of("test-app", "test-dep") == []


def test_conversations_sharing_a_system_prompt_spread() -> None:
    """A long system prompt shared by every conversation does not pull them all to one replica:
    each goes to its own rendezvous choice, and then stays there."""
    system = "You are a careful assistant who answers in full sentences. " * 40
    replicas = ["r1", "r2"]
    memory = AffinityMemory()

    def opening(i: int) -> list[dict[str, str]]:
        return [{"role": "system", "content": system}, {"role": "user", "content": f"question {i} " * 10}]

    chosen = []
    for i in range(40):
        first = ollama_prefix_key(ChatRequest.model_validate({"model": "m", "messages": opening(i)}))
        pick = prefer(first, replicas, {}, memory)
        assert pick == winner(first.affinity, replicas)
        memory.record(first.affinity, pick)
        chosen.append(pick)
    assert 10 <= chosen.count("r1") <= 30  # spread, not all on the replica that cached the system prompt first
    assert len(memory) == 40
    # Every conversation's next turn goes where its first one went.
    for i in range(40):
        later = ollama_prefix_key(ChatRequest.model_validate({"model": "m", "messages": [
            *opening(i), {"role": "assistant", "content": "An answer."}, {"role": "user", "content": "Go on."}]}))
        assert prefer(later, replicas, {}, memory) == chosen[i]
