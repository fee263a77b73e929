"""Overload, measured: many times a model's capacity offered at once. Every request must end one
of two ways: accepted and answered to its end, or refused at once with Ollama's 503 "server busy"
(OpenAI's error object on `/v1`) and a `Retry-After`. Anything else is an error.

Half the requests are Ollama chats, half OpenAI chat completions, all streamed, so both APIs'
refusals are checked. Used by `bench/overload.py` and by the tests.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from vllama.bench.stats import percentile

SERVER_BUSY = "server busy, please try again.  maximum pending requests exceeded"


@dataclass
class Outcome:
    api: str
    status: int = 0
    #: Seconds from sending to the response's status line.
    answered_s: float = 0.0
    completed: bool = False
    error: str | None = None


@dataclass
class OverloadResult:
    offered: int
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def refused(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == 503 and o.error is None]

    @property
    def accepted(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == 200]

    @property
    def errors(self) -> list[str]:
        return [f"{o.api} {o.status}: {o.error}" for o in self.outcomes if o.error is not None]

    def summary(self) -> dict[str, Any]:
        refused_ms = sorted(o.answered_s * 1000 for o in self.refused)
        return {
            "offered": self.offered,
            "accepted": len(self.accepted),
            "accepted_completed": sum(o.completed for o in self.accepted),
            "refused_503": len(self.refused),
            "other_errors": len(self.errors),
            "first_errors": self.errors[:5],
            "refusal_ms": {"p50": percentile(refused_ms, 50), "p99": percentile(refused_ms, 99),
                           "max": max(refused_ms, default=None)},
        }


def _request(api: str, model: str, num_predict: int) -> tuple[str, dict[str, Any]]:
    messages = [{"role": "user", "content": "Tell me a long story."}]
    if api == "ollama":
        return "/api/chat", {"model": model, "messages": messages, "stream": True,
                             "options": {"num_predict": num_predict, "ignore_eos": True}}
    return "/v1/chat/completions", {"model": model, "messages": messages, "stream": True,
                                    "max_tokens": num_predict, "ignore_eos": True}


async def _one(session: aiohttp.ClientSession, base_url: str, api: str, model: str, num_predict: int,
               headers: dict[str, str], start: asyncio.Event) -> Outcome:
    path, body = _request(api, model, num_predict)
    outcome = Outcome(api)
    await start.wait()
    sent = time.perf_counter()
    try:
        async with session.post(base_url + path, data=orjson.dumps(body), headers=headers) as response:
            outcome.status = response.status
            outcome.answered_s = time.perf_counter() - sent
            if response.status == 503:
                outcome.error = _refusal_problem(api, await response.read(), response.headers)
            elif response.status != 200:
                outcome.error = (await response.read())[:200].decode(errors="replace")
            else:
                outcome.completed = await _read_to_end(api, response)
                if not outcome.completed:
                    outcome.error = "the stream ended without its final object"
    except (aiohttp.ClientError, TimeoutError) as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    return outcome


def _refusal_problem(api: str, body: bytes, headers: Any) -> str | None:
    """What is wrong with a 503 (None: it is Ollama's, or OpenAI's, exactly)."""
    if "Retry-After" not in headers:
        return "no Retry-After header"
    try:
        error = orjson.loads(body)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"not an error object: {body[:200]!r}"
    message = error if api == "ollama" else (error or {}).get("message")
    return None if message == SERVER_BUSY else f"another message: {error!r}"


async def _read_to_end(api: str, response: aiohttp.ClientResponse) -> bool:
    finished = False
    async for line in response.content:
        line = line.strip()
        if not line:
            continue
        if api == "ollama":
            chunk = orjson.loads(line)
            if "error" in chunk:
                return False
            finished = finished or chunk.get("done") is True
        elif line == b"data: [DONE]":
            finished = True
        elif b'"error"' in line:
            return False
    return finished


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


async def _open_connections(session: aiohttp.ClientSession, base_url: str, count: int,
                            headers: dict[str, str]) -> None:
    """Leave `count` connections open in the session's pool (kept alive), as clients that hold
    a pool do (the `openai` and `ollama` clients, a gateway), so that a burst measures the
    requests, not the opening of `count` TCP connections at the same instant."""
    everyone = asyncio.Barrier(count)

    async def one() -> None:
        async with session.get(base_url + "/api/version", headers=headers) as response:
            await response.read()
            await everyone.wait()  # no connection goes back to the pool before all are open

    await asyncio.gather(*(one() for _ in range(count)))


async def quick_answers(
    base_url: str, path: str, body: dict[str, Any], requests: int, *, api_key: str | None = None,
    open_connections: bool = False,
) -> list[tuple[int, float]]:
    """`requests` copies of one request that needs no engine (a model that does not exist),
    sent at once as `offer` sends them: each one's status and seconds to it. What answering that
    many at once costs this machine (the client, HAProxy, the ingress), without admission or
    engine work: the floor under `offer`'s refusal times."""
    headers = _headers(api_key)
    start = asyncio.Event()
    data = orjson.dumps(body)

    async def one(session: aiohttp.ClientSession) -> tuple[int, float]:
        await start.wait()
        sent = time.perf_counter()
        async with session.post(base_url + path, data=data, headers=headers) as response:
            status = response.status
            elapsed = time.perf_counter() - sent
            await response.read()
        return status, elapsed

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        if open_connections:
            await _open_connections(session, base_url, requests, headers)
        tasks = [asyncio.ensure_future(one(session)) for _ in range(requests)]
        await asyncio.sleep(0.05)
        start.set()
        return list(await asyncio.gather(*tasks))


async def offer(
    base_url: str, model: str, requests: int, *, num_predict: int = 32, api_key: str | None = None,
    timeout_s: float = 600.0, open_connections: bool = False,
) -> OverloadResult:
    """Send `requests` at once: every request is ready before the first goes (on connections
    opened beforehand, with `open_connections`)."""
    headers = _headers(api_key)
    connector = aiohttp.TCPConnector(limit=0)
    start = asyncio.Event()
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        if open_connections:
            await _open_connections(session, base_url, requests, headers)
        tasks = [asyncio.ensure_future(_one(session, base_url, ("ollama", "openai")[i % 2], model, num_predict,
                                            headers, start))
                 for i in range(requests)]
        await asyncio.sleep(0.05)  # every task waits on the event
        start.set()
        outcomes = await asyncio.gather(*tasks)
    return OverloadResult(requests, list(outcomes))
