"""The engine replica's health check and its answer when its engine is dead, on a fake engine
(the replica's own logic; the real engine's death is killed for real in tests/e2e/test_replicas.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from vllama.errors import EngineDied
from vllama.models.resolve import ResolvedModel
from vllama.serve.hop import Call
from vllama.serve.replica import EngineReplica, ReplicaSettings


@dataclass
class FakeEngine:
    dead: bool = False
    stalled: float = 0.0
    unfinished: int = 0
    checked: int = 0

    async def check_health(self) -> None:
        self.checked += 1

    def stalled_for(self) -> float:
        return self.stalled

    def num_unfinished_requests(self) -> int:
        return self.unfinished

    def death_cause(self) -> str:
        return "EngineCore exited with signal SIGKILL"

    def shutdown(self) -> None:
        self.dead = True


def replica(engine: FakeEngine, stall_timeout_s: float = 120.0) -> EngineReplica:
    made = object.__new__(EngineReplica)  # its __init__ starts a real engine under Serve
    made._engine = engine  # type: ignore[attr-defined]
    made._settings = ReplicaSettings(accelerator="cpu", stream_interval_ms=40, stall_timeout_s=stall_timeout_s)
    made._model = ResolvedModel(name="m:latest", key="m:latest", source="/m", engine_kwargs={})  # type: ignore[attr-defined]
    made.replica = "r1"
    made._death_logged = False  # type: ignore[attr-defined]
    return made


async def test_healthy_engine_passes() -> None:
    engine = FakeEngine(stalled=30, unfinished=2)
    await replica(engine).check_health()
    assert engine.checked == 1  # vLLM's own check ran too


async def test_dead_engine_fails_with_its_cause(caplog: pytest.LogCaptureFixture) -> None:
    subject = replica(FakeEngine(dead=True))
    with caplog.at_level(logging.ERROR, logger="vllama"):
        for _ in range(3):
            with pytest.raises(EngineDied, match="SIGKILL") as raised:
                await subject.check_health()
            assert raised.value.replica == "r1"
    # Logged once with its cause, not once per check or per request.
    assert [r.getMessage() for r in caplog.records].count(
        "engine of model m:latest stopped: EngineCore exited with signal SIGKILL; Serve will replace this replica"
    ) == 1


async def test_engine_that_holds_requests_without_output_fails() -> None:
    with pytest.raises(EngineDied, match="holds 3 requests and gave no output for 121 s"):
        await replica(FakeEngine(stalled=121, unfinished=3)).check_health()


async def test_stall_check_can_be_turned_off() -> None:
    await replica(FakeEngine(stalled=10_000, unfinished=3), stall_timeout_s=0).check_health()


async def test_requests_to_a_dead_engine_fail_at_once_naming_the_replica() -> None:
    subject = replica(FakeEngine(dead=True))
    call = Call("ollama", "generate", b"{}", "m")
    with pytest.raises(EngineDied) as raised:
        await subject.once(call)
    assert raised.value.replica == "r1"
    with pytest.raises(EngineDied):
        async for _ in subject.stream(call):
            pass


def test_without_serve_the_engine_stops_at_once() -> None:
    # The garbage collector (no event loop to drain on) stops the engine there and then.
    engine = FakeEngine()
    subject = replica(engine)
    assert subject.__del__() is None
    assert engine.dead


async def test_a_replica_whose_model_failed_to_load_reports_it_and_asks_to_go() -> None:
    """A model loaded on demand whose engine did not start: the replica stays up to answer the
    waiting requests with the cause, passes its health check (Serve would otherwise count the
    failure toward giving up on the deployment), and reports a keep_alive already run out."""
    import time

    from vllama.errors import ConfigError
    from vllama.serve import scaling
    from vllama.serve.lifecycle import KeepAlive

    made = replica(FakeEngine())
    made._load_error = ConfigError("model directory '/m' has no config.json")  # type: ignore[attr-defined]
    made._keep_alive = KeepAlive(300.0)  # type: ignore[attr-defined]
    made._keep_alive.touch(0.0)  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="has no config.json"):
        await made.endpoint()
    await made.check_health()
    stats = await made.record_autoscaling_stats()
    assert stats[scaling.IN_FLIGHT] == 0 and stats[scaling.KEEP_UNTIL] <= time.time()
