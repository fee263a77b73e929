"""`suffix` (fill in the middle) and `template` overrides on generate.

The tiny model's tokenizer has Qwen2.5-Coder's fill-in-the-middle tokens, so `suffix` prompts it
with `<|fim_prefix|>...<|fim_suffix|>...<|fim_middle|>`: the same tokens as a raw prompt written
that way give the same greedy answer. An Ollama (Go) template that writes the model's ChatML
renders the same prompt as the model's own chat template: the same answer again."""

from __future__ import annotations

import ollama
import pytest

from tests.e2e.conftest import EMBED, PRIMARY

OPTIONS = {"temperature": 0, "num_predict": 10, "ignore_eos": True}
PREFIX, SUFFIX = "def add(a, b):\n    ", "\n    return total\n"
CHATML = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def client(base_url: str) -> ollama.Client:
    return ollama.Client(host=base_url)


def test_suffix_prompts_with_the_fim_tokens(client: ollama.Client) -> None:
    filled = client.generate(model=PRIMARY, prompt=PREFIX, suffix=SUFFIX, options=OPTIONS)
    raw = client.generate(model=PRIMARY, prompt=f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>",
                          raw=True, options=OPTIONS)
    assert filled.response == raw.response and filled.prompt_eval_count == raw.prompt_eval_count
    assert "insert" in client.show(PRIMARY).capabilities


def test_suffix_on_a_model_without_fill_in_the_middle(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        client.generate(model=EMBED, prompt=PREFIX, suffix=SUFFIX)
    assert refused.value.status_code == 400


def test_template_override(client: ollama.Client) -> None:
    templated = client.generate(model=PRIMARY, prompt="hi", system="Be brief.", template=CHATML, options=OPTIONS)
    plain = client.generate(model=PRIMARY, prompt="hi", system="Be brief.", options=OPTIONS)
    assert templated.response == plain.response and templated.prompt_eval_count == plain.prompt_eval_count
    other = client.generate(model=PRIMARY, prompt="hi", template="Q: {{ .Prompt }}\nA:", options=OPTIONS)
    assert other.prompt_eval_count < plain.prompt_eval_count  # the template really was used


def test_fill_in_the_middle_through_a_template(client: ollama.Client) -> None:
    template = "<|fim_prefix|>{{ .Prompt }}<|fim_suffix|>{{ .Suffix }}<|fim_middle|>"
    through_template = client.generate(model=PRIMARY, prompt=PREFIX, suffix=SUFFIX, template=template, options=OPTIONS)
    assert through_template.response == client.generate(model=PRIMARY, prompt=PREFIX, suffix=SUFFIX, options=OPTIONS).response


def test_bad_template(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        client.generate(model=PRIMARY, prompt="hi", template="{{ if .Prompt }}unclosed")
    assert refused.value.status_code == 400 and "template" in refused.value.error
