"""OpenAI's `/v1` through the official `openai` client (vLLM's own handlers in the replica)."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.e2e.conftest import ALL_MODELS, PRIMARY, SECOND


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused")


def test_models(client: openai.OpenAI) -> None:
    assert {m.id for m in client.models.list().data} == ALL_MODELS
    assert client.models.retrieve(SECOND).id == SECOND


@pytest.mark.parametrize("model", [PRIMARY, SECOND])
def test_chat_completion(client: openai.OpenAI, model: str) -> None:
    messages = [{"role": "user", "content": "Why is the sky blue?"}]
    whole = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0,
                                           extra_body={"ignore_eos": True})
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 8 and whole.usage.prompt_tokens > 0
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=8, temperature=0, stream=True,
                                            stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 8


def test_completion(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=PRIMARY, prompt="Once upon", max_tokens=5, temperature=0,
                                      extra_body={"ignore_eos": True})
    parts = list(client.completions.create(model=PRIMARY, prompt="Once upon", max_tokens=5, temperature=0, stream=True,
                                           extra_body={"ignore_eos": True}))
    assert "".join(p.choices[0].text for p in parts) == whole.choices[0].text
    assert whole.usage.completion_tokens == 5


def test_sse_ends_with_done(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={"model": SECOND, "stream": True, "max_tokens": 3,
                                                       "messages": [{"role": "user", "content": "hi"}]})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")


def test_errors_in_openai_shape(client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    body = http.post("/v1/chat/completions", json={"model": "gpt-4", "messages": []}).json()
    assert body["error"]["type"] == "not_found_error" and "gpt-4" in body["error"]["message"]
    bad = http.post("/v1/chat/completions", json={"model": PRIMARY, "messages": "hello"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
