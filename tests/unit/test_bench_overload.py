"""The overload bench's judge (`vllama.bench.overload`): what counts as a proper refusal, and its
summary, against a scripted server that takes two requests and refuses the rest."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp import web

from vllama.bench.overload import SERVER_BUSY, offer


@pytest.fixture
async def two_slots():
    taken = 0

    async def chat(request: web.Request) -> web.StreamResponse:
        nonlocal taken
        openai = request.path.startswith("/v1/")
        if taken >= 2:
            error = {"message": SERVER_BUSY, "type": "server_error"} if openai else SERVER_BUSY
            return web.json_response({"error": error}, status=503, headers={"Retry-After": "1"})
        taken += 1
        response = web.StreamResponse()
        await response.prepare(request)
        await asyncio.sleep(0.2)
        await response.write(b"data: {}\n\ndata: [DONE]\n\n" if openai else orjson.dumps({"done": True}) + b"\n")
        return response

    app = web.Application()
    app.router.add_post("/api/chat", chat)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
    await runner.cleanup()


async def test_refusals_and_answers_are_told_apart(two_slots: str) -> None:
    result = await offer(two_slots, "m", 20, num_predict=4)
    summary = result.summary()
    assert (summary["accepted"], summary["accepted_completed"], summary["refused_503"], summary["other_errors"]) == (2, 2, 18, 0)
    assert summary["refusal_ms"]["p99"] < 200  # refused before the accepted ones end


async def test_a_503_without_retry_after_or_with_another_message_is_an_error(two_slots: str) -> None:
    from vllama.bench import overload

    assert overload._refusal_problem("ollama", orjson.dumps({"error": SERVER_BUSY}), {}) == "no Retry-After header"
    assert "another message" in overload._refusal_problem("openai", orjson.dumps({"error": {"message": "busy"}}),
                                                          {"Retry-After": "1"})
    assert overload._refusal_problem("openai", orjson.dumps({"error": {"message": SERVER_BUSY}}), {"Retry-After": "1"}) is None


async def test_connections_opened_beforehand_carry_the_burst(two_slots: str) -> None:
    """With `open_connections`, the burst goes out on connections already open: one each."""
    opened: list[int] = []

    async def count(conn: object, ctx: object, params: object) -> None:
        opened.append(1)

    from unittest import mock

    import aiohttp

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(count)
    real = aiohttp.ClientSession
    with mock.patch("vllama.bench.overload.aiohttp.ClientSession",
                    lambda *a, **k: real(*a, **k, trace_configs=[trace])):
        result = await offer(two_slots, "m", 12, num_predict=4, open_connections=True)
    assert result.summary()["refused_503"] == 10
    assert len(opened) == 12  # the burst opened none of its own
