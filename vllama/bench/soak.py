"""A soak: many mixed requests at a steady concurrency, each checked for the answer it must get.

The mix (seeded, so a run can be repeated): both APIs, chat and generate (completions on `/v1`),
streamed and not, lengths of 1 to 32 tokens; about 10% of the streams abandoned after their first
chunk (the client closes the connection: the engine request must be aborted); about 5% bad
requests (broken JSON, an unknown model, an impossible option), which must get their 4xx in the
API's error format. Anything else (a 5xx, a wrong status, a stream that ends without its final
object, a timeout) is an unexpected failure. Used by `bench/soak.py` and the tests.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

KINDS = ("answer", "stream", "abandon", "bad")


@dataclass(frozen=True)
class SoakRequest:
    api: str  # "ollama" or "openai"
    kind: str  # one of KINDS
    path: str
    body: bytes
    #: For a bad request: the status it must get.
    expected_status: int = 200


@dataclass
class SoakResult:
    counts: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"requests": sum(self.counts.values()), "by_kind": dict(self.counts),
                "unexpected_failures": len(self.unexpected), "first_unexpected": self.unexpected[:5]}


def mix(model: str, count: int, seed: int = 0) -> list[SoakRequest]:
    rng = random.Random(seed)
    requests = []
    for _ in range(count):
        api = rng.choice(("ollama", "openai"))
        roll = rng.random()
        kind = "bad" if roll < 0.05 else "abandon" if roll < 0.15 else rng.choice(("answer", "stream"))
        requests.append(_bad(api, model, rng) if kind == "bad" else _good(api, kind, model, rng))
    return requests


def _good(api: str, kind: str, model: str, rng: random.Random) -> SoakRequest:
    tokens = rng.randint(1, 32)
    stream = kind != "answer"
    chat = rng.random() < 0.5
    prompt = rng.choice(("Why is the sky blue?", "Write a haiku.", "Count to ten.", "Hello!"))
    if api == "ollama":
        body: dict[str, Any] = {"model": model, "stream": stream, "options": {"num_predict": tokens, "ignore_eos": True}}
        body.update({"messages": [{"role": "user", "content": prompt}]} if chat else {"prompt": prompt})
        path = "/api/chat" if chat else "/api/generate"
    else:
        body = {"model": model, "stream": stream, "max_tokens": tokens, "ignore_eos": True}
        body.update({"messages": [{"role": "user", "content": prompt}]} if chat else {"prompt": prompt})
        path = "/v1/chat/completions" if chat else "/v1/completions"
    return SoakRequest(api, kind, path, orjson.dumps(body))


def _bad(api: str, model: str, rng: random.Random) -> SoakRequest:
    path = "/api/chat" if api == "ollama" else "/v1/chat/completions"
    messages = [{"role": "user", "content": "hi"}]
    case = rng.randrange(3)
    if case == 0:
        return SoakRequest(api, "bad", path, b'{"model": "' + model.encode() + b'", "messages": [', 400)
    if case == 1:
        return SoakRequest(api, "bad", path, orjson.dumps({"model": "no-such-model:1b", "messages": messages}), 404)
    option = {"options": {"temperature": "hot"}} if api == "ollama" else {"temperature": "hot"}
    return SoakRequest(api, "bad", path, orjson.dumps({"model": model, "messages": messages, **option}), 400)


async def _one(session: aiohttp.ClientSession, base_url: str, request: SoakRequest, headers: dict[str, str]) -> str | None:
    """None when the request got the answer it must get, else what went wrong."""
    try:
        async with session.post(base_url + request.path, data=request.body, headers=headers) as response:
            if request.kind == "bad":
                body = await response.read()
                if response.status != request.expected_status:
                    return f"{request.path} bad input: {response.status}, not {request.expected_status}: {body[:200]!r}"
                error = orjson.loads(body).get("error")
                message = error if request.api == "ollama" else (error or {}).get("message")
                return None if isinstance(message, str) and message else f"{request.path}: no error message: {body[:200]!r}"
            if response.status != 200:
                return f"{request.path} {request.kind}: {response.status}: {(await response.read())[:200]!r}"
            if request.kind == "abandon":
                await response.content.readline()
                response.close()  # the client goes away mid-stream
                return None
            if request.kind == "answer":
                answer = orjson.loads(await response.read())
                finished = answer.get("done") is True if request.api == "ollama" else bool(answer.get("choices"))
                return None if finished else f"{request.path}: an incomplete answer: {str(answer)[:200]}"
            return None if await _stream_ends(request.api, response) else f"{request.path}: a stream without its end"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"{request.path} {request.kind}: {type(exc).__name__}: {exc}"


async def _stream_ends(api: str, response: aiohttp.ClientResponse) -> bool:
    ended = False
    async for line in response.content:
        line = line.strip()
        if not line:
            continue
        if api == "ollama":
            chunk = orjson.loads(line)
            if "error" in chunk:
                return False
            ended = ended or chunk.get("done") is True
        elif line == b"data: [DONE]":
            ended = True
        elif line.startswith(b'data: {"error"'):
            return False
    return ended


async def soak(
    base_url: str, requests: list[SoakRequest], *, concurrency: int, api_key: str | None = None,
    timeout_s: float = 120.0, progress: Any = None,
) -> SoakResult:
    """Send `requests` with `concurrency` in flight at all times (a new one as each ends)."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    result = SoakResult()
    queue = list(reversed(requests))
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def worker() -> None:
            while queue:
                request = queue.pop()
                problem = await _one(session, base_url, request, headers)
                result.counts[request.kind] += 1
                if problem is not None:
                    result.unexpected.append(problem)
                if progress is not None:
                    progress(sum(result.counts.values()))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result
