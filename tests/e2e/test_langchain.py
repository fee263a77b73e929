"""LangChain's Ollama integration (`langchain-ollama`: ChatOllama, OllamaEmbeddings), unchanged,
against the session's application, set up as its documentation shows: a model name and
`base_url`.

The chat model has random weights: the tests check shapes, types and the flow (streamed equals
whole, token counts add up, a grammar's output parses), never what the text says. LangChain's
standard integration tests (`langchain-tests`) are not run: most of them judge what a capable
model answers (that it calls a tool when asked in words, that it names a city), which a random
model cannot do.
"""

from __future__ import annotations

import math

import ollama
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_ollama import ChatOllama, OllamaEmbeddings

from tests.e2e.conftest import EMBED, PRIMARY, SECOND
from tests.e2e.test_structured_output import SCHEMA, Pet
from tests.e2e.test_tools import CLOCK, WEATHER

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("loaded")]  # first loads take minutes on a CPU

QUESTION = [SystemMessage("You are terse."), HumanMessage("Why is the sky blue?")]
#: Greedy, so that the same request gives the same text whichever way it is sent.
GREEDY = {"temperature": 0, "num_predict": 10}


@pytest.fixture(scope="module")
def chat(base_url: str) -> ChatOllama:
    return ChatOllama(model=PRIMARY, base_url=base_url, **GREEDY)


def check_usage(message: AIMessage, raw: ollama.ChatResponse) -> None:
    """LangChain's usage metadata is the server's own counts: Ollama's `prompt_eval_count` and
    `eval_count` for the same request."""
    usage = message.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] == raw.prompt_eval_count > 0
    assert usage["output_tokens"] == raw.eval_count > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


@pytest.fixture(scope="module")
def raw(base_url: str) -> ollama.ChatResponse:
    """The same question through the ollama client: what LangChain's answers are held against."""
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Why is the sky blue?"}]
    return ollama.Client(host=base_url).chat(model=PRIMARY, messages=messages, options=GREEDY)


def test_invoke(chat: ChatOllama, raw: ollama.ChatResponse) -> None:
    answer = chat.invoke(QUESTION)
    assert isinstance(answer, AIMessage) and answer.content == raw.message.content
    assert answer.response_metadata["model"] == PRIMARY and answer.response_metadata["done_reason"] == raw.done_reason
    check_usage(answer, raw)


def test_stream(chat: ChatOllama, raw: ollama.ChatResponse) -> None:
    chunks = list(chat.stream(QUESTION))
    assert len(chunks) > 1 and all(isinstance(c, AIMessageChunk) for c in chunks)
    whole = sum(chunks[1:], chunks[0])
    assert whole.content == raw.message.content
    check_usage(whole, raw)


def test_batch(chat: ChatOllama) -> None:
    questions = ["hi", "Why is the sky blue?", "Tell me a story"]
    answers = chat.batch(questions)
    assert len(answers) == 3
    for answer in answers:
        assert isinstance(answer, AIMessage) and answer.content
        assert 0 < answer.usage_metadata["output_tokens"] <= GREEDY["num_predict"]
    # The prompts differ, so do their token counts: each answer belongs to its own question.
    assert len({a.usage_metadata["input_tokens"] for a in answers}) == 3


async def test_ainvoke_and_astream(base_url: str, raw: ollama.ChatResponse) -> None:
    chat = ChatOllama(model=PRIMARY, base_url=base_url, **GREEDY)
    answer = await chat.ainvoke(QUESTION)
    assert answer.content == raw.message.content
    check_usage(answer, raw)
    chunks = [chunk async for chunk in chat.astream(QUESTION)]
    whole = sum(chunks[1:], chunks[0])
    assert whole.content == raw.message.content
    check_usage(whole, raw)
    second = await ChatOllama(model=SECOND, base_url=base_url, **GREEDY).abatch(["hi", "hello"])
    assert [a.response_metadata["model"] for a in second] == [SECOND, SECOND]


def test_structured_output(base_url: str) -> None:
    chat = ChatOllama(model=PRIMARY, base_url=base_url, temperature=0, num_predict=200)
    pet = chat.with_structured_output(Pet, method="json_schema").invoke("Describe a pet.")
    assert isinstance(pet, Pet)
    # The schema as `format`, set on the model itself.
    formatted = ChatOllama(model=PRIMARY, base_url=base_url, temperature=0, num_predict=200, format=SCHEMA)
    Pet.model_validate_json(formatted.invoke("Describe a pet.").content)
    # JSON mode (`format: "json"`): any JSON object; a dict schema is only described, not enforced.
    loose = chat.with_structured_output(SCHEMA, method="json_mode").invoke("Describe a pet as JSON.")
    assert isinstance(loose, dict)


def test_forced_tool_call_and_its_result(chat: ChatOllama) -> None:
    # LangChain's own `tool_choice` is dropped by ChatOllama ("not supported by Ollama"); vllama
    # takes it as an option, which ChatOllama passes through.
    options = {"temperature": 0, "num_predict": 120, "tool_choice": "required"}
    ask = [HumanMessage("What is the weather in Paris?")]
    answer = chat.bind_tools([WEATHER, CLOCK]).invoke(ask, options=options)
    assert answer.tool_calls, answer
    for call in answer.tool_calls:
        assert call["type"] == "tool_call" and call["id"]
        assert call["name"] in ("get_weather", "get_time") and isinstance(call["args"], dict)
        if call["name"] == "get_weather":
            assert set(call["args"]) == {"city"} and isinstance(call["args"]["city"], str)
        else:
            assert call["args"]["zone"] in ("UTC", "CET", "PST")
    streamed = list(chat.bind_tools([WEATHER, CLOCK]).stream(ask, options=options))
    whole = sum(streamed[1:], streamed[0])
    assert [(c["name"], c["args"]) for c in whole.tool_calls] == [(c["name"], c["args"]) for c in answer.tool_calls]

    # The call and its result go back to the model, as an agent loop sends them.
    first = answer.tool_calls[0]
    conversation = [*ask, answer, ToolMessage('{"answer": "sunny"}', tool_call_id=first["id"], name=first["name"])]
    second = chat.bind_tools([WEATHER, CLOCK]).invoke(conversation)
    assert isinstance(second, AIMessage) and not second.tool_calls
    assert second.usage_metadata["input_tokens"] > answer.usage_metadata["input_tokens"]


@pytest.fixture(scope="module")
def embeddings(base_url: str) -> OllamaEmbeddings:
    return OllamaEmbeddings(model=EMBED, base_url=base_url)


def test_embeddings(embeddings: OllamaEmbeddings) -> None:
    texts = ["The sky is blue.", "Grass is green."]
    documents = embeddings.embed_documents(texts)
    assert [len(v) for v in documents] == [384, 384]
    assert all(math.isclose(math.hypot(*v), 1.0, abs_tol=1e-5) for v in documents)
    query = embeddings.embed_query(texts[0])
    assert len(query) == 384 and math.dist(query, documents[0]) < 1e-5
    assert math.dist(documents[0], documents[1]) > 0.1


async def test_async_embeddings(embeddings: OllamaEmbeddings) -> None:
    documents = await embeddings.aembed_documents(["The sky is blue.", "Grass is green."])
    query = await embeddings.aembed_query("The sky is blue.")
    assert [len(v) for v in documents] == [384, 384] and math.dist(query, documents[0]) < 1e-5
