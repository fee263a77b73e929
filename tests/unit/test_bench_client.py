"""vllama bench's load generator against a scripted server whose timings are known: the
measured TTFT, inter-token gaps, end-to-end times and throughput must come out as scripted.

The server here is a stand-in for the HTTP side only (it writes Ollama NDJSON and OpenAI SSE
with sleeps); what it checks is the measuring, not any server's behaviour.
"""

from __future__ import annotations

import asyncio
import json

import orjson
import pytest
from aiohttp import web

from vllama.bench.client import Workload, request_body
from vllama.bench.runner import LoadSpec, make_prompts, run_load
from vllama.bench.stats import summarize

TTFT, GAP, TOKENS = 0.08, 0.02, 5


async def _ndjson(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    assert body["options"] == {"num_predict": TOKENS, "ignore_eos": True, "temperature": 0.0}
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    await asyncio.sleep(TTFT)
    for i in range(TOKENS):
        if i:
            await asyncio.sleep(GAP)
        await response.write(b'{"model":"m","created_at":"t","message":{"role":"assistant","content":"x"},"done":false}\n')
    await response.write(orjson.dumps({"model": "m", "done": True, "eval_count": TOKENS, "prompt_eval_count": 9}) + b"\n")
    return response


async def _sse(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    assert body["max_tokens"] == TOKENS and body["ignore_eos"] is True and body["stream"] is True
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n')
    await asyncio.sleep(TTFT)
    for i in range(TOKENS):
        if i:
            await asyncio.sleep(GAP)
        await response.write(b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n')
    await response.write(b'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":5}}\n\n')
    await response.write(b"data: [DONE]\n\n")
    return response


async def _sse_without_usage(request: web.Request) -> web.StreamResponse:
    # llama-cpp-python's server: one chunk per token, a finish reason, no usage.
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for _ in range(TOKENS):
        await response.write(b'data: {"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}\n\n')
    await response.write(b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n\n')
    await response.write(b"data: [DONE]\n\n")
    return response


async def _failing(request: web.Request) -> web.Response:
    return web.json_response({"error": "model 'm' not found"}, status=404)


@pytest.fixture
async def scripted_server():
    app = web.Application()
    app.router.add_post("/api/chat", _ndjson)
    app.router.add_post("/v1/chat/completions", _sse)
    app.router.add_post("/api/generate", _failing)
    app.router.add_post("/v1/completions", _sse_without_usage)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def _scripted(measured_ms: float, scripted_ms: float) -> bool:
    return scripted_ms - 5 <= measured_ms <= scripted_ms + 45


@pytest.mark.parametrize("api", ["ollama", "openai"])
async def test_measures_the_scripted_timings(scripted_server: str, api: str) -> None:
    spec = LoadSpec(base_url=scripted_server, api=api, model="m", requests=12, concurrency=4, output_tokens=TOKENS)
    records = await run_load(spec)
    s = summarize(records)
    assert s["completed"] == 12 and s["failed"] == 0
    # A sleep and a loopback hop only ever add time, and a busy or virtualised machine adds tens
    # of milliseconds to one: a measure may come out a little late, never early.
    assert _scripted(s["ttft_ms"]["p50"], TTFT * 1000)
    assert s["itl_ms"]["p50"] == pytest.approx(GAP * 1000, abs=8)
    assert s["tpot_ms"]["p50"] == pytest.approx(GAP * 1000, abs=10)
    e2e = (TTFT + (TOKENS - 1) * GAP) * 1000
    assert _scripted(s["e2e_ms"]["p50"], e2e)
    assert s["mean_output_tokens"] == TOKENS and s["mean_prompt_tokens"] == 9
    # Four in flight at a time, three rounds: the window is three request durations.
    assert s["requests_per_s"] == pytest.approx(12 / (3 * e2e / 1000), rel=0.25)


async def test_sliding_window_keeps_c_in_flight(scripted_server: str) -> None:
    spec = LoadSpec(base_url=scripted_server, api="ollama", model="m", requests=20, concurrency=5,
                    output_tokens=TOKENS, warmup=0)
    records = await run_load(spec)
    starts = sorted(r.start for r in records)
    # At any moment no more than 5 requests are open, and the window is full from the start.
    for t in starts:
        assert sum(1 for r in records if r.start <= t < r.end) <= 5
    assert starts[4] - starts[0] < 0.05


async def test_poisson_arrivals_follow_the_rate(scripted_server: str) -> None:
    spec = LoadSpec(base_url=scripted_server, api="openai", model="m", requests=40, concurrency=64,
                    output_tokens=TOKENS, warmup=0, request_rate=50.0)
    records = await run_load(spec)
    starts = sorted(r.start for r in records)
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    assert 25 < rate < 100


async def test_failures_carry_the_error(scripted_server: str) -> None:
    spec = LoadSpec(base_url=scripted_server, api="ollama", model="m", requests=3, concurrency=1,
                    endpoint="generate", warmup=0)
    s = summarize(await run_load(spec))
    assert s["failed"] == 3 and "404" in s["first_error"] and "not found" in s["first_error"]


async def test_stream_without_usage_counts_by_finish_reason(scripted_server: str) -> None:
    spec = LoadSpec(base_url=scripted_server, api="openai", model="m", requests=3, concurrency=1,
                    endpoint="generate", output_tokens=TOKENS, warmup=0)
    s = summarize(await run_load(spec))
    assert s["failed"] == 0 and s["mean_output_tokens"] == TOKENS


def test_request_bodies_ask_for_exact_lengths() -> None:
    path, body = request_body("ollama", Workload("m", "hi", 50, "generate"))
    assert path == "/api/generate"
    assert json.loads(body) == {"model": "m", "prompt": "hi", "stream": True,
                                "options": {"num_predict": 50, "ignore_eos": True, "temperature": 0.0}}
    path, body = request_body("openai", Workload("m", "hi", 50, "chat"))
    sent = json.loads(body)
    assert path == "/v1/chat/completions" and sent["max_tokens"] == 50 and sent["min_tokens"] == 50
    assert sent["stream_options"] == {"include_usage": True}


def test_prompts_are_distinct_with_the_chosen_length() -> None:
    prompts = make_prompts(50, 32)
    assert len(set(prompts)) == 50
    assert all(len(p.split()) == 33 for p in prompts)  # the index, then 32 words
    assert make_prompts(5, 8, seed=1) == make_prompts(5, 8, seed=1)
