"""Stream pacing (`vllama.engine.pacing.paced`) on scripted outputs and a scripted clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from vllama.engine.pacing import paced
from vllama.engine.vllm_engine import CountingEngineClient


@dataclass
class Out:
    """Stands for one engine output: the text of one step, whether the request ended."""

    text: str
    done: bool = False


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def merge(held: Out, newer: Out) -> Out:
    return Out(held.text + newer.text, newer.done)


async def run(steps: list[tuple[float, Out]], interval_s: float) -> list[tuple[float, str, bool]]:
    """(time each output went out, its text, done) for outputs made at the given times."""
    clock = Clock()

    async def engine() -> AsyncIterator[Out]:
        for at, output in steps:
            clock.now = at
            yield output

    stream = paced(engine(), interval_s, merge=merge, finished=lambda o: o.done, visible=lambda o: bool(o.text), clock=clock)
    return [(clock.now, o.text, o.done) async for o in stream]


async def test_every_step_goes_out_without_an_interval() -> None:
    steps = [(0.000, Out("a")), (0.003, Out("b")), (0.006, Out("c", done=True))]
    assert await run(steps, 0) == [(0.000, "a", False), (0.003, "b", False), (0.006, "c", True)]


async def test_steps_within_the_interval_are_merged_into_the_next_chunk() -> None:
    steps = [(0.000 + 0.01 * i, Out(str(i))) for i in range(9)] + [(0.09, Out("9", done=True))]
    sent = await run(steps, 0.04)
    assert sent == [
        (0.00, "0", False),  # the first at once
        (0.04, "1234", False),  # then at most one per 40 ms, with everything made meanwhile
        (0.08, "5678", False),
        (0.09, "9", True),  # the last at once, although 40 ms have not passed
    ]
    assert "".join(text for _, text, _ in sent) == "0123456789"  # nothing lost, nothing twice


async def test_nothing_is_held_until_something_visible_went_out() -> None:
    # Steps whose text is empty (a special token, part of a UTF-8 character) do not start the
    # interval: the first visible text still goes out the moment it is made.
    steps = [(0.000, Out("")), (0.002, Out("")), (0.004, Out("x")), (0.006, Out("y")), (0.05, Out("z", done=True))]
    assert await run(steps, 0.04) == [
        (0.000, "", False),
        (0.002, "", False),
        (0.004, "x", False),
        (0.05, "yz", True),
    ]


async def test_slow_steps_are_never_held() -> None:
    # Steps slower than the interval (a large model): pacing changes nothing.
    steps = [(0.1 * i, Out(str(i))) for i in range(4)] + [(0.4, Out("4", done=True))]
    sent = await run(steps, 0.04)
    assert [text for _, text, _ in sent] == ["0", "1", "2", "3", "4"]
    assert [at for at, _, _ in sent] == [at for at, _ in steps]


async def test_a_held_output_goes_out_with_the_next_step() -> None:
    # Held at 10 ms, it leaves with the engine's next output for the request (no timer).
    steps = [(0.0, Out("a")), (0.01, Out("b")), (0.2, Out("c")), (0.21, Out("d", done=True))]
    assert await run(steps, 0.04) == [(0.0, "a", False), (0.2, "bc", False), (0.21, "d", True)]


async def test_a_source_that_ends_without_a_last_output_loses_nothing() -> None:
    steps = [(0.0, Out("a")), (0.01, Out("b"))]
    assert await run(steps, 0.04) == [(0.0, "a", False), (0.01, "b", False)]


# --- CountingEngineClient: which streams are paced, and closing them ---------------------------------


@dataclass
class Completion:
    text: str
    finish_reason: str | None = None


class Output:
    """Duck-types vLLM's RequestOutput: `finished`, `outputs`, `add` (merging deltas)."""

    def __init__(self, text: str, finished: bool = False) -> None:
        self.finished = finished
        self.outputs = [Completion(text, "length" if finished else None)]

    def add(self, newer: Output, aggregate: bool) -> None:
        assert aggregate
        self.finished |= newer.finished
        self.outputs[0].text += newer.outputs[0].text
        self.outputs[0].finish_reason = newer.outputs[0].finish_reason


class Kind:
    def __init__(self, name: str) -> None:
        self.name = name


@dataclass
class Params:
    output_kind: Kind


class Engine:
    """An AsyncLLM stand-in: ten outputs as fast as they are read, then the last."""

    def __init__(self) -> None:
        self.closed = 0

    async def generate(self, prompt: object, sampling_params: Params, request_id: str) -> AsyncIterator[Output]:
        try:
            for i in range(10):
                yield Output(str(i))
            yield Output("!", finished=True)
        finally:
            self.closed += 1


async def test_the_client_paces_streams_and_counts_them() -> None:
    engine = Engine()
    client = CountingEngineClient(engine, stream_interval_s=60.0)
    outputs = [o async for o in client.generate("p", Params(Kind("DELTA")), "r1")]
    # The first at once; the rest came within the interval, so they went with the last.
    assert [o.outputs[0].text for o in outputs] == ["0", "123456789!"]
    assert outputs[-1].finished and outputs[-1].outputs[0].finish_reason == "length"
    assert (client.completed_requests, client.aborted_requests, engine.closed) == (1, 0, 1)


async def test_whole_answers_are_not_paced() -> None:
    client = CountingEngineClient(Engine(), stream_interval_s=60.0)
    outputs = [o async for o in client.generate("p", Params(Kind("FINAL_ONLY")), "r1")]
    assert len(outputs) == 11  # passed on as the engine gave them


async def test_no_interval_no_pacing() -> None:
    client = CountingEngineClient(Engine(), stream_interval_s=0.0)
    outputs = [o async for o in client.generate("p", sampling_params=Params(Kind("DELTA")), request_id="r1")]
    assert len(outputs) == 11


async def test_a_consumer_that_goes_away_aborts_the_request() -> None:
    engine = Engine()
    client = CountingEngineClient(engine, stream_interval_s=60.0)
    stream = client.generate("p", Params(Kind("DELTA")), "r1")
    assert (await anext(stream)).outputs[0].text == "0"
    await stream.aclose()
    # The engine's own generator is closed at once (that is what makes vLLM abort it).
    assert (client.completed_requests, client.aborted_requests, engine.closed) == (0, 1, 1)
