"""HTTP responses: JSON, NDJSON and SSE streams, with Ollama's rule for errors.

An error before the first byte of a stream gets a real status and a JSON body (the first chunk
is awaited before the response starts); an error after it becomes a last in-band line, because
the status is already sent. A client that disconnects closes the chunk iterator, which aborts
the engine request (`VllmEngine.generate`); `until_disconnect` does the same for `stream: false`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from vllama.errors import VllamaError

logger = logging.getLogger(__name__)
T = TypeVar("T")

JSON = "application/json; charset=utf-8"
NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


def json_response(content: Any, status_code: int = 200) -> Response:
    body = content if isinstance(content, bytes) else orjson.dumps(content)
    return Response(body, status_code=status_code, media_type=JSON)


def ollama_error_line(message: str) -> bytes:
    return orjson.dumps({"error": message}) + b"\n"


def openai_error_event(message: str) -> bytes:
    error = {"error": {"message": message, "type": "api_error", "param": None, "code": None}}
    return b"data: " + orjson.dumps(error) + b"\n\n" + b"data: [DONE]\n\n"


async def stream_response(
    chunks: AsyncIterator[bytes], media_type: str, error_chunk: Callable[[str], bytes]
) -> Response:
    """Start streaming once the first chunk exists (so early errors still get their status)."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = b""
    except BaseException:
        await _close(chunks)
        raise
    return StreamingResponse(_rest(first, chunks, error_chunk), media_type=media_type)


async def _rest(first: bytes, chunks: AsyncIterator[bytes], error_chunk: Callable[[str], bytes]) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk
    except VllamaError as exc:
        yield error_chunk(exc.message)
    except Exception as exc:  # the status is sent: the error can only go in-band now
        logger.exception("stream failed after it started")
        yield error_chunk(f"internal error: {exc}")
    finally:
        await _close(chunks)


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


class ClientDisconnected(Exception):
    pass


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client goes away first (Starlette does not cancel a
    handler whose client disconnected; without this a `stream: false` request would run on).

    The work is cancelled on every way out: our own watcher seeing the disconnect, or the
    handler itself being cancelled (Ray Serve's direct ingress cancels it when it notices the
    disconnect first; a bare `await` would leave the inner task running to the end).
    """
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        raise ClientDisconnected()
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
