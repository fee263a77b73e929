"""vLLM's own OpenAI handlers over one of our engines: `/v1` answers exactly as `vllm serve` does.

Built by `VllmEngine.start`; part of the vLLM adapter (this package's modules named `vllm_*` are
the only ones that import vllm).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import orjson

from vllama.engine.vllm_errors import from_vllm
from vllama.errors import InvalidRequest, VllamaError

if TYPE_CHECKING:
    from vllama.engine.vllm_engine import ChatOptions


@dataclasses.dataclass
class OpenAIServing:
    """vLLM's own OpenAI handlers over our engine: /v1 answers exactly as `vllm serve` does."""

    chat: Any
    completion: Any
    models: Any
    embedding: Any = None

    @classmethod
    def build(cls, engine: Any, name: str, source: str, chat_options: ChatOptions, reasoning_parser: str) -> OpenAIServing:
        from vllm.entrypoints.openai.chat_completion.serving import OpenAIServingChat
        from vllm.entrypoints.openai.completion.serving import OpenAIServingCompletion
        from vllm.entrypoints.openai.models.protocol import BaseModelPath
        from vllm.entrypoints.openai.models.serving import OpenAIServingModels
        from vllm.renderers.online_renderer import OnlineRenderer

        models = OpenAIServingModels(engine_client=engine, base_model_paths=[BaseModelPath(name=name, model_path=source)])
        if engine.model_config.runner_type == "pooling":
            from vllm.entrypoints.pooling.embed.serving import ServingEmbedding
            from vllm.renderers.chat_utils import ChatTemplateConfig

            embedding = ServingEmbedding(engine, models, request_logger=None, chat_template_config=ChatTemplateConfig())
            return cls(chat=None, completion=None, models=models, embedding=embedding)
        # As `vllm serve --tool-call-parser P --enable-auto-tool-choice --reasoning-parser R`. The
        # strict level "parameter" makes every tool call's arguments follow its tool's schema (a
        # grammar applied once the model opens a call), as if each tool said `strict: true`:
        # small models otherwise write arguments that do not parse.
        parsers: dict[str, Any] = {
            "enable_auto_tools": chat_options.tool_parser is not None,
            "tool_parser": chat_options.tool_parser,
            "reasoning_parser": reasoning_parser or None,
            "tool_strict_level": "parameter",
            # A request that says nothing about thinking gets the model's default (/v1 too).
            "default_chat_template_kwargs": {"enable_thinking": chat_options.think_default} if reasoning_parser else None,
        }
        renderer = OnlineRenderer(
            model_config=engine.model_config, renderer=engine.renderer, request_logger=None,
            chat_template=None, chat_template_content_format="auto", **parsers,
        )
        if renderer.parser is not None and engine.vllm_config.structured_outputs_config.disable_any_whitespace:
            renderer.parser = _bounded_whitespace(renderer.parser)
        chat = OpenAIServingChat(
            engine, models, "assistant", online_renderer=renderer, request_logger=None,
            chat_template=None, chat_template_content_format="auto",
            **{**parsers, "reasoning_parser": reasoning_parser},
        )
        completion = OpenAIServingCompletion(engine, models, online_renderer=renderer, request_logger=None)
        return cls(chat=chat, completion=completion, models=models)

    async def create(self, kind: str, body: bytes) -> Any:
        """Run one /v1 request (`kind` is "chat" or "completion") on its raw JSON body.

        Returns vLLM's response model or an async iterator of SSE strings; vLLM's ErrorResponse
        is raised as our `VllamaError` with its status.
        """
        from pydantic import ValidationError
        from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
        from vllm.entrypoints.openai.completion.protocol import CompletionRequest
        from vllm.entrypoints.serve.engine.protocol import ErrorResponse
        from vllm.exceptions import VLLMError

        if (self.chat if kind == "chat" else self.completion) is None:
            raise InvalidRequest(f"this model does not support {'chat' if kind == 'chat' else 'completions'}")
        request_cls = ChatCompletionRequest if kind == "chat" else CompletionRequest
        try:
            request = request_cls.model_validate_json(body)
        except ValidationError as exc:
            raise InvalidRequest(_validation_message(exc)) from exc
        except VLLMError as exc:  # raised by vLLM's own model validators, which pydantic passes through
            raise from_vllm(exc) from exc
        request.model = self.models.base_model_paths[0].name
        try:
            if kind == "chat":
                result = await self.chat.create_chat_completion(request, None)
            else:
                result = await self.completion.create_completion(request, None)
        except VLLMError as exc:
            raise from_vllm(exc) from exc
        if isinstance(result, ErrorResponse):
            raise VllamaError(result.error.message, status_code=int(result.error.code or 500))
        return result


    async def embed(self, body: bytes) -> bytes:
        """Run one /v1/embeddings request on its raw JSON body; the answer as JSON bytes."""
        from pydantic import TypeAdapter, ValidationError
        from vllm.entrypoints.pooling.embed.protocol import EmbeddingRequest
        from vllm.entrypoints.serve.engine.protocol import ErrorResponse
        from vllm.exceptions import VLLMError

        if self.embedding is None:
            raise InvalidRequest("this model does not support embeddings")
        try:
            request = TypeAdapter(EmbeddingRequest).validate_json(body)  # a union: input or messages
        except ValidationError as exc:
            raise InvalidRequest(_validation_message(exc)) from exc
        except VLLMError as exc:  # raised by vLLM's own model validators, which pydantic passes through
            raise from_vllm(exc) from exc
        request.model = self.models.base_model_paths[0].name
        try:
            result = await self.embedding(request)
        except VLLMError as exc:
            raise from_vllm(exc) from exc
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        if isinstance(result, ErrorResponse):
            raise VllamaError(result.error.message, status_code=int(result.error.code or 500))
        if result.status_code != 200:
            raise VllamaError(_error_message(result.body), status_code=result.status_code)
        return bytes(result.body)


def _bounded_whitespace(parser_cls: Any) -> Any:
    """vLLM's parser class, whose tool-call grammars allow at most one whitespace character in a
    row inside the JSON they constrain (arguments).

    The engine's `disable_any_whitespace` keeps `format` output compact, but vLLM builds its
    tool-call grammars (xgrammar structural tags) without a whitespace bound, and a small model
    then fills the arguments with newlines until it runs out of tokens. xgrammar's JSON format
    takes the bound (`max_whitespace_cnt`); this adds it to every JSON part of the grammar.
    """
    import json

    def bound(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "json_schema" and node.get("max_whitespace_cnt") is None:
                node["max_whitespace_cnt"] = 1
            for value in node.values():
                bound(value)
        elif isinstance(node, list):
            for value in node:
                bound(value)

    def adjust_request(self: Any, request: Any) -> Any:
        request = super(bounded, self).adjust_request(request)
        structured = getattr(request, "structured_outputs", None)
        if structured is not None and structured.structural_tag:
            tag = json.loads(structured.structural_tag)
            bound(tag)
            structured.structural_tag = json.dumps(tag)
        return request

    bounded = type(f"Bounded{parser_cls.__name__}", (parser_cls,), {"adjust_request": adjust_request})
    return bounded


def _error_message(body: bytes) -> str:
    try:
        return str(orjson.loads(body)["error"]["message"])
    except Exception:
        return body.decode(errors="replace")


def _validation_message(exc: Any) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg')}" if where else str(error.get("msg")))
    return "; ".join(parts)

