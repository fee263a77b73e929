"""The official `ollama` Python client, sync and async, streaming and not."""

from __future__ import annotations

import ollama
import pytest

from tests.e2e.conftest import ALL_MODELS, PRIMARY, SECOND

DETERMINISTIC = {"temperature": 0, "num_predict": 10, "ignore_eos": True}


@pytest.fixture(scope="module")
def client(base_url: str) -> ollama.Client:
    return ollama.Client(host=base_url)


def test_list_show_ps(client: ollama.Client) -> None:
    assert {m.model for m in client.list().models} == ALL_MODELS
    shown = client.show("vllama-tiny")
    assert shown.modelinfo["general.architecture"] == "qwen2" and shown.capabilities == ["completion", "tools", "insert", "thinking"]
    assert {m.model for m in client.ps().models} == ALL_MODELS


@pytest.mark.parametrize("model", [PRIMARY, SECOND])
def test_generate_stream_equals_nonstream(client: ollama.Client, model: str) -> None:
    whole = client.generate(model=model, prompt="Tell me a story", options=DETERMINISTIC)
    parts = list(client.generate(model=model, prompt="Tell me a story", options=DETERMINISTIC, stream=True))
    assert "".join(p.response for p in parts) == whole.response
    assert parts[-1].done and parts[-1].eval_count == whole.eval_count == 10
    assert parts[-1].context == whole.context
    assert whole.prompt_eval_count and whole.eval_duration and whole.total_duration


def test_chat_multi_turn_with_system(client: ollama.Client) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Why is the sky blue?"},
    ]
    answer = client.chat(model=PRIMARY, messages=messages, options=DETERMINISTIC)
    assert answer.message.role == "assistant" and answer.done_reason == "length"
    single = client.chat(model=PRIMARY, messages=messages[-1:], options=DETERMINISTIC)
    # The whole conversation went through the template: more prompt tokens than the last turn alone.
    assert answer.prompt_eval_count > single.prompt_eval_count + 10


def test_chat_stream(client: ollama.Client) -> None:
    parts = list(client.chat(model=PRIMARY, messages=[{"role": "user", "content": "hi"}], options=DETERMINISTIC, stream=True))
    assert parts[-1].done and parts[-1].eval_count == 10
    assert all(not p.done for p in parts[:-1])


async def test_async_client_stream_and_not(base_url: str) -> None:
    client = ollama.AsyncClient(host=base_url)
    whole = await client.chat(model=SECOND, messages=[{"role": "user", "content": "hi"}], options=DETERMINISTIC)
    text = ""
    async for part in await client.chat(
        model=SECOND, messages=[{"role": "user", "content": "hi"}], options=DETERMINISTIC, stream=True
    ):
        text += part.message.content
    assert text == whole.message.content
    generated = await client.generate(model=PRIMARY, prompt="hi", options=DETERMINISTIC)
    assert generated.eval_count == 10


def test_client_errors(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.status_code == 404 and "not found" in missing.value.error
    with pytest.raises(ollama.ResponseError) as bad:
        client.generate(model=PRIMARY, prompt="hi", options={"top_p": 7})
    assert bad.value.status_code == 400
