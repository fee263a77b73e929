"""LlamaIndex's Ollama LLM (`llama-index-llms-ollama`), unchanged, against the session's
application, set up as its documentation shows: a model name and `base_url`.

It asks `/api/show` for the model's context length and sends it back as `num_ctx` with every
request, and sends `temperature: null` when none is set: both must be taken as Ollama takes them.
The chat model has random weights: the tests check shapes, types and the flow, not the words.
"""

from __future__ import annotations

import json

import pytest
from llama_index.core.llms import ChatMessage, ChatResponse, CompletionResponse
from llama_index.core.prompts import PromptTemplate
from llama_index.llms.ollama import Ollama

from tests.e2e.conftest import PRIMARY
from tests.e2e.test_structured_output import Pet

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("loaded")]  # first loads take minutes on a CPU

#: Greedy and a fixed length, so that streamed and whole answers can be compared.
FIXED = {"num_predict": 10, "ignore_eos": True}
MESSAGES = [ChatMessage(role="system", content="You are terse."), ChatMessage(role="user", content="Why is the sky blue?")]


@pytest.fixture(scope="module")
def llm(base_url: str) -> Ollama:
    return Ollama(model=PRIMARY, base_url=base_url, temperature=0, request_timeout=300, additional_kwargs=FIXED)


def check_usage(raw: dict) -> None:
    assert raw["done"] and raw["eval_count"] == 10 and raw["prompt_eval_count"] > 0
    assert raw["usage"]["total_tokens"] == raw["prompt_eval_count"] + raw["eval_count"]


def test_context_window_from_show(llm: Ollama) -> None:
    # Read from /api/show's model_info (the model's `*.context_length`), then sent as num_ctx.
    assert llm.metadata.context_window > 0 and llm.metadata.model_name == PRIMARY


def test_chat_and_stream_chat(llm: Ollama) -> None:
    answer = llm.chat(MESSAGES)
    assert isinstance(answer, ChatResponse) and answer.message.role == "assistant"
    assert isinstance(answer.message.content, str) and answer.message.content
    check_usage(answer.raw)
    parts = list(llm.stream_chat(MESSAGES))
    assert len(parts) > 1 and "".join(p.delta for p in parts) == parts[-1].message.content == answer.message.content


def test_complete_and_stream_complete(llm: Ollama) -> None:
    answer = llm.complete("Tell me a story")
    assert isinstance(answer, CompletionResponse) and answer.text
    parts = list(llm.stream_complete("Tell me a story"))
    assert "".join(p.delta for p in parts) == parts[-1].text == answer.text


async def test_async(llm: Ollama) -> None:
    answer = await llm.achat(MESSAGES)
    check_usage(answer.raw)
    completed = await llm.acomplete("Tell me a story")
    assert completed.text
    parts = [part async for part in await llm.astream_chat(MESSAGES)]
    assert "".join(p.delta for p in parts) == answer.message.content
    streamed = [part async for part in await llm.astream_complete("Tell me a story")]
    assert streamed[-1].text == completed.text


def test_json_mode(base_url: str) -> None:
    llm = Ollama(model=PRIMARY, base_url=base_url, temperature=0, json_mode=True, request_timeout=300,
                 additional_kwargs={"num_predict": 200})
    assert isinstance(json.loads(llm.complete("Describe a pet as JSON.").text), dict)
    assert isinstance(json.loads(llm.chat([ChatMessage(role="user", content="Some JSON:")]).message.content), dict)


def test_structured_predict(base_url: str) -> None:
    # LlamaIndex sends the output class's JSON schema as `format`.
    llm = Ollama(model=PRIMARY, base_url=base_url, temperature=0, request_timeout=300, additional_kwargs={"num_predict": 200})
    pet = llm.structured_predict(Pet, PromptTemplate("Describe a pet named {name}."), name="Rex")
    assert isinstance(pet, Pet)
