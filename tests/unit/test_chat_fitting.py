"""A chat with tools is rendered by vLLM's chat layer, which refuses a prompt longer than the
model's context with its own error (Open WebUI's 36 tools made one). The Ollama routes fit it as
Ollama does instead: the oldest turns dropped until it fits, or Ollama's words when nothing can
be dropped; never vLLM's message. A fake engine that refuses as vLLM does, no vLLM."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from vllama.errors import InvalidRequest, PromptTooLong
from vllama.models.resolve import ResolvedModel
from vllama.ollama_api.schema import ChatRequest
from vllama.serve.inference import OllamaInference

CONTEXT = 100
TOOL = {"type": "function", "function": {"name": "lookup", "description": "d", "parameters": {"type": "object", "properties": {}}}}


class RefusingEngine:
    """Every message costs 30 tokens and the tools 20; over the context, vLLM's refusal."""

    max_model_len = CONTEXT
    generation_config: dict[str, Any] = {}
    thinks = False

    def __init__(self) -> None:
        self.rendered: list[int] = []

    async def render_openai_chat(self, body: dict[str, Any]) -> Any:
        tokens = 20 + 30 * len(body["messages"])
        self.rendered.append(len(body["messages"]))
        if tokens > self.max_model_len:
            raise PromptTooLong(f"This model's maximum context length is {self.max_model_len} tokens. However, your prompt "
                                f"contains at least {self.max_model_len + 1} input tokens")
        return SimpleNamespace(prompt_token_ids=list(range(tokens)))


def _inference(engine: RefusingEngine) -> OllamaInference:
    model = ResolvedModel(name="m:latest", key="m:latest", source="/m", engine_kwargs={})
    return OllamaInference(engine, model, ["completion", "tools"])  # type: ignore[arg-type]


def _chat(turns: int, **extra: Any) -> ChatRequest:
    messages = [{"role": ("user", "assistant")[i % 2], "content": f"turn {i}"} for i in range(turns - 1)]
    messages.append({"role": "user", "content": "the question"})
    return ChatRequest.model_validate({"model": "m", "messages": messages, "tools": [TOOL], **extra})


async def test_the_oldest_turns_go_until_vllm_takes_it() -> None:
    engine = RefusingEngine()
    prepared = await _inference(engine).prepare("chat", _chat(6))
    assert engine.rendered[0] == 6 and engine.rendered[-1] <= 2  # refused, then fewer until it fit
    assert len(prepared.prompt_token_ids) < CONTEXT


@pytest.mark.parametrize("truncate", [False, None])
async def test_ollamas_words_when_nothing_may_or_can_go(truncate: bool | None) -> None:
    request = _chat(6, truncate=False) if truncate is False else _chat(1, options={"num_ctx": CONTEXT})
    engine = RefusingEngine()
    engine.max_model_len = CONTEXT if truncate is False else 40  # one message and the tools: 50
    with pytest.raises(InvalidRequest) as refused:
        await _inference(engine).prepare("chat", request)
    assert not isinstance(refused.value, PromptTooLong)
    assert refused.value.message.startswith("the input length exceeds the context length")
    assert "maximum context length" not in refused.value.message


@pytest.mark.parametrize(("parameter", "fits_again"), [("input_tokens", True), ("input_text", True), ("messages", False)])
async def test_vllms_length_refusal_is_told_from_other_refusals(parameter: str, fits_again: bool) -> None:
    from vllm.exceptions import VLLMValidationError

    from vllama.engine import vllm_chat

    class ServingChat:
        models = SimpleNamespace(base_model_paths=[SimpleNamespace(name="m")])

        def _effective_chat_template_kwargs(self, request: Any) -> dict[str, Any]:
            return {}

        async def render_chat_request(self, request: Any) -> Any:
            raise VLLMValidationError("This model's maximum context length is 100 tokens", parameter=parameter)

    with pytest.raises(InvalidRequest) as refused:
        await vllm_chat.render(ServingChat(), {"messages": [{"role": "user", "content": "x"}]})
    assert isinstance(refused.value, PromptTooLong) is fits_again
