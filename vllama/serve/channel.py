"""The hop's data path: the ingress and an engine replica talk over a plain TCP connection.

Why not Serve's handle path: measured on the tiny model at 32 concurrent streams (2 cores), a
request through a deployment handle (gRPC transport, our own request router) cost about 4 ms of
the ingress's CPU and 3 ms more of the engine replica's than the same request answered straight
over HTTP, per request, whatever the number of chunks: Serve's per-request machinery (router
tasks and futures across threads, per-request metrics and logs, pickled arguments, the
rejection protocol's extra message). That halved throughput at 8 streams (docs/ARCHITECTURE.md).
Serve keeps what it is good at: it places, starts, health-checks, scales and stops the replicas,
and tells every ingress which replicas are running (`routing.py`); the bytes go here.

The protocol, on a connection the ingress opened (one request at a time on it, then back to
its pool):
- first, the application's secret (`SECRET_BYTES` bytes), so that only vllama's own processes
  can use an engine's port;
- then requests: a frame holding `pickle((method, argument))`, `method` one of `METHODS`;
- answers: frames holding pickled tuples: `(PIECE, data, token_ids, start, done)` for each
  piece of a stream, then `(END,)`; or `(RESULT, value)`; or `(ERROR, VllamaError)`.
A frame is a 4-byte big-endian length and that many bytes. The ingress cancels a request by
closing the connection: the replica notices at once (its protocol's `connection_lost`) and
cancels the request, which aborts the engine request.

Frames are pickles: both ends are vllama's own processes, and a connection is served only after
the secret (kept in Ray's key-value store, like Ray's own cluster token) has been shown. Like
Ray's own traffic between nodes, the channel is not encrypted: a cluster's network is trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import pickle
import secrets
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from vllama.errors import EngineDied, EngineFailed, VllamaError
from vllama.serve.hop import Piece

logger = logging.getLogger("vllama")

_LENGTH = struct.Struct(">I")
SECRET_BYTES = 32
PIECE, END, RESULT, ERROR = 0, 1, 2, 3
METHODS = frozenset({"stream", "once", "status", "describe", "metrics", "keep_alive"})
CONNECT_TIMEOUT_S = 10.0
#: Idle connections kept per replica by each ingress replica.
_IDLE_KEPT = 64


class ReplicaStopping(EngineDied):
    """The replica is draining (downscale, redeploy, stop): the request goes elsewhere."""


def channel_secret(app_name: str) -> bytes:
    """The secret of this application's channels: made by whichever process asks first, kept in
    Ray's cluster-wide key-value store, so that every replica of the application (ingress and
    engines, on any node) has the same one, and a redeploy does not change it."""
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_put

    key = f"vllama/{app_name}/channel-secret".encode()
    _internal_kv_put(key, secrets.token_bytes(SECRET_BYTES), overwrite=False, namespace="vllama")
    secret = _internal_kv_get(key, namespace="vllama")
    assert isinstance(secret, bytes) and len(secret) == SECRET_BYTES
    return secret


def frame(obj: Any) -> bytes:
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next frame's object; EOFError when the connection ends."""
    try:
        header = await reader.readexactly(4)
        (length,) = _LENGTH.unpack(header)
        return pickle.loads(await reader.readexactly(length))
    except asyncio.IncompleteReadError:
        raise EOFError from None


def _keepalive(sock: socket.socket | None) -> None:
    """Notice a peer whose node went away (no FIN ever comes) within about half a minute."""
    if sock is None:
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


Handler = Callable[[str, Any], "AsyncIterator[Piece] | Awaitable[Any]"]


class ChannelServer:
    """The engine replica's end: serves requests from ingress replicas with `handler`, which
    returns an async iterator of pieces for `stream` and an awaitable for the other methods."""

    def __init__(self, handler: Handler, secret: bytes) -> None:
        self._handler = handler
        self._secret = secret
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.in_flight = 0
        self.stopping = False

    async def start(self, host: str) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, 0)
        return host, int(self._server.sockets[0].getsockname()[1])

    async def drain(self, timeout_s: float) -> None:
        """Take no new requests, let those in flight finish (at most `timeout_s`), then close."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.1)
        for connection in list(self._connections):
            connection.close()

    async def serve(self, connection: _Connection, method: str, argument: Any) -> None:
        """Run one request, its answer written to `connection`; cancelled if the ingress hangs up."""
        if self.stopping and method in ("stream", "once"):
            connection.write(frame((ERROR, ReplicaStopping("this replica is stopping"))))
            return
        self.in_flight += 1
        try:
            if method not in METHODS:
                raise EngineFailed(f"unknown channel method {method!r}")
            if method == "stream":
                pieces = self._handler(method, argument)
                try:
                    async for piece in pieces:  # type: ignore[union-attr]
                        connection.write(frame((PIECE, *piece)))
                        await connection.writable()
                finally:
                    await pieces.aclose()  # type: ignore[union-attr]  # now: it aborts the engine request
                connection.write(frame((END,)))
            else:
                connection.write(frame((RESULT, await self._handler(method, argument))))  # type: ignore[misc]
        except asyncio.CancelledError:
            raise
        except VllamaError as exc:
            connection.write(frame((ERROR, exc)))
        except Exception as exc:  # our bug: the ingress gets a plain error, the log the traceback
            logger.exception("channel request %s failed", method)
            connection.write(frame((ERROR, EngineFailed(f"internal error: {exc}"))))
        finally:
            self.in_flight -= 1


class _Connection(asyncio.Protocol):
    """One ingress connection at the replica: frames in, one request at a time, answers out.

    A protocol rather than asyncio's streams: the end of the connection must cancel the request
    running on it, and waiting for it with a stream read would consume the next request's bytes."""

    def __init__(self, server: ChannelServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self._authenticated = False
        self._requests: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()
        self._transport: asyncio.Transport | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        _keepalive(transport.get_extra_info("socket"))
        self._server._connections.add(self)
        self._task = asyncio.ensure_future(self._run())

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._authenticated:
            if len(self._buffer) < SECRET_BYTES:
                return
            if not hmac.compare_digest(bytes(self._buffer[:SECRET_BYTES]), self._server._secret):
                logger.warning("refused a channel connection from %s: wrong secret", self._transport.get_extra_info("peername"))
                self.close()
                return
            del self._buffer[:SECRET_BYTES]
            self._authenticated = True
        while len(self._buffer) >= 4:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if len(self._buffer) < 4 + length:
                return
            payload = bytes(self._buffer[4 : 4 + length])
            del self._buffer[: 4 + length]
            self._requests.put_nowait(pickle.loads(payload))

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.discard(self)
        self._can_write.set()
        if self._task is not None:
            self._task.cancel()  # the ingress hung up: stop the request it was waiting for

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    async def writable(self) -> None:
        """Wait while the ingress does not read (the transport's buffer is full)."""
        if not self._can_write.is_set():
            await self._can_write.wait()

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def _run(self) -> None:
        try:
            while (request := await self._requests.get()) is not None:
                await self._server.serve(self, *request)
        except asyncio.CancelledError:
            pass


class ChannelClient:
    """The ingress's end: a pool of connections per engine replica endpoint."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def _connect(self, endpoint: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        """A connection to `endpoint`, and whether it was taken from the pool (and so may have
        been closed by the replica meanwhile)."""
        idle = self._idle.get(endpoint)
        while idle:
            reader, writer = idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer, True
            writer.close()
        # A replica whose node vanished answers nothing: give up long before the kernel would.
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*endpoint), CONNECT_TIMEOUT_S)
        _keepalive(writer.get_extra_info("socket"))
        writer.write(self._secret)
        return reader, writer, False

    def _release(self, endpoint: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        idle = self._idle.setdefault(endpoint, [])
        if len(idle) < _IDLE_KEPT and not writer.is_closing():
            idle.append((reader, writer))
        else:
            writer.close()

    async def _send(self, endpoint: tuple[str, int], method: str, argument: Any) -> tuple[Any, Any, Any]:
        """Send a request; its first answer frame with the connection. A pooled connection that
        turns out closed is replaced once by a new one (the request was not taken)."""
        request = frame((method, argument))
        for _ in range(2):
            reader, writer, pooled = await self._connect(endpoint)
            try:
                writer.write(request)
                return await read_frame(reader), reader, writer
            except (EOFError, ConnectionError):
                writer.close()
                if not pooled:
                    raise ConnectionError(f"engine replica at {endpoint[0]}:{endpoint[1]} closed the connection") from None
            except BaseException:
                writer.close()
                raise
        raise AssertionError("unreachable")

    async def stream(self, endpoint: tuple[str, int], argument: Any) -> AsyncIterator[Piece]:
        """The pieces of a streamed answer. Closing the iterator early cancels the request."""
        message, reader, writer = await self._send(endpoint, "stream", argument)
        finished = False
        try:
            while message[0] == PIECE:
                yield Piece(*message[1:])
                message = await read_frame(reader)
            finished = True
            if message[0] == ERROR:
                raise message[1]
        except (EOFError, ConnectionError):
            raise ConnectionError(f"engine replica at {endpoint[0]}:{endpoint[1]} closed the connection") from None
        finally:
            if finished:
                self._release(endpoint, reader, writer)
            else:
                writer.close()  # the replica sees the hang-up and aborts the request

    async def call(self, endpoint: tuple[str, int], method: str, argument: Any) -> Any:
        """A method with one answer (`once`, `status`). Cancelling it cancels the request."""
        try:
            message, reader, writer = await self._send(endpoint, method, argument)
        except EOFError:
            raise ConnectionError(f"engine replica at {endpoint[0]}:{endpoint[1]} closed the connection") from None
        self._release(endpoint, reader, writer)
        if message[0] == ERROR:
            raise message[1]
        return message[1]

    def close(self) -> None:
        for connections in self._idle.values():
            for _, writer in connections:
                with contextlib.suppress(Exception):
                    writer.close()
        self._idle.clear()
