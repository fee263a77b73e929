"""One streamed request against an Ollama or OpenAI server, timed chunk by chunk.

aiohttp rather than httpx or the official clients: on a small machine the load generator shares
the CPU with the server under test, and aiohttp's per-chunk cost is several times lower. Only
the final object (Ollama) or the usage chunk (OpenAI) is parsed whole; other chunks are checked
for text with a cheap parse of one line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import orjson

from vllama.bench.stats import RequestRecord

Api = Literal["ollama", "openai"]


@dataclass(frozen=True)
class Workload:
    model: str
    prompt: str
    output_tokens: int
    endpoint: Literal["chat", "generate"] = "chat"
    temperature: float = 0.0
    #: A chat's whole history (multi-turn workload); None: one user message, `prompt`.
    messages: tuple[dict[str, str], ...] | None = None


def request_body(api: Api, work: Workload) -> tuple[str, bytes]:
    """Path and body asking for exactly `output_tokens` tokens (vLLM's `ignore_eos`)."""
    if api == "ollama":
        options = {"num_predict": work.output_tokens, "ignore_eos": True, "temperature": work.temperature}
        if work.endpoint == "chat":
            body: dict[str, Any] = {"model": work.model, "messages": _messages(work)}
            path = "/api/chat"
        else:
            body, path = {"model": work.model, "prompt": work.prompt}, "/api/generate"
        body.update(stream=True, options=options)
        return path, orjson.dumps(body)
    body = {
        "model": work.model, "stream": True, "stream_options": {"include_usage": True},
        "max_tokens": work.output_tokens, "ignore_eos": True, "min_tokens": work.output_tokens,
        "temperature": work.temperature,
    }
    if work.endpoint == "chat":
        body["messages"] = _messages(work)
        return "/v1/chat/completions", orjson.dumps(body)
    body["prompt"] = work.prompt
    return "/v1/completions", orjson.dumps(body)


def _messages(work: Workload) -> list[dict[str, str]]:
    return list(work.messages) if work.messages is not None else [{"role": "user", "content": work.prompt}]


async def timed_request(
    session: aiohttp.ClientSession, base_url: str, api: Api, work: Workload, *, keep_text: bool = False
) -> RequestRecord:
    """`keep_text`: also keep the streamed text (`record.text`), which a multi-turn conversation
    sends back as the assistant's message; it costs a full parse of every Ollama chunk, so the
    single-turn workload does without."""
    path, body = request_body(api, work)
    record = RequestRecord(start=time.perf_counter(), text=[] if keep_text else None)
    try:
        async with session.post(base_url + path, data=body, headers={"Content-Type": "application/json"}) as response:
            if response.status != 200:
                record.error = f"HTTP {response.status}: {(await response.text())[:200]}"
                return record
            if api == "ollama":
                await _read_ndjson(response, record)
            else:
                await _read_sse(response, record, work.output_tokens)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"
    finally:
        record.end = time.perf_counter()
    return record


def _text_arrived(record: RequestRecord) -> None:
    now = time.perf_counter()
    if record.first_token is None:
        record.first_token = now
    record.chunk_times.append(now)


async def _read_ndjson(response: aiohttp.ClientResponse, record: RequestRecord) -> None:
    async for line in response.content:
        if not line.strip():
            continue
        if b'"done":false' in line:
            if not line.endswith(b'"response":"","done":false}\n') and b'"content":""}' not in line:
                _text_arrived(record)
                if record.text is not None:
                    record.text.append(_ollama_text(orjson.loads(line)))
            continue
        final = orjson.loads(line)
        if "error" in final:
            record.error = str(final["error"])
            return
        if record.text is not None:
            record.text.append(_ollama_text(final))
        record.output_tokens = int(final.get("eval_count", 0))
        record.prompt_tokens = int(final.get("prompt_eval_count", 0))
    if not record.output_tokens and record.error is None:
        record.error = "stream ended without a final object"


def _ollama_text(chunk: dict[str, Any]) -> str:
    return str((chunk.get("message") or {}).get("content") or chunk.get("response") or "")


async def _read_sse(response: aiohttp.ClientResponse, record: RequestRecord, requested: int) -> None:
    finish_reason = None
    async for line in response.content:
        if not line.startswith(b"data: "):
            continue
        data = line[6:].strip()
        if data == b"[DONE]":
            break
        chunk = orjson.loads(data)
        if "error" in chunk:
            record.error = str(chunk["error"])
            return
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content") if "delta" in choice else choice.get("text")
            if text:
                _text_arrived(record)
                if record.text is not None:
                    record.text.append(text)
            finish_reason = choice.get("finish_reason") or finish_reason
        if usage := chunk.get("usage"):
            record.output_tokens = int(usage.get("completion_tokens") or 0)
            record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    if not record.output_tokens and record.error is None:
        # No usage in the stream (llama-cpp-python's server sends none): a request that ended by
        # length made exactly what it asked for; otherwise count the text chunks (one per token).
        if finish_reason == "length":
            record.output_tokens = requested
        elif record.chunk_times:
            record.output_tokens = len(record.chunk_times)
        else:
            record.error = "stream ended without text or usage"
