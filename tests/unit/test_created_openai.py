"""A created model's parts applied to the body of an OpenAI `/v1` request."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vllama.models.registry import CreatedModel
from vllama.translate.created import openai_body

EXAMPLES = ({"role": "user", "content": "Is Toronto in Canada?"}, {"role": "assistant", "content": "yes"})
USER = {"role": "user", "content": "hi"}


def created(**fields: Any) -> CreatedModel:
    return CreatedModel(name="mine:latest", base="qwen2.5:0.5b", **fields)


def apply(body: dict[str, Any], model: CreatedModel, kind: str, base_system: str | None = None) -> dict[str, Any]:
    return json.loads(openai_body(json.dumps(body).encode(), model, kind, base_system))


# --- parameters -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameters", "fields"),
    [
        ({}, {}),
        ({"temperature": 0.2}, {"temperature": 0.2}),
        ({"top_p": 0.5, "top_k": 7, "min_p": 0.05}, {"top_p": 0.5, "top_k": 7, "min_p": 0.05}),
        ({"repeat_penalty": 1.1}, {"repetition_penalty": 1.1}),
        ({"presence_penalty": 0.5, "frequency_penalty": -0.5}, {"presence_penalty": 0.5, "frequency_penalty": -0.5}),
        ({"seed": 42}, {"seed": 42}),
        ({"seed": 0}, {"seed": 0}),
        ({"seed": -1}, {}),  # Ollama's "random"
        ({"stop": ["<|im_end|>", "END"]}, {"stop": ["<|im_end|>", "END"]}),
        ({"num_predict": 64}, {"max_tokens": 64}),
        ({"num_predict": 0}, {"max_tokens": 0}),
        ({"num_predict": -1}, {}),  # Ollama's "until the context is full"
        ({"num_predict": -2}, {}),
        # no OpenAI field of that meaning: left out
        ({"num_ctx": 4096, "num_keep": 5, "use_mmap": True, "typical_p": 0.9}, {}),
    ],
)
@pytest.mark.parametrize("kind", ["chat", "completion"])
def test_parameters_become_fields(parameters: dict[str, Any], fields: dict[str, Any], kind: str) -> None:
    body = {"model": "mine", "messages": [USER]} if kind == "chat" else {"model": "mine", "prompt": "hi"}
    assert apply(body, created(parameters=parameters), kind) == {**body, **fields}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"temperature": 0.9}, {"temperature": 0.9, "max_tokens": 64, "repetition_penalty": 1.1}),
        ({"max_tokens": 5}, {"temperature": 0.2, "max_tokens": 5, "repetition_penalty": 1.1}),
        ({"repetition_penalty": 1.0}, {"temperature": 0.2, "max_tokens": 64, "repetition_penalty": 1.0}),
        ({"temperature": 0}, {"temperature": 0, "max_tokens": 64, "repetition_penalty": 1.1}),
        # a null field is not given
        ({"temperature": None}, {"temperature": 0.2, "max_tokens": 64, "repetition_penalty": 1.1}),
    ],
)
def test_request_values_win(given: dict[str, Any], expected: dict[str, Any]) -> None:
    model = created(parameters={"temperature": 0.2, "num_predict": 64, "repeat_penalty": 1.1})
    body = {"model": "mine", "prompt": "hi", **given}
    assert apply(body, model, "completion") == {"model": "mine", "prompt": "hi", **expected}


# --- messages -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "base_system", "messages", "expected"),
    [
        (created(), None, [USER], [USER]),
        (created(system="S"), None, [USER], [{"role": "system", "content": "S"}, USER]),
        (created(messages=EXAMPLES), None, [USER], [*EXAMPLES, USER]),
        (created(system="S", messages=EXAMPLES), None, [USER], [{"role": "system", "content": "S"}, *EXAMPLES, USER]),
        # the base model's system message when the created model has none
        (created(), "Base.", [USER], [{"role": "system", "content": "Base."}, USER]),
        (created(system="S"), "Base.", [USER], [{"role": "system", "content": "S"}, USER]),
        # an empty system replaces the base model's with none
        (created(system=""), "Base.", [USER], [USER]),
        # the request's own system message wins; the examples still come first
        (
            created(system="S", messages=EXAMPLES),
            "Base.",
            [{"role": "system", "content": "Mine."}, USER],
            [*EXAMPLES, {"role": "system", "content": "Mine."}, USER],
        ),
        (created(system="S"), None, [], [{"role": "system", "content": "S"}]),
    ],
)
def test_chat_messages(
    model: CreatedModel, base_system: str | None, messages: list[dict[str, Any]], expected: list[dict[str, Any]]
) -> None:
    body = {"model": "mine", "messages": messages, "stream": True}
    assert apply(body, model, "chat", base_system) == {"model": "mine", "messages": expected, "stream": True}


def test_chat_parameters_and_messages_together() -> None:
    model = created(system="S", messages=EXAMPLES[:1], parameters={"temperature": 0.1, "stop": ["x"]})
    assert apply({"model": "mine", "messages": [USER], "stop": "y"}, model, "chat") == {
        "model": "mine",
        "messages": [{"role": "system", "content": "S"}, EXAMPLES[0], USER],
        "stop": "y",
        "temperature": 0.1,
    }


def test_chat_without_a_messages_list_is_left_to_vllm() -> None:
    # vLLM's own validation answers a malformed body; only the parameters are added.
    model = created(system="S", parameters={"temperature": 0.1})
    assert apply({"model": "mine", "messages": "oops"}, model, "chat") == {
        "model": "mine",
        "messages": "oops",
        "temperature": 0.1,
    }
    assert apply({"model": "mine"}, model, "chat") == {"model": "mine", "temperature": 0.1}


def test_completion_gets_no_messages() -> None:
    model = created(system="S", messages=EXAMPLES, parameters={"top_k": 3})
    body = {"model": "mine", "prompt": "Once upon a time"}
    assert apply(body, model, "completion", "Base.") == {"model": "mine", "prompt": "Once upon a time", "top_k": 3}


def test_created_model_not_mutated() -> None:
    model = created(system="S", messages=EXAMPLES, parameters={"temperature": 0.1})
    apply({"model": "mine", "messages": [USER]}, model, "chat")
    assert model == created(system="S", messages=EXAMPLES, parameters={"temperature": 0.1})


# --- embeddings -------------------------------------------------------------------------------------------


def test_embedding_body_untouched() -> None:
    raw = b'{"model": "mine",  "input": ["a", "b"], "temperature": null}'
    model = created(system="S", messages=EXAMPLES, parameters={"temperature": 0.1, "num_predict": 5})
    assert openai_body(raw, model, "embedding") is raw
