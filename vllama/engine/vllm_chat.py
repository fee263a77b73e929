"""Chats that need vLLM's chat layer: tools, thinking, images.

For these vLLM already does all the model-specific work: the chat template's tools and image
placeholders, the tool-call grammar that keeps a forced or strict call valid (an xgrammar
structural tag), the reasoning parser's split of a thought from the answer, and the
tool-call parser that finds calls in the text, per model family. This module drives those
pieces of vLLM's `OpenAIServingChat` (the same objects `/v1/chat/completions` uses, built in
`vllm_engine.OpenAIServing`) with the request translated by `vllama.translate.chat`, and yields
our own `EngineDelta`s, so that the Ollama route keeps its own framing, metrics and aborts.

It uses three of `OpenAIServingChat`'s private helpers (`_effective_chat_template_kwargs`,
`_make_parser`, `_engine_reasoning_kwargs`), pinned by the exact vLLM release in
pyproject.toml: re-implementing them would copy vLLM's tool-choice and reasoning rules, which
change with every model family vLLM adds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from vllama.engine.types import EngineDelta, ToolCallDelta
from vllama.engine.vllm_errors import from_vllm
from vllama.errors import EngineFailed, InvalidRequest, PromptTooLong, VllamaError

#: The parameters vLLM names when a prompt is longer than the context (`vllm/renderers/params.py`:
#: counted in tokens, or refused by its length in characters before tokenizing).
_PROMPT_LENGTH = ("input_tokens", "input_text")


@dataclass
class RenderedChat:
    """A chat request rendered by vLLM's chat layer, ready to generate."""

    request: Any  # vLLM's ChatCompletionRequest, after its parser adjusted it
    engine_input: Any  # token ids, and multimodal data when the messages have images
    template_kwargs: dict[str, Any]
    reasoning_kwargs: dict[str, Any]

    @property
    def prompt_token_ids(self) -> list[int]:
        return list(self.engine_input["prompt_token_ids"])


async def render(serving_chat: Any, body: dict[str, Any]) -> RenderedChat:
    """Validate and render an OpenAI chat body (see `vllama.translate.chat.chat_body`)."""
    from pydantic import ValidationError
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.entrypoints.serve.engine.protocol import ErrorResponse
    from vllm.exceptions import VLLMError

    try:
        request = ChatCompletionRequest.model_validate({**body, "model": serving_chat.models.base_model_paths[0].name})
    except ValidationError as exc:
        raise InvalidRequest(_first_error(exc)) from None
    except VLLMError as exc:  # raised by vLLM's own model validators, which pydantic passes through
        raise from_vllm(exc) from None
    template_kwargs = serving_chat._effective_chat_template_kwargs(request)
    try:
        result = await serving_chat.render_chat_request(request)  # may set request.structured_outputs
    except VLLMError as exc:
        if getattr(exc, "parameter", None) in _PROMPT_LENGTH:
            raise PromptTooLong(str(exc)) from exc
        raise InvalidRequest(str(exc)) from exc
    except (ValueError, TypeError) as exc:  # a chat template or a parser refusing these messages
        raise InvalidRequest(f"the chat template failed on these messages: {exc}") from exc
    if isinstance(result, ErrorResponse):
        if result.error.param in _PROMPT_LENGTH:
            raise PromptTooLong(result.error.message)
        raise VllamaError(result.error.message, status_code=int(result.error.code or 400))
    _, (engine_input,) = result
    parser = _parser(serving_chat, request, template_kwargs)
    reasoning_kwargs = serving_chat._engine_reasoning_kwargs(
        request, parser, template_kwargs, list(engine_input["prompt_token_ids"])
    )
    return RenderedChat(request, engine_input, template_kwargs, reasoning_kwargs)


def _parser(serving_chat: Any, request: Any, template_kwargs: dict[str, Any]) -> Any:
    if serving_chat.parser_cls is None:
        return None
    return serving_chat._make_parser(request, serving_chat.renderer.tokenizer, template_kwargs)


async def generate(
    serving_chat: Any, engine: Any, chat: RenderedChat, max_tokens: int, request_id: str, *, logprobs: Any
) -> AsyncIterator[EngineDelta]:
    """Generate, splitting thoughts and tool calls from the answer with vLLM's streaming parsers.

    `stream: false` answers are made from the same deltas, so both agree. (vLLM's non-streaming
    path parses the whole text at the end instead, and there one unfinished call, cut by the
    token limit, makes the hermes parser drop the complete calls before it; streamed, each call
    is kept once complete.) `logprobs(completion, top)` turns vLLM's log probabilities into ours.
    """
    from vllm.exceptions import VLLMError
    from vllm.sampling_params import RequestOutputKind

    request = chat.request
    try:
        params = request.to_sampling_params(max_tokens, {})
    except (ValueError, VLLMError) as exc:
        raise InvalidRequest(str(exc)) from exc
    params.output_kind = RequestOutputKind.DELTA
    parser = _parser(serving_chat, request, chat.template_kwargs)
    prompt_ids = chat.prompt_token_ids
    stream = engine.generate(chat.engine_input, params, request_id, **chat.reasoning_kwargs)
    try:
        async for output in stream:
            completion = output.outputs[0]
            ids = list(completion.token_ids)
            top = logprobs(completion, params.logprobs) if params.logprobs is not None else ()
            finished = output.finished
            if finished and completion.finish_reason not in ("stop", "length"):
                raise EngineFailed(f"generation ended with '{completion.finish_reason}'")
            if parser is not None:
                message = parser.parse_delta(
                    delta_text=completion.text, delta_token_ids=ids, request=request,
                    prompt_token_ids=prompt_ids, finished=finished,
                )
                content, thinking, calls = _split(message)
            else:
                content, thinking, calls = completion.text, "", ()
            yield EngineDelta(
                content,
                tuple(ids),
                finish_reason=completion.finish_reason if finished else None,
                prompt_token_ids=tuple(prompt_ids) if finished else (),
                timings=_timings(output.metrics) if finished else None,
                logprobs=top,
                thinking=thinking,
                tool_calls=calls,
            )
    except VLLMError as exc:
        raise from_vllm(exc) from exc
    finally:
        await stream.aclose()  # closing early aborts the request


def _split(message: Any) -> tuple[str, str, tuple[ToolCallDelta, ...]]:
    if message is None:
        return "", "", ()
    calls = tuple(
        ToolCallDelta(
            index=call.index,
            id=call.id,
            name=call.function.name if call.function is not None else None,
            arguments=(call.function.arguments or "") if call.function is not None else "",
        )
        for call in message.tool_calls or ()
    )
    return message.content or "", message.reasoning or "", calls


def _timings(metrics: Any) -> Any:
    from vllama.engine.vllm_engine import _timings as engine_timings

    return engine_timings(metrics)


def _first_error(exc: Any) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ()))
    return f"{where}: {error.get('msg')}" if where else str(error.get("msg"))
