"""Drive a server: warm-up (excluded), then N requests with a sliding window of C in flight, or
open-loop Poisson arrivals at a given rate (still capped at C in flight)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from vllama.bench.client import Api, Workload, timed_request
from vllama.bench.stats import RequestRecord

_WORDS = (
    "the sky is blue because air scatters short waves of light more than long ones and so we see "
    "blue above us while sunsets turn red when light travels through more air a model serves many "
    "users at once by batching their requests together on one engine step after step ray spreads "
    "the engines over machines and each replica answers its clients directly story sea river tree "
    "mountain city music garden window paper table stone cloud rain summer winter morning evening"
).split()


def make_prompts(count: int, words: int, seed: int = 0) -> list[str]:
    """Distinct prompts of `words` words each (about one token per word for real tokenizers), so
    that prefix caching cannot turn a benchmark into a cache test."""
    rng = random.Random(seed)
    return [f"{i}: " + " ".join(rng.choice(_WORDS) for _ in range(words)) for i in range(count)]


@dataclass(frozen=True)
class LoadSpec:
    base_url: str
    api: Api
    model: str
    requests: int
    concurrency: int
    output_tokens: int = 50
    input_words: int = 32
    endpoint: str = "chat"
    warmup: int | None = None  # default: max(2, concurrency)
    request_rate: float | None = None  # requests/s, Poisson; None: closed loop
    seed: int = 0
    timeout_s: float = 600.0


async def run_load(spec: LoadSpec, progress: Callable[[int], None] | None = None) -> list[RequestRecord]:
    """The measured requests' records (warm-up ones are dropped)."""
    warmup = spec.warmup if spec.warmup is not None else max(2, spec.concurrency)
    prompts = make_prompts(warmup + spec.requests, spec.input_words, spec.seed)
    works = [Workload(spec.model, p, spec.output_tokens, spec.endpoint) for p in prompts]  # type: ignore[arg-type]
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if warmup:
            await _closed_loop(session, spec, works[:warmup], None)
        measured = works[warmup:]
        if spec.request_rate:
            return await _open_loop(session, spec, measured, progress)
        return await _closed_loop(session, spec, measured, progress)


async def _closed_loop(
    session: aiohttp.ClientSession, spec: LoadSpec, works: list[Workload], progress: Callable[[int], None] | None
) -> list[RequestRecord]:
    """C workers, each sending its next request as soon as its last one finished."""
    records: list[RequestRecord | None] = [None] * len(works)
    next_index = iter(range(len(works)))

    async def worker() -> None:
        for i in next_index:
            records[i] = await timed_request(session, spec.base_url, spec.api, works[i])
            if progress:
                progress(1)

    await asyncio.gather(*(worker() for _ in range(min(spec.concurrency, len(works)))))
    return [r for r in records if r is not None]


async def _open_loop(
    session: aiohttp.ClientSession, spec: LoadSpec, works: list[Workload], progress: Callable[[int], None] | None
) -> list[RequestRecord]:
    """Requests start at Poisson arrival times, whether or not earlier ones finished."""
    rng = random.Random(spec.seed + 1)
    limit = asyncio.Semaphore(spec.concurrency)
    loop = asyncio.get_running_loop()

    async def one(work: Workload) -> RequestRecord:
        async with limit:
            record = await timed_request(session, spec.base_url, spec.api, work)
        if progress:
            progress(1)
        return record

    tasks = []
    at = loop.time()
    for work in works:
        tasks.append(asyncio.create_task(one(work)))
        at += rng.expovariate(spec.request_rate or 1.0)
        await asyncio.sleep(max(0.0, at - loop.time()))
    return list(await asyncio.gather(*tasks))
