"""Ollama's progress streams (`/api/pull`, `/api/create`): `{"status": ...}` lines ending in
`{"status": "success"}`, from work that may block (a download runs in a thread)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import orjson

from vllama.errors import VllamaError

Emit = Callable[[dict[str, Any]], None]


class Cancelled(Exception):
    """The client went away: stop the work at its next progress report."""


async def thread_progress(work: Callable[[Emit], None]) -> AsyncIterator[dict[str, Any]]:
    """Run `work(emit)` in a thread and yield what it emits, then raise what it raised.

    Closing the iterator (the client disconnected) makes the thread's next `emit` raise
    `Cancelled`, so a download stops instead of running on for nobody."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    cancelled = threading.Event()
    end = object()

    def emit(status: dict[str, Any]) -> None:
        if cancelled.is_set():
            raise Cancelled()
        loop.call_soon_threadsafe(queue.put_nowait, status)

    def run() -> None:
        try:
            work(emit)
            loop.call_soon_threadsafe(queue.put_nowait, end)
        except BaseException as exc:  # handed to the consumer, which raises it
            loop.call_soon_threadsafe(queue.put_nowait, exc)

    thread = threading.Thread(target=run, name="vllama-progress", daemon=True)
    thread.start()
    try:
        while (item := await queue.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()


async def lines(statuses: AsyncIterator[dict[str, Any]] | Iterable[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Status objects as NDJSON lines."""
    if isinstance(statuses, AsyncIterator):
        async for status in statuses:
            yield orjson.dumps(status) + b"\n"
    else:
        for status in statuses:
            yield orjson.dumps(status) + b"\n"


async def last_status(statuses: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """`stream: false`: only the final object (Ollama's `{"status": "success"}`)."""
    final: dict[str, Any] | None = None
    async for status in statuses:
        final = status
    if final is None:
        raise VllamaError("no status was reported")
    return final
