"""Stream pacing: how often one request's stream goes out, pure (no vLLM, no Ray).

Without it a stream is written once per engine step: at 32 concurrent streams on the tiny
model that is ~3,000 writes a second, and each one costs the replica a socket write, HAProxy a
read and a write, and the client a read, all on the cores the engine needs. Paced, the first
visible output and the last one go out at once, and in between a stream is written at most once
per interval, carrying everything the engine made meanwhile (merged as vLLM merges the deltas of
a consumer that falls behind). Measured in docs/PERFORMANCE.md ("Stream pacing").

There is no timer: an output that arrives within the interval waits for the engine's next one
for the same request, so it is held at most one engine step. A timer would need a second task
per stream reading ahead of the consumer (as `serve/targets.py:batched` has for the Ray hop): one
more task wake-up per engine step and stream, the kind of per-token cost pacing is there to cut.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

T = TypeVar("T")


async def paced(
    outputs: AsyncIterator[T],
    interval_s: float,
    *,
    merge: Callable[[T, T], T],
    finished: Callable[[T], bool],
    visible: Callable[[T], bool],
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[T]:
    """`outputs`, each passed on at once until one `visible` has gone (time to first token does
    not wait), then at most one per `interval_s`: outputs arriving sooner are merged
    (`merge(held, newer)`) into the next one passed on. A `finished` output is never held."""
    held: T | None = None
    shown_at: float | None = None  # when the last output went out, once a visible one has
    async for output in outputs:
        held = output if held is None else merge(held, output)
        now = clock()
        if shown_at is not None and now - shown_at < interval_s and not finished(output):
            continue
        if shown_at is not None or visible(held):
            shown_at = now
        yield held
        held = None
    if held is not None:  # a source that ends without saying so
        yield held
