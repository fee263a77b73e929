"""Thinking: `think` switches the template's thinking on, vLLM's reasoning parser (qwen3) splits
the thought from the answer, and the answer comes in Ollama's `thinking` field (OpenAI's
`reasoning`). The random model never ends a thought by itself, so the tests give it a budget
(`thinking_token_budget`, vLLM's extension): vLLM then ends the thought after that many tokens.
The served directory (tiny-two) has the same template but no reasoning parser configured (a
directory's parsers are not guessed for thinking), so only the first model thinks here."""

from __future__ import annotations

import json
from pathlib import Path

import ollama
import openai
import pytest

from tests.e2e.conftest import PRIMARY, VISION

BUDGET = 6
OPTIONS = {"temperature": 0, "num_predict": 30, "thinking_token_budget": BUDGET}
ASK = [{"role": "user", "content": "Why is the sky blue?"}]


@pytest.fixture(scope="module")
def client(base_url: str) -> ollama.Client:
    return ollama.Client(host=base_url)


def test_thought_and_answer_apart(client: ollama.Client, model_dir: Path) -> None:
    from transformers import AutoTokenizer

    answer = client.chat(model=PRIMARY, messages=ASK, think=True, options=OPTIONS)
    assert answer.message.thinking and answer.message.content
    assert "<think>" not in answer.message.content and "</think>" not in answer.message.thinking
    # The thought took at most the budget, then vLLM closed it: the rest is the answer.
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert len(tokenizer.encode(answer.message.thinking.strip(), add_special_tokens=False)) <= BUDGET + 1
    assert answer.eval_count == 30


def test_streamed_thought_comes_first(client: ollama.Client) -> None:
    parts = list(client.chat(model=PRIMARY, messages=ASK, think=True, options=OPTIONS, stream=True))
    kinds = ["thinking" if p.message.thinking else "content" for p in parts if p.message.thinking or p.message.content]
    assert kinds[0] == "thinking" and kinds[-1] == "content"
    assert kinds == sorted(kinds, key=lambda k: k != "thinking")  # no thought after the answer began
    whole = client.chat(model=PRIMARY, messages=ASK, think=True, options=OPTIONS)
    assert "".join(p.message.thinking or "" for p in parts) == whole.message.thinking
    assert "".join(p.message.content for p in parts) == whole.message.content


def test_levels_generate_and_off(client: ollama.Client) -> None:
    generated = client.generate(model=PRIMARY, prompt="Why?", think="high", options=OPTIONS)
    assert generated.thinking and generated.response
    plain = client.chat(model=PRIMARY, messages=ASK, think=False, options=OPTIONS)
    default = client.chat(model=PRIMARY, messages=ASK, options=OPTIONS)  # vllama-tiny thinks when asked
    assert not plain.message.thinking and plain.message.content == default.message.content


def test_format_applies_after_the_thought(client: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    answer = client.chat(model=PRIMARY, messages=ASK, think=True, format=schema, options={**OPTIONS, "num_predict": 60})
    assert answer.message.thinking and answer.done_reason == "stop"  # the grammar ended the answer
    assert set(json.loads(answer.message.content)) == {"ok"}


def test_thinking_on_a_model_that_does_not_think(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model=VISION, messages=ASK, think=True)
    assert refused.value.status_code == 400 and refused.value.error == f'"{VISION}" does not support thinking'
    assert "thinking" in client.show(PRIMARY).capabilities and "thinking" not in client.show(VISION).capabilities


def test_openai_reasoning(base_url: str) -> None:
    api = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused")
    answer = api.chat.completions.create(
        model=PRIMARY, messages=ASK, temperature=0, max_tokens=30,
        extra_body={"chat_template_kwargs": {"enable_thinking": True}, "thinking_token_budget": BUDGET},
    )
    message = answer.choices[0].message
    assert message.reasoning and message.content  # vLLM's own field name for the thought
    ollama_answer = ollama.Client(host=base_url).chat(model=PRIMARY, messages=ASK, think=True, options=OPTIONS)
    assert (message.reasoning, message.content) == (ollama_answer.message.thinking, ollama_answer.message.content)
