"""The hop's data path (`vllama.serve.channel`): a ChannelServer and a ChannelClient talking on
127.0.0.1 in the test's own event loop (and once under uvloop, as in Serve's replicas)."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvloop

from vllama.errors import EngineDied, EngineFailed, InvalidRequest, ModelNotFound, VllamaError
from vllama.serve.channel import ChannelClient, ChannelServer, ReplicaStopping, frame, read_frame
from vllama.serve.hop import Piece, StreamStart

SECRET = b"s" * 32
START = StreamStart("replica-1", resumable=True, load_ns=11, prefill_ns=22)
PIECES = [
    Piece(b'{"response":"Hel"}\n', (1, 2), START),
    Piece(b'{"response":"lo"}\n', (3,)),
    Piece(b'{"done":true}\n', (), None, True),
]


async def until(condition: Callable[[], bool], timeout_s: float = 1.0) -> None:
    """Wait for `condition` (something the other end of a socket does) to hold."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


class Handler:
    """A scripted replica: streams `pieces`; answers other methods with `answers[method]` (an
    exception is raised). Records each request."""

    def __init__(self, pieces: list[Any] | None = None, answers: dict[str, Any] | None = None) -> None:
        self.pieces: list[Any] = PIECES if pieces is None else pieces
        self.answers = answers or {}
        self.requests: list[tuple[str, Any]] = []

    def __call__(self, method: str, argument: Any) -> AsyncIterator[Piece] | Awaitable[Any]:
        self.requests.append((method, argument))
        return self._stream() if method == "stream" else self._once(method, argument)

    async def _stream(self) -> AsyncIterator[Piece]:
        for piece in self.pieces:
            if isinstance(piece, BaseException):
                raise piece
            yield piece

    async def _once(self, method: str, argument: Any) -> Any:
        answer = self.answers.get(method, (method, argument))
        if isinstance(answer, BaseException):
            raise answer
        return answer


@contextlib.asynccontextmanager
async def serving(handler: Any, secret: bytes = SECRET) -> AsyncIterator[tuple[ChannelServer, ChannelClient, tuple[str, int]]]:
    server = ChannelServer(handler, SECRET)
    endpoint = await server.start("127.0.0.1")
    client = ChannelClient(secret)
    try:
        yield server, client, endpoint
    finally:
        client.close()
        await server.drain(0)


# --- frames ----------------------------------------------------------------------------------


async def test_frames_round_trip() -> None:
    objects = [(0, b"data", (1, 2), START, False), (1,), {"nested": [1.5, None]}]
    data = b"".join(frame(o) for o in objects)
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    assert [await read_frame(reader) for _ in objects] == objects
    with pytest.raises(EOFError):
        await read_frame(reader)


def test_frame_is_length_and_pickle() -> None:
    payload = frame(("stream", 1))
    (length,) = struct.unpack(">I", payload[:4])
    assert length == len(payload) - 4
    assert pickle.loads(payload[4:]) == ("stream", 1)


@pytest.mark.parametrize("cut", [2, 4, 10])
async def test_truncated_frame_is_eof(cut: int) -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(frame("a longer object than ten bytes")[:cut])
    reader.feed_eof()
    with pytest.raises(EOFError):
        await read_frame(reader)


# --- answers ---------------------------------------------------------------------------------


async def test_stream_pieces_arrive_in_order() -> None:
    handler = Handler()
    async with serving(handler) as (_, client, endpoint):
        received = [piece async for piece in client.stream(endpoint, {"prompt": "hi"})]
    assert received == PIECES
    assert all(type(p) is Piece for p in received)
    assert received[0].start == START and received[0].token_ids == (1, 2)
    assert received[-1].done is True
    assert handler.requests == [("stream", {"prompt": "hi"})]


@pytest.mark.parametrize(
    ("method", "answer"),
    [("once", b'{"response":"whole"}'), ("status", {"replica": "r1", "unfinished_requests": 0}),
     ("describe", {"family": "llama", "context_length": 4096})],
)
async def test_call_returns_the_value(method: str, answer: Any) -> None:
    handler = Handler(answers={method: answer})
    async with serving(handler) as (_, client, endpoint):
        assert await client.call(endpoint, method, "arg") == answer
    assert handler.requests == [(method, "arg")]


@pytest.mark.parametrize(
    "error",
    [
        InvalidRequest("prompt too long"),
        InvalidRequest("odd status", status_code=422),
        ModelNotFound.for_name("nope"),
        EngineDied("the engine stopped", replica="replica-7"),
        EngineFailed("engine error"),
    ],
)
@pytest.mark.parametrize("method", ["once", "stream"])
async def test_vllama_errors_arrive_as_themselves(error: VllamaError, method: str) -> None:
    handler = Handler(pieces=[PIECES[0], error], answers={"once": error})
    async with serving(handler) as (_, client, endpoint):
        with pytest.raises(VllamaError) as caught:
            if method == "once":
                await client.call(endpoint, "once", None)
            else:
                received = [piece async for piece in client.stream(endpoint, None)]
                raise AssertionError(f"no error after {received}")
    assert type(caught.value) is type(error)
    assert caught.value.message == error.message
    assert caught.value.status_code == error.status_code
    if isinstance(error, EngineDied):
        assert isinstance(caught.value, EngineDied) and caught.value.replica == "replica-7"


async def test_stream_error_comes_after_the_pieces_sent() -> None:
    handler = Handler(pieces=[PIECES[0], PIECES[1], EngineDied("gone", replica="r")])
    received: list[Piece] = []
    async with serving(handler) as (_, client, endpoint):
        with pytest.raises(EngineDied):
            async for piece in client.stream(endpoint, None):
                received.append(piece)
    assert received == PIECES[:2]


@pytest.mark.parametrize("method", ["once", "stream"])
async def test_unexpected_exception_is_an_internal_error(method: str) -> None:
    boom = RuntimeError("boom")
    handler = Handler(pieces=[boom], answers={"once": boom})
    async with serving(handler) as (server, client, endpoint):
        with pytest.raises(EngineFailed) as caught:
            if method == "once":
                await client.call(endpoint, "once", None)
            else:
                _ = [piece async for piece in client.stream(endpoint, None)]
        assert type(caught.value) is EngineFailed
        assert caught.value.message == "internal error: boom"
        assert caught.value.status_code == 500
        # The connection is still good for the next request.
        assert await client.call(endpoint, "status", None) == ("status", None)
        assert len(server._connections) == 1


async def test_unknown_method_is_refused() -> None:
    handler = Handler()
    async with serving(handler) as (_, client, endpoint):
        with pytest.raises(EngineFailed, match="unknown channel method 'nope'"):
            await client.call(endpoint, "nope", None)
    assert handler.requests == []


# --- connections -----------------------------------------------------------------------------


async def test_connections_are_reused() -> None:
    handler = Handler()
    async with serving(handler) as (server, client, endpoint):
        for _ in range(3):
            assert await client.call(endpoint, "once", 1) == ("once", 1)
            assert [p async for p in client.stream(endpoint, 2)] == PIECES
        assert len(handler.requests) == 6
        assert len(server._connections) == 1
        assert len(client._idle[endpoint]) == 1


async def test_concurrent_requests_use_separate_connections_then_pool_them() -> None:
    gate = asyncio.Event()

    async def handler(method: str, argument: Any) -> Any:
        await gate.wait()
        return argument

    async with serving(handler) as (server, client, endpoint):
        calls = [asyncio.ensure_future(client.call(endpoint, "once", i)) for i in range(3)]
        await until(lambda: server.in_flight == 3)
        assert len(server._connections) == 3
        gate.set()
        assert await asyncio.gather(*calls) == [0, 1, 2]
        assert len(client._idle[endpoint]) == 3
        assert await client.call(endpoint, "once", 9) == 9
        assert len(server._connections) == 3


async def test_closing_a_stream_early_cancels_the_handler() -> None:
    finished = asyncio.Event()
    produced: list[int] = []

    async def endless() -> AsyncIterator[Piece]:
        try:
            i = 0
            while True:
                produced.append(i)
                yield Piece(str(i).encode(), (i,))
                i += 1
                await asyncio.sleep(0.005)
        finally:
            finished.set()

    async with serving(lambda method, argument: endless()) as (server, client, endpoint):
        stream = client.stream(endpoint, None)
        async for piece in stream:
            assert piece.data == b"0"
            break
        await stream.aclose()  # type: ignore[attr-defined]  # an async generator
        await asyncio.wait_for(finished.wait(), 1)
        await until(lambda: server.in_flight == 0)
        assert endpoint not in client._idle or client._idle[endpoint] == []  # a cut connection is not pooled
        count = len(produced)
        await asyncio.sleep(0.05)
        assert len(produced) == count  # and nothing runs any more


async def test_cancelling_a_call_cancels_the_handler() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def handler(method: str, argument: Any) -> Any:
        started.set()
        try:
            await asyncio.sleep(30)
        finally:
            cancelled.set()

    async with serving(handler) as (server, client, endpoint):
        call = asyncio.ensure_future(client.call(endpoint, "once", None))
        await asyncio.wait_for(started.wait(), 1)
        assert server.in_flight == 1
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(cancelled.wait(), 1)
        await until(lambda: server.in_flight == 0)


async def test_slow_reader_holds_the_stream_back() -> None:
    """The replica stops making pieces while the ingress does not read them."""
    produced: list[int] = []

    async def big() -> AsyncIterator[Piece]:
        for i in range(400):
            produced.append(i)
            yield Piece(b"x" * 256 * 1024)

    async with serving(lambda method, argument: big()) as (server, client, endpoint):
        stream = client.stream(endpoint, None)
        await stream.__anext__()
        await asyncio.sleep(0.1)
        assert len(produced) < 200  # 100 MiB were not written ahead of the reader
        await stream.aclose()  # type: ignore[attr-defined]  # an async generator
        await until(lambda: server.in_flight == 0)


async def test_wrong_secret_is_refused() -> None:
    handler = Handler()
    async with serving(handler, secret=b"w" * 32) as (server, client, endpoint):
        with pytest.raises(ConnectionError):
            await client.call(endpoint, "once", None)
        with pytest.raises(ConnectionError):
            _ = [piece async for piece in client.stream(endpoint, None)]
        await until(lambda: not server._connections)
    assert handler.requests == []


async def test_drain_lets_a_stream_finish_and_refuses_new_requests() -> None:
    release = asyncio.Event()

    async def slow() -> AsyncIterator[Piece]:
        yield PIECES[0]
        await release.wait()
        yield PIECES[2]

    handler = Handler(answers={})

    def route(method: str, argument: Any) -> Any:
        return slow() if method == "stream" else handler(method, argument)

    async with serving(route) as (server, client, endpoint):
        stream = client.stream(endpoint, None)
        assert await stream.__anext__() == PIECES[0]
        assert await client.call(endpoint, "status", None) == ("status", None)  # a second, pooled connection
        drained = asyncio.ensure_future(server.drain(5))
        await until(lambda: server.stopping)
        with pytest.raises(EngineDied) as caught:
            await client.call(endpoint, "once", None)
        assert caught.value.message == "this replica is stopping"
        assert handler.requests == [("status", None)]  # the refused request never ran
        # Status is still answered while draining (the operator's view of a stopping replica).
        assert await client.call(endpoint, "status", None) == ("status", None)
        await asyncio.sleep(0.25)
        assert not drained.done()  # the stream is still in flight
        release.set()
        assert [piece async for piece in stream] == [PIECES[2]]
        await asyncio.wait_for(drained, 1)
        assert server.in_flight == 0
        # Drained: the pooled connection is closed and the port no longer listens.
        with pytest.raises(ConnectionError):
            await client.call(endpoint, "status", None)


async def test_replica_stopping_keeps_its_type() -> None:
    async with serving(Handler()) as (server, client, endpoint):
        await client.call(endpoint, "status", None)
        server.stopping = True
        with pytest.raises(ReplicaStopping):
            await client.call(endpoint, "once", None)


def test_engine_died_subclass_pickles_as_itself() -> None:
    again = pickle.loads(pickle.dumps(ReplicaStopping("stopping", replica="r")))
    assert type(again) is ReplicaStopping and again.message == "stopping" and again.replica == "r"


@pytest.mark.parametrize("settle_s", [0, 0.05])
async def test_pooled_connection_closed_by_the_server_is_replaced(settle_s: float) -> None:
    handler = Handler()
    async with serving(handler) as (server, client, endpoint):
        assert await client.call(endpoint, "once", 1) == ("once", 1)
        for connection in list(server._connections):
            connection.close()
        await asyncio.sleep(settle_s)  # 0: the client finds out only when it reads
        assert await client.call(endpoint, "once", 2) == ("once", 2)
        assert [p async for p in client.stream(endpoint, 3)] == PIECES
    assert handler.requests == [("once", 1), ("once", 2), ("stream", 3)]


async def test_server_gone_gives_connection_error() -> None:
    handler = Handler()
    async with serving(handler) as (server, client, endpoint):
        assert await client.call(endpoint, "once", 1) == ("once", 1)
        await server.drain(0)
        with pytest.raises(ConnectionError):
            await client.call(endpoint, "once", 2)
        with pytest.raises(ConnectionError):
            _ = [piece async for piece in client.stream(endpoint, 3)]
    assert handler.requests == [("once", 1)]


# --- uvloop ----------------------------------------------------------------------------------


def test_under_uvloop() -> None:
    """Serve's replicas run uvloop, whose transports are not asyncio.Transport subclasses."""

    async def scenario() -> None:
        finished = asyncio.Event()

        async def endless() -> AsyncIterator[Piece]:
            try:
                while True:
                    yield Piece(b"tick", (1,))
                    await asyncio.sleep(0.005)
            finally:
                finished.set()

        handler = Handler()

        def route(method: str, argument: Any) -> Any:
            return endless() if argument == "endless" else handler(method, argument)

        async with serving(route) as (server, client, endpoint):
            assert [p async for p in client.stream(endpoint, "x")] == PIECES
            assert await client.call(endpoint, "once", "y") == ("once", "y")
            assert len(server._connections) == 1
            stream = client.stream(endpoint, "endless")
            assert (await stream.__anext__()).data == b"tick"
            await stream.aclose()  # type: ignore[attr-defined]  # an async generator
            await asyncio.wait_for(finished.wait(), 1)
            await until(lambda: server.in_flight == 0)
        async with serving(Handler(), secret=b"w" * 32) as (_, client, endpoint):
            with pytest.raises(ConnectionError):
                await client.call(endpoint, "once", None)

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(), 5))
    finally:
        loop.close()
