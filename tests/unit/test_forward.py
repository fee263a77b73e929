"""The ingress's side of the hop (`vllama.serve.forward.RemoteModel`): replica choice and
failover, against a scripted channel and a fixed set of replicas; no Ray, no sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from vllama.errors import EngineDied, InvalidRequest, ModelNotFound, Overloaded
from vllama.ollama_api.schema import ChatRequest, GenerateRequest
from vllama.serve import forward, routing
from vllama.serve.admission import SERVER_BUSY, QueueBound
from vllama.serve.forward import MAX_ATTEMPTS, RemoteModel
from vllama.serve.hop import Call, Piece, StreamStart

REPLICAS = ["r1", "r2"]
ENDPOINTS = {"r1": ("10.0.0.1", 5001), "r2": ("10.0.0.2", 5002), "r3": ("10.0.0.3", 5003)}
BY_ENDPOINT = {endpoint: replica for replica, endpoint in ENDPOINTS.items()}


class FakeChannel:
    """Plays `scripts` in order, one per request whatever replica it goes to. A script is a list
    of pieces, possibly ending with an exception (raised after the pieces), or for `call` a value
    or an exception. Records (replica, call) and the model's in-flight count when it started."""

    def __init__(self, *scripts: Any) -> None:
        self.scripts = list(scripts)
        self.calls: list[tuple[str, Call]] = []
        self.model: RemoteModel | None = None
        self.in_flight_seen: list[int] = []

    def _next(self, endpoint: tuple[str, int], call: Any) -> Any:
        replica = BY_ENDPOINT[endpoint]
        self.calls.append((replica, call))
        if self.model is not None:
            self.in_flight_seen.append(self.model._in_flight.get(replica, 0))
        assert self.scripts, "more requests than scripted"
        return self.scripts.pop(0)

    async def stream(self, endpoint: tuple[str, int], call: Call) -> AsyncIterator[Piece]:
        for item in self._next(endpoint, call):
            if isinstance(item, BaseException):
                raise item
            yield item

    async def call(self, endpoint: tuple[str, int], method: str, call: Call) -> Any:
        assert method == "once"
        answer = self._next(endpoint, call)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    @property
    def replicas(self) -> list[str]:
        return [replica for replica, _ in self.calls]


class FakeHandle:
    """Only `.options()` is used when every endpoint is known and a router exists."""

    def options(self, **_: Any) -> FakeHandle:
        return self

    @property
    def endpoint(self) -> Any:
        raise AssertionError("the Serve handle must not be used in these tests")


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The running replicas Serve's router knows (a test may change the list)."""
    replicas = list(REPLICAS)
    monkeypatch.setattr(
        routing, "replicas_of",
        lambda app, deployment: [SimpleNamespace(replica_id=SimpleNamespace(unique_id=r)) for r in replicas],
    )
    monkeypatch.setattr(routing, "has_router", lambda app, deployment: True)
    return replicas


def remote(channel: FakeChannel, *, prefix_routing: bool = False, failover: bool = True) -> RemoteModel:
    model = RemoteModel(
        "m", FakeHandle(), channel, app_name="app", deployment="dep",  # type: ignore[arg-type]
        prefix_routing=prefix_routing, failover=failover,
    )
    model._endpoints.update(ENDPOINTS)
    channel.model = model
    return model


async def stream(model: RemoteModel, parsed: Any = None, api: str = "ollama") -> list[bytes]:
    return [data async for data in model.stream(api, "chat", b"{}", parsed, time.monotonic_ns(), "m")]  # type: ignore[arg-type]


async def stream_until_error(model: RemoteModel) -> tuple[list[bytes], BaseException]:
    sent: list[bytes] = []
    try:
        async for data in model.stream("ollama", "chat", b"{}", None, time.monotonic_ns(), "m"):
            sent.append(data)
    except Exception as exc:  # noqa: BLE001  # whatever it is: the test checks its type
        return sent, exc
    raise AssertionError(f"no error after {sent}")


async def once(model: RemoteModel, parsed: Any = None) -> bytes:
    return await model.once("ollama", "chat", b"{}", parsed, time.monotonic_ns(), "m")


def chat(*contents: str) -> ChatRequest:
    """A conversation: system prompt, then alternating user and assistant turns."""
    messages = [{"role": "system", "content": "Be thorough and precise in every answer. " * 20}]
    for i, content in enumerate(contents):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": content})
    return ChatRequest.model_validate({"model": "m", "messages": messages})


START = StreamStart("r1", resumable=True, load_ns=100, prefill_ns=200)


# --- streams ---------------------------------------------------------------------------------


async def test_stream_goes_to_one_replica(running: list[str]) -> None:
    channel = FakeChannel([Piece(b"a", (1,), START), Piece(b"b", (2,), done=True)])
    model = remote(channel)
    assert await stream(model) == [b"a", b"b"]
    assert len(channel.calls) == 1
    assert channel.calls[0][1].resume is None and channel.calls[0][1].avoid == ()
    assert channel.in_flight_seen == [1]
    assert model._in_flight == {channel.replicas[0]: 0}


@pytest.mark.parametrize("failure", [ConnectionError("refused"), EngineDied("dead"), EOFError(), OSError("reset")])
async def test_stream_failing_before_any_piece_is_retried_elsewhere(running: list[str], failure: Exception) -> None:
    channel = FakeChannel([failure], [Piece(b"second", (5,), START), Piece(b"end", done=True)])
    model = remote(channel)
    assert await stream(model) == [b"second", b"end"]
    first, second = channel.replicas
    assert first != second
    assert channel.calls[1][1].avoid == (first,)
    assert channel.calls[1][1].resume is None  # nothing was sent: a plain retry
    assert model._suspect[first] > time.monotonic()
    assert model._in_flight == {first: 0, second: 0}


async def test_stream_resumed_on_another_replica(running: list[str]) -> None:
    channel = FakeChannel(
        [Piece(b"x", (1, 2), START), Piece(b"", ()), Piece(b"y", (3,)), EngineDied("engine died", replica="r1")],
        [Piece(b"z", (4,)), Piece(b"end", (), done=True)],
    )
    model = remote(channel)
    before = time.monotonic_ns()
    assert await stream(model) == [b"x", b"y", b"z", b"end"]
    (first, _), (second, call) = channel.calls
    assert second != first
    assert call.resume is not None
    assert call.resume.output_token_ids == (1, 2, 3)
    assert call.resume.start == START
    assert 0 < call.resume.first_token_ns < time.monotonic_ns() - before + 1
    assert call.avoid == (first,)
    assert model._in_flight == {first: 0, second: 0}


async def test_stream_resumed_twice_carries_all_tokens(running: list[str]) -> None:
    running.append("r3")
    channel = FakeChannel(
        [Piece(b"a", (1,), START), ConnectionError("gone")],
        [Piece(b"b", (2,)), ConnectionError("gone too")],
        [Piece(b"c", (3,), done=True)],
    )
    model = remote(channel)
    assert await stream(model) == [b"a", b"b", b"c"]
    assert len(set(channel.replicas)) == 3
    third = channel.calls[2][1]
    assert third.resume is not None and third.resume.output_token_ids == (1, 2)
    assert third.resume.start == START  # the first attempt's figures, still
    assert third.avoid == tuple(channel.replicas[:2])


@pytest.mark.parametrize(
    ("start", "failover"),
    [
        (StreamStart("r1", resumable=False), True),  # vLLM's /v1 path, or tools: cannot move
        (START, False),  # failover switched off
        (None, True),  # the replica never said it can be resumed
    ],
)
async def test_stream_not_resumable_ends_with_engine_died(
    running: list[str], start: StreamStart | None, failover: bool
) -> None:
    channel = FakeChannel([Piece(b"x", (1,), start), Piece(b"y", (2,)), ConnectionError("gone")], [Piece(b"never")])
    model = remote(channel, failover=failover)
    sent, error = await stream_until_error(model)
    assert sent == [b"x", b"y"]
    assert type(error) is EngineDied
    assert "stopped during this answer" in error.message
    assert len(channel.calls) == 1
    assert model._in_flight == {channel.replicas[0]: 0}


async def test_failover_off_still_retries_before_the_first_piece(running: list[str]) -> None:
    """Nothing reached the client yet: sending the request again is safe with or without failover."""
    channel = FakeChannel([ConnectionError("gone")], [Piece(b"ok", done=True)])
    assert await stream(remote(channel, failover=False)) == [b"ok"]
    assert len(set(channel.replicas)) == 2


async def test_failure_after_the_final_piece_is_swallowed(running: list[str]) -> None:
    channel = FakeChannel([Piece(b"x", (1,), START), Piece(b"final", (), done=True), ConnectionError("late")])
    model = remote(channel)
    assert await stream(model) == [b"x", b"final"]
    assert len(channel.calls) == 1
    assert model._in_flight == {channel.replicas[0]: 0}


@pytest.mark.parametrize(
    "error", [InvalidRequest("bad request"), ModelNotFound("no such model"), RuntimeError("our own bug")]
)
@pytest.mark.parametrize("after_pieces", [False, True])
async def test_request_errors_are_not_retried(running: list[str], error: Exception, after_pieces: bool) -> None:
    script = [Piece(b"x", (1,), START), error] if after_pieces else [error]
    channel = FakeChannel(script, [Piece(b"never")])
    model = remote(channel)
    sent, raised = await stream_until_error(model)
    assert raised is error
    assert sent == ([b"x"] if after_pieces else [])
    assert len(channel.calls) == 1
    assert model._suspect == {}  # not the replica's fault
    assert model._in_flight == {channel.replicas[0]: 0}


async def test_stream_gives_up_after_max_attempts(running: list[str]) -> None:
    channel = FakeChannel(*([ConnectionError("gone")] for _ in range(MAX_ATTEMPTS)))
    model = remote(channel)
    sent, error = await stream_until_error(model)
    assert sent == []
    assert type(error) is EngineDied
    assert f"failed this request {MAX_ATTEMPTS} times" in error.message
    assert len(channel.calls) == MAX_ATTEMPTS
    assert channel.calls[-1][1].avoid == tuple(channel.replicas[:-1])
    assert all(n == 0 for n in model._in_flight.values())


# --- whole answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [ConnectionError("gone"), EngineDied("dead")])
async def test_once_retries_on_replica_failures(running: list[str], failure: Exception) -> None:
    channel = FakeChannel(failure, b"answer")
    model = remote(channel)
    assert await once(model) == b"answer"
    first, second = channel.replicas
    assert first != second
    assert channel.calls[1][1].avoid == (first,)
    assert model._in_flight == {first: 0, second: 0}


async def test_once_does_not_retry_a_bad_request(running: list[str]) -> None:
    error = InvalidRequest("bad")
    channel = FakeChannel(error, b"never")
    model = remote(channel)
    with pytest.raises(InvalidRequest) as caught:
        await once(model)
    assert caught.value is error
    assert len(channel.calls) == 1
    assert model._in_flight == {channel.replicas[0]: 0}


async def test_once_gives_up_after_max_attempts(running: list[str]) -> None:
    channel = FakeChannel(*(EngineDied("dead") for _ in range(MAX_ATTEMPTS)))
    model = remote(channel)
    with pytest.raises(EngineDied, match=f"failed this request {MAX_ATTEMPTS} times"):
        await once(model)
    assert len(channel.calls) == MAX_ATTEMPTS
    assert channel.in_flight_seen == [1] * MAX_ATTEMPTS
    assert all(n == 0 for n in model._in_flight.values())


# --- which replica ---------------------------------------------------------------------------


async def test_least_loaded_of_the_replicas(running: list[str]) -> None:
    channel = FakeChannel(b"a", b"b")
    model = remote(channel)
    model._in_flight.update({"r1": 3, "r2": 1})
    await once(model)
    model._in_flight.update({"r1": 0})
    await once(model)
    assert channel.replicas == ["r2", "r1"]


def favourite_of(parsed: Any, replicas: list[str] = REPLICAS) -> str:
    """The rendezvous choice for a request's conversation."""
    key = forward.ollama_prefix_key(parsed)
    return max(replicas, key=lambda r: routing.rendezvous(key.affinity, r))


async def test_turns_of_a_conversation_go_to_one_replica(running: list[str]) -> None:
    turns = [
        chat("Explain KV caches."),
        chat("Explain KV caches.", "They hold keys and values.", "And prefix caching?"),
        chat("Explain KV caches.", "They hold keys and values.", "And prefix caching?", "It reuses them.", "Why?"),
    ]
    key = forward.ollama_prefix_key(turns[0])
    assert all(forward.ollama_prefix_key(t) == key for t in turns)
    favourite = favourite_of(turns[0])
    channel = FakeChannel(b"1", b"2", b"3")
    model = remote(channel, prefix_routing=True)
    for turn in turns:
        await once(model, turn)
    assert channel.replicas == [favourite] * 3
    assert all(call.prefix == key for _, call in channel.calls)
    assert model._memory.holders(key.affinity, REPLICAS) == {favourite}
    assert len(model._memory) == 1


async def test_conversation_stays_on_its_replica(running: list[str]) -> None:
    """The first turn goes where load sends it (not the rendezvous choice); the next turns follow
    it there."""
    first_turn = chat("Explain KV caches. " * 10)
    later_turn = chat("Explain KV caches. " * 10, "They hold keys and values.", "And prefix caching?")
    last_turn = chat("Explain KV caches. " * 10, "They hold keys and values.", "And prefix caching?", "Yes.", "More?")
    key = forward.ollama_prefix_key(first_turn)
    favourite = favourite_of(first_turn)
    other = next(r for r in REPLICAS if r != favourite)
    channel = FakeChannel(b"one", b"two", b"three")
    model = remote(channel, prefix_routing=True)
    model._in_flight[favourite] = 20  # too busy: load decides the first turn
    assert await once(model, first_turn) == b"one"
    assert model._memory.holders(key.affinity, REPLICAS) == {other}
    model._in_flight[favourite] = 0
    assert await once(model, later_turn) == b"two"
    assert await once(model, last_turn) == b"three"
    assert channel.replicas == [other, other, other]
    assert channel.calls[0][1].prefix == key  # the key travels with the call
    assert model._memory.holders(key.affinity, REPLICAS) == {other}


async def test_load_within_the_imbalance_does_not_move_a_conversation(running: list[str]) -> None:
    turn = chat("Explain KV caches.")
    favourite = favourite_of(turn)
    other = next(r for r in REPLICAS if r != favourite)
    channel = FakeChannel(b"one", b"two")
    model = remote(channel, prefix_routing=True)
    model._in_flight.update({favourite: 2, other: 0})  # a new conversation: `prefer`'s spread, not more
    await once(model, turn)
    model._in_flight.update({favourite: 10})  # under way: up to `imbalance` (8) more keeps it...
    await once(model, turn)
    assert channel.replicas == [favourite, other]  # ... and 10 is more: load decides


async def test_shared_system_prompt_does_not_pull_new_conversations(running: list[str]) -> None:
    """A new conversation with the same system prompt goes to its own rendezvous choice, not
    where an earlier conversation with that system prompt went."""
    channel = FakeChannel(b"one", b"two")
    model = remote(channel, prefix_routing=True)
    fresh = chat("Something else entirely. " * 2)
    favourite = favourite_of(fresh)
    other = next(r for r in REPLICAS if r != favourite)
    model._in_flight[favourite] = 20
    await once(model, chat("An earlier conversation. " * 2))  # it, and its system prompt, land on `other`
    model._in_flight[favourite] = 0
    await once(model, fresh)
    assert channel.replicas == [other, favourite]


async def test_conversations_sharing_a_system_prompt_spread(running: list[str]) -> None:
    conversations = [chat(f"Question number {i}?") for i in range(40)]
    channel = FakeChannel(*(b"a" for _ in conversations))
    model = remote(channel, prefix_routing=True)
    for conversation in conversations:
        await once(model, conversation)
    assert channel.replicas == [favourite_of(c) for c in conversations]
    assert 10 <= channel.replicas.count("r1") <= 30
    assert len(model._memory) == 40


async def test_memory_records_every_attempt(running: list[str]) -> None:
    """A conversation's replica fails: the retry's replica is remembered too, and the next turn
    goes there while the failed one is suspect."""
    first_turn = chat("Tell me a story.")
    later_turn = chat("Tell me a story.", "Once upon a time.", "Go on.")
    key = forward.ollama_prefix_key(first_turn)
    favourite = favourite_of(first_turn)
    other = next(r for r in REPLICAS if r != favourite)
    channel = FakeChannel(ConnectionError("gone"), b"story", b"more")
    model = remote(channel, prefix_routing=True)
    assert await once(model, first_turn) == b"story"
    assert channel.replicas == [favourite, other]
    assert model._memory.holders(key.affinity, REPLICAS) == {favourite, other}
    assert await once(model, later_turn) == b"more"
    assert channel.replicas[2] == other


async def test_one_running_replica_is_remembered(running: list[str]) -> None:
    running.remove("r2")
    turn = chat("Hello.")
    key = forward.ollama_prefix_key(turn)
    channel = FakeChannel(b"a")
    model = remote(channel, prefix_routing=True)
    model._in_flight["r1"] = 50
    await once(model, turn)
    assert channel.replicas == ["r1"]
    assert model._memory.holders(key.affinity, REPLICAS) == {"r1"}


async def test_ollama_generate_is_keyed(running: list[str]) -> None:
    request = GenerateRequest.model_validate({"model": "m", "prompt": "Once upon a time " * 30})
    channel = FakeChannel(b"a")
    model = remote(channel, prefix_routing=True)
    await model.once("ollama", "generate", b"{}", request, time.monotonic_ns(), "m")
    key = forward.ollama_prefix_key(request)
    assert channel.calls[0][1].prefix == key
    assert channel.replicas == [max(REPLICAS, key=lambda r: routing.rendezvous(key.affinity, r))]


@pytest.mark.parametrize(
    "body",
    [
        {"messages": [{"role": "user", "content": "Hello there. " * 30}]},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "q"}]}]},
        {"prompt": "complete this " * 30},
        {"prompt": ["first", "second"]},
    ],
)
async def test_openai_bodies_are_keyed_too(running: list[str], body: dict[str, Any]) -> None:
    channel = FakeChannel(b"a")
    model = remote(channel, prefix_routing=True)
    await model.once("openai", "chat", b"{}", body, time.monotonic_ns(), "m")
    key = forward.openai_prefix_key(body)
    assert key is not None
    assert channel.calls[0][1].prefix == key
    assert channel.replicas == [max(REPLICAS, key=lambda r: routing.rendezvous(key.affinity, r))]
    assert model._memory.holders(key.affinity, REPLICAS) == set(channel.replicas)
    assert len(model._memory) == 1


@pytest.mark.parametrize(
    ("api", "parsed"),
    [
        ("openai", {"messages": []}),  # nothing to key on
        ("openai", {"prompt": [1, 2, 3]}),
        ("openai", None),
        ("ollama", {"messages": [{"role": "user", "content": "q"}]}),  # a dict is an OpenAI body only
        ("ollama", None),
    ],
)
async def test_requests_without_a_key(running: list[str], api: str, parsed: Any) -> None:
    channel = FakeChannel(b"a")
    model = remote(channel, prefix_routing=True)
    await model.once(api, "chat", b"{}", parsed, time.monotonic_ns(), "m")  # type: ignore[arg-type]
    assert channel.calls[0][1].prefix is None
    assert len(model._memory) == 0


async def test_no_prefix_key_without_prefix_routing(running: list[str]) -> None:
    channel = FakeChannel(b"a", b"b")
    model = remote(channel, prefix_routing=False)
    await once(model, chat("Hello. " * 50))
    await model.once("openai", "chat", b"{}", {"prompt": "hi"}, time.monotonic_ns(), "m")
    assert [call.prefix for _, call in channel.calls] == [None, None]
    assert len(model._memory) == 0


async def test_failed_replica_is_avoided_and_suspect(running: list[str]) -> None:
    # An unrelated conversation whose rendezvous choice is r1, the replica that is going to fail.
    unrelated, another = [
        c for c in (chat(f"Topic number {i}. " * 60) for i in range(100))
        if max(REPLICAS, key=lambda r: routing.rendezvous(forward.ollama_prefix_key(c).affinity, r)) == "r1"
    ][:2]
    channel = FakeChannel([ConnectionError("r1 went away")], [Piece(b"ok", done=True)], b"unrelated", b"later")
    model = remote(channel, prefix_routing=False)
    model._in_flight["r2"] = 1  # make r1 the first choice of the failing request
    assert await stream(model) == [b"ok"]
    model._in_flight["r2"] = 0
    assert channel.replicas == ["r1", "r2"]
    assert model._suspect["r1"] > time.monotonic()
    model._prefix_routing = True
    assert await once(model, unrelated) == b"unrelated"
    assert channel.replicas[2] == "r2"  # r1 is passed over while suspect
    model._suspect["r1"] = 0.0  # the suspicion expired
    assert await once(model, another) == b"later"
    assert channel.replicas[3] == "r1"


async def test_all_replicas_suspect_still_serve(running: list[str]) -> None:
    channel = FakeChannel(b"a")
    model = remote(channel)
    model._suspect.update({r: time.monotonic() + 60 for r in REPLICAS})
    assert await once(model) == b"a"


async def test_client_leaving_a_stream_closes_the_replicas_stream(running: list[str]) -> None:
    """A client that hangs up must cut the channel stream (the replica then aborts the engine
    request) and give the replica's in-flight count back."""
    closed = asyncio.Event()

    class Endless(FakeChannel):
        async def stream(self, endpoint: tuple[str, int], call: Call) -> AsyncIterator[Piece]:
            self._next(endpoint, call)
            try:
                while True:
                    yield Piece(b"tick", (1,), START)
                    await asyncio.sleep(0)
            finally:
                closed.set()

    channel = Endless([])
    model = remote(channel)
    answer = model.stream("ollama", "chat", b"{}", None, time.monotonic_ns(), "m")
    assert await answer.__anext__() == b"tick"
    await answer.aclose()  # type: ignore[attr-defined]  # an async generator
    await asyncio.wait_for(closed.wait(), 1)
    assert model._in_flight == {channel.replicas[0]: 0}
    assert model._suspect == {}


class EndpointHandle(FakeHandle):
    """Answers `endpoint.remote(pin=...)` from a table; a replica missing from it fails."""

    def __init__(self, table: dict[str, tuple[str, int]]) -> None:
        self.table = table
        self.asked: list[str | None] = []

    @property
    def endpoint(self) -> Any:
        handle = self

        class Method:
            def remote(self, pin: str | None = None) -> Any:
                handle.asked.append(pin)

                async def answer() -> tuple[str, tuple[str, int]]:
                    if pin not in handle.table:
                        raise RuntimeError(f"replica {pin} is gone")
                    return pin, handle.table[pin]

                return asyncio.ensure_future(answer())  # awaitable and cancellable, as Serve's responses

        return Method()


async def test_an_endpoint_that_cannot_be_learned_is_a_replica_failure(running: list[str]) -> None:
    """A replica chosen before anyone knew its endpoint, and gone before it could tell it: the
    request goes to another replica instead of failing."""
    channel = FakeChannel(b"from r2")
    handle = EndpointHandle({"r2": ENDPOINTS["r2"]})
    model = RemoteModel("m", handle, channel, app_name="app", deployment="dep",  # type: ignore[arg-type]
                        prefix_routing=False, failover=True)
    channel.model = model
    model._in_flight["r2"] = 1  # so that r1, the less loaded, is tried first
    assert await once(model) == b"from r2"
    assert handle.asked[:2] == ["r1", "r2"]
    assert channel.replicas == ["r2"]
    assert model._suspect.get("r1", 0) > time.monotonic()
    assert model._in_flight == {"r1": 0, "r2": 1}


def test_a_failed_load_is_the_clients_error_with_its_cause() -> None:
    """What an engine replica raised for its model's failed load (Ray wraps it, keeping the
    cause), or Serve's own message: the client's error names the model and the cause; a bad
    setting is 400, the rest 500; any other error is not a load failure."""
    from vllama.errors import ConfigError

    model = remote(FakeChannel(b""))
    wrapped = RuntimeError("RayTaskError(ConfigError)")
    wrapped.cause = ConfigError("invalid engine settings for model 'm': max_model_len must be positive")  # type: ignore[attr-defined]
    failed = model._load_failed(wrapped)
    assert failed is not None and failed.status_code == 400
    assert failed.message == "model 'm' failed to load: invalid engine settings for model 'm': max_model_len must be positive"
    memory = model._load_failed(ConfigError("engine for model 'm' failed to start: less than desired CPU memory"))
    assert memory is not None and memory.status_code == 500
    assert model._load_failed("model directory '/m' has no config.json").message.endswith("has no config.json")  # type: ignore[union-attr]
    assert model._load_failed(TimeoutError("slow")) is None


# --- bounded waiting (`admission.py`) -----------------------------------------------------------


class HeldChannel(FakeChannel):
    """Streams that hold until `release` is set: requests stay in flight while the test sends more."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def stream(self, endpoint: tuple[str, int], call: Call) -> AsyncIterator[Piece]:
        self.calls.append((BY_ENDPOINT[endpoint], call))
        yield Piece(data=b"first\n", token_ids=(1,))
        await self.release.wait()
        yield Piece(data=b"last\n", done=True)


async def test_past_replicas_times_ongoing_plus_queued_the_answer_is_server_busy(running: list[str]) -> None:
    channel = HeldChannel()
    model = RemoteModel(
        "m", FakeHandle(), channel, app_name="app", deployment="dep",  # type: ignore[arg-type]
        prefix_routing=False, failover=True, bound=QueueBound(per_replica=2, queued=1),
    )
    model._endpoints.update(ENDPOINTS)
    streams = [model.stream("ollama", "chat", b"{}", None, time.monotonic_ns(), "m") for _ in range(6)]  # type: ignore[arg-type]
    firsts = [await anext(s) for s in streams[:5]]  # 2 replicas x 2 + 1 queued
    assert firsts == [b"first\n"] * 5 and model._admission.admitted == 5
    with pytest.raises(Overloaded) as refused:
        await anext(streams[5])
    assert refused.value.status_code == 503 and refused.value.message == SERVER_BUSY
    assert len(channel.calls) == 5  # the refused one reached no replica
    assert model._admission.bound.capacity(model.replica_count()) == 5
    with pytest.raises(Overloaded):  # a whole answer is bounded the same way
        await once(model)

    channel.release.set()
    assert [[piece async for piece in s] for s in streams[:5]] == [[b"last\n"]] * 5
    assert model._admission.admitted == 0
    late = model.stream("ollama", "chat", b"{}", None, time.monotonic_ns(), "m")  # type: ignore[arg-type]
    assert [piece async for piece in late] == [b"first\n", b"last\n"]  # room again once they ended


async def test_a_request_that_fails_or_is_left_gives_its_place_back(running: list[str]) -> None:
    channel = FakeChannel(*[[EngineDied("gone")]] * MAX_ATTEMPTS, [Piece(data=b"a\n", token_ids=(1,)), Piece(data=b"b\n")])
    model = RemoteModel(
        "m", FakeHandle(), channel, app_name="app", deployment="dep",  # type: ignore[arg-type]
        prefix_routing=False, failover=True, bound=QueueBound(per_replica=1, queued=0),
    )
    model._endpoints.update(ENDPOINTS)
    with pytest.raises(EngineDied):
        await stream(model)
    assert model._admission.admitted == 0
    left = model.stream("ollama", "chat", b"{}", None, time.monotonic_ns(), "m")  # type: ignore[arg-type]
    assert await anext(left) == b"a\n"
    await left.aclose()  # the client went away
    assert model._admission.admitted == 0


async def test_no_bound_when_queued_is_minus_one(running: list[str]) -> None:
    channel = HeldChannel()
    model = RemoteModel(
        "m", FakeHandle(), channel, app_name="app", deployment="dep",  # type: ignore[arg-type]
        prefix_routing=False, failover=True, bound=QueueBound(per_replica=1, queued=-1),
    )
    model._endpoints.update(ENDPOINTS)
    streams = [model.stream("ollama", "chat", b"{}", None, time.monotonic_ns(), "m") for _ in range(20)]  # type: ignore[arg-type]
    assert [await anext(s) for s in streams] == [b"first\n"] * 20
    channel.release.set()
    for s in streams:
        await s.aclose()
