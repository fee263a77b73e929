"""`logprobs` / `top_logprobs` on generate, chat and `/v1`: one entry per generated token."""

from __future__ import annotations

import math

import httpx
import ollama
import openai
import pytest

from tests.e2e.conftest import PRIMARY

GREEDY = {"temperature": 0, "num_predict": 8, "ignore_eos": True}
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


@pytest.fixture(scope="module")
def client(base_url: str) -> ollama.Client:
    return ollama.Client(host=base_url)


def test_generate_logprobs_with_alternatives(client: ollama.Client) -> None:
    answer = client.generate(model=PRIMARY, prompt="Once upon", options=GREEDY, logprobs=True, top_logprobs=3)
    assert len(answer.logprobs) == answer.eval_count == 8
    for entry in answer.logprobs:
        top = entry.top_logprobs
        assert len(top) == 3 and entry.logprob <= 0
        # Greedy: the chosen token is the most likely one, and the alternatives come in order.
        assert (top[0].token, top[0].logprob) == (entry.token, entry.logprob)
        assert top[0].logprob >= top[1].logprob >= top[2].logprob
    if "\ufffd" not in answer.response:
        assert "".join(e.token for e in answer.logprobs) == answer.response


def test_logprobs_alone_leave_alternatives_out(http: httpx.Client) -> None:
    body = {"model": PRIMARY, "prompt": "Once upon", "stream": False, "options": GREEDY, "logprobs": True}
    entries = http.post("/api/generate", json=body).json()["logprobs"]
    assert len(entries) == 8
    assert all(set(e) == {"token", "logprob", "bytes"} and e["bytes"] == list(e["token"].encode()) for e in entries)


def test_no_logprobs_unless_asked(client: ollama.Client) -> None:
    assert client.generate(model=PRIMARY, prompt="Once upon", options=GREEDY).logprobs is None


def test_chat_streaming_logprobs_equal_whole(client: ollama.Client) -> None:
    whole = client.chat(model=PRIMARY, messages=MESSAGES, options=GREEDY, logprobs=True, top_logprobs=2)
    parts = list(client.chat(model=PRIMARY, messages=MESSAGES, options=GREEDY, logprobs=True, top_logprobs=2,
                             stream=True))
    streamed = [e for p in parts for e in (p.logprobs or ())]
    assert [(e.token, e.logprob) for e in streamed] == [(e.token, e.logprob) for e in whole.logprobs]
    assert len(streamed) == parts[-1].eval_count == 8


def test_openai_chat_logprobs_match_ollama_chat(client: ollama.Client, base_url: str) -> None:
    # Same engine, same chat template, same prompt: the same numbers on both APIs.
    ours = client.chat(model=PRIMARY, messages=MESSAGES, options=GREEDY, logprobs=True, top_logprobs=2)
    openai_client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused")
    theirs = openai_client.chat.completions.create(
        model=PRIMARY, messages=MESSAGES, max_tokens=8, temperature=0, logprobs=True, top_logprobs=2,
        extra_body={"ignore_eos": True},
    ).choices[0].logprobs.content
    assert len(theirs) == len(ours.logprobs) == 8
    for a, b in zip(ours.logprobs, theirs, strict=True):
        assert a.token == b.token and math.isclose(a.logprob, b.logprob, abs_tol=1e-4)
        assert [t.token for t in a.top_logprobs] == [t.token for t in b.top_logprobs]


@pytest.mark.parametrize("top", [-1, 21])
def test_top_logprobs_out_of_range(http: httpx.Client, top: int) -> None:
    body = {"model": PRIMARY, "prompt": "hi", "logprobs": True, "top_logprobs": top}
    response = http.post("/api/generate", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": "top_logprobs must be between 0 and 20"}
