"""An engine replica's keep_alive timer (`vllama.serve.lifecycle.KeepAlive`), on a fake clock:
Ollama's rules, the latest request's keep_alive in force, never expiring under a request; and
the budget of loaded models (`Budget`), on fake models."""

from __future__ import annotations

import asyncio
import time

import pytest

from vllama.errors import Overloaded
from vllama.serve.lifecycle import (
    FOREVER_TEXT,
    FOREVER_TS,
    SERVER_BUSY,
    Budget,
    KeepAlive,
    Room,
    Usage,
    expires_text,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_loaded_model_gets_its_whole_default(clock: Clock) -> None:
    timer = KeepAlive(300.0, clock)
    assert timer.keep_until() == 1300.0 and timer.expires_at() == 1300.0


def test_the_latest_requests_keep_alive_counts_from_its_end(clock: Clock) -> None:
    timer = KeepAlive(300.0, clock)
    timer.begin(2.0)
    assert timer.keep_until() == FOREVER_TS  # never under a request
    clock.now = 1010.0
    assert timer.expires_at() == 1012.0  # while it runs, counted from now (as /api/ps shows it)
    clock.now = 1050.0
    timer.end()
    assert timer.keep_until() == 1052.0
    timer.begin(None)  # a request without keep_alive: the model's default again, as in Ollama
    clock.now = 1060.0
    timer.end()
    assert timer.keep_until() == 1360.0


def test_overlapping_requests(clock: Clock) -> None:
    timer = KeepAlive(5.0, clock)
    timer.begin(None)
    timer.begin(None)
    clock.now = 1100.0
    timer.end()
    assert timer.keep_until() == FOREVER_TS  # one still runs
    clock.now = 1200.0
    timer.end()
    assert timer.keep_until() == 1205.0


@pytest.mark.parametrize("forever", [-1.0, -300.0])
def test_negative_is_forever(clock: Clock, forever: float) -> None:
    timer = KeepAlive(300.0, clock)
    timer.begin(forever)
    timer.end()
    assert timer.keep_until() == FOREVER_TS and timer.expires_at() == FOREVER_TS
    assert expires_text(timer.expires_at()) == FOREVER_TEXT


def test_touch_restarts_the_timer_and_zero_runs_it_out(clock: Clock) -> None:
    timer = KeepAlive(300.0, clock)
    clock.now = 1100.0
    timer.touch(None)  # a load call without keep_alive: the model's default, from now
    assert timer.keep_until() == 1400.0
    timer.touch(0.0)  # the unload call
    assert timer.keep_until() == 1100.0
    timer.touch(-1.0)
    assert timer.keep_until() == FOREVER_TS


def test_expires_text_is_rfc3339_local_time() -> None:
    text = expires_text(1_800_000_000.5)
    assert text[:4] in {"2027", "2028"} and "T" in text and text[-6] in "+-"


# --- the budget: at most N models loaded, the least recently used idle one unloads first ---------


class FakeModel:
    def __init__(
        self, name: str, loaded: bool = False, busy: bool = False, last_used: float = 0.0, gpus: float = 0.0,
    ) -> None:
        self.name = name
        self.state = Usage(loaded, busy, last_used)
        self.unloads = 0
        self.room = Room(gpus=gpus)
        self.cluster: FakeCluster | None = None

    async def usage(self) -> Usage:
        return self.state

    async def unload(self) -> None:
        self.unloads += 1
        self.state = Usage(False)
        if self.cluster is not None:
            self.cluster.free_gpus += self.room.gpus

    def needs(self) -> Room:
        return self.room


class FakeCluster:
    """Ray's free GPUs: what the loaded fake models do not hold."""

    def __init__(self, gpus: float, *models: FakeModel) -> None:
        self.free_gpus = gpus - sum(m.room.gpus for m in models if m.state.loaded)
        for model in models:
            model.cluster = self

    async def free(self) -> Room:
        return Room(gpus=self.free_gpus)


def budget(limit: int | None, *models: FakeModel, max_queue: int = 512, cluster: FakeCluster | None = None) -> Budget:
    room = Budget(limit, max_queue=max_queue, poll_s=0.01, free=cluster.free if cluster is not None else None)
    room.models = list(models)
    return room


def test_no_limit_or_under_it_unloads_nothing() -> None:
    a, b, new = FakeModel("a", True), FakeModel("b", True), FakeModel("new")
    asyncio.run(budget(None, a, b, new).make_room(new, 1))
    asyncio.run(budget(3, a, b, new).make_room(new, 1))
    assert a.unloads == b.unloads == 0


def test_the_least_recently_used_idle_model_unloads() -> None:
    old = FakeModel("old", True, last_used=10)
    recent = FakeModel("recent", True, last_used=50)
    busy_oldest = FakeModel("busy", True, busy=True, last_used=1)
    new = FakeModel("new")
    asyncio.run(budget(3, old, recent, busy_oldest, new).make_room(new, 1))
    assert (old.unloads, recent.unloads, busy_oldest.unloads) == (1, 0, 0)


def test_the_asking_model_itself_is_not_counted() -> None:
    a, new = FakeModel("a", True), FakeModel("new", True)
    asyncio.run(budget(1, a, new).make_room(new, 1))
    assert a.unloads == 1 and new.unloads == 0


def test_all_busy_waits_then_server_busy() -> None:
    a, new = FakeModel("a", True, busy=True), FakeModel("new")
    started = time.monotonic()
    with pytest.raises(Overloaded) as caught:
        asyncio.run(budget(1, a, new).make_room(new, 0.1))
    assert time.monotonic() - started >= 0.1
    assert caught.value.status_code == 503 and caught.value.message == SERVER_BUSY


def test_a_busy_model_that_becomes_idle_is_unloaded() -> None:
    a, new = FakeModel("a", True, busy=True), FakeModel("new")

    async def scenario() -> None:
        room = budget(1, a, new)
        waiter = asyncio.ensure_future(room.make_room(new, 5))
        await asyncio.sleep(0.05)
        assert not waiter.done()
        a.state = Usage(True, busy=False)
        await asyncio.wait_for(waiter, 1)

    asyncio.run(scenario())
    assert a.unloads == 1


def test_a_full_queue_is_refused_at_once() -> None:
    a, new = FakeModel("a", True, busy=True), FakeModel("new")

    async def scenario() -> None:
        room = budget(1, a, new, max_queue=1)
        waiter = asyncio.ensure_future(room.make_room(new, 5))
        await asyncio.sleep(0.02)
        with pytest.raises(Overloaded):
            await room.make_room(new, 5)
        waiter.cancel()

    asyncio.run(scenario())


def test_two_loads_in_turn_do_not_both_take_the_last_place() -> None:
    """The first model let in counts as loaded before Serve lists its replica."""
    a, b = FakeModel("a"), FakeModel("b")

    async def scenario() -> None:
        room = budget(1, a, b)
        await room.make_room(a, 1)  # a admitted, not yet listed as loaded
        with pytest.raises(Overloaded):
            await room.make_room(b, 0.05)  # a is loading: not evicted, b waits

    asyncio.run(scenario())


# --- the budget weighs GPUs (and a CPU's memory) against what is free -----------------------


def test_a_model_that_fits_in_the_free_gpus_unloads_nothing() -> None:
    a, new = FakeModel("a", True, gpus=1), FakeModel("new", gpus=1)
    asyncio.run(budget(None, a, new, cluster=FakeCluster(2, a, new)).make_room(new, 1))
    assert a.unloads == 0


def test_no_free_gpu_unloads_the_least_recently_used_idle_model_under_the_limit() -> None:
    old = FakeModel("old", True, last_used=1, gpus=1)
    recent = FakeModel("recent", True, last_used=9, gpus=1)
    new = FakeModel("new", gpus=1)
    asyncio.run(budget(6, old, recent, new, cluster=FakeCluster(2, old, recent, new)).make_room(new, 1))
    assert (old.unloads, recent.unloads) == (1, 0)


def test_a_two_gpu_model_unloads_as_many_as_it_needs() -> None:
    a = FakeModel("a", True, last_used=1, gpus=1)
    b = FakeModel("b", True, last_used=2, gpus=1)
    c = FakeModel("c", True, last_used=3, gpus=1)
    new = FakeModel("new", gpus=2)
    asyncio.run(budget(None, a, b, c, new, cluster=FakeCluster(3, a, b, c, new)).make_room(new, 1))
    assert (a.unloads, b.unloads, c.unloads) == (1, 1, 0)


def test_no_free_gpu_and_all_busy_waits_then_server_busy() -> None:
    a, new = FakeModel("a", True, busy=True, gpus=1), FakeModel("new", gpus=1)
    with pytest.raises(Overloaded):
        asyncio.run(budget(None, a, new, cluster=FakeCluster(1, a, new)).make_room(new, 0.05))


def test_a_model_larger_than_what_is_free_with_nothing_loaded_is_let_in() -> None:
    """Nothing could unload to make room: its engine (or Serve's placement) says what it lacks."""
    new = FakeModel("new", gpus=8)
    asyncio.run(budget(None, new, cluster=FakeCluster(1, new)).make_room(new, 1))


def test_what_an_admitted_model_will_take_is_not_free() -> None:
    """Two loads in turn: the first is let in before Ray counts its GPU, the second must not
    take the same one (it waits: the first is loading, not idle)."""
    a, b = FakeModel("a", gpus=1), FakeModel("b", gpus=1)
    c = FakeModel("c", True, busy=True, gpus=1)  # so that nothing is "nothing loaded"
    cluster = FakeCluster(2, a, b, c)

    async def scenario() -> None:
        room = budget(None, a, b, c, cluster=cluster)
        await room.make_room(a, 1)  # one GPU free: a is let in (Ray does not count it yet)
        with pytest.raises(Overloaded):
            await room.make_room(b, 0.05)

    asyncio.run(scenario())
