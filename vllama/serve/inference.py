"""Run one Ollama generate/chat request on this replica's engine.

Glue between the pure translation functions and the engine adapter: resolve options, render the
prompt, fit it into the context, then stream the engine's deltas as NDJSON lines built right
here, where the tokens are made (no second JSON translation, no hop).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from vllama.engine.params import ChatPrompt, ContextLimits, SamplingSettings, TextPrompt
from vllama.engine.types import TokenLogprob
from vllama.engine.vllm_engine import VllmEngine
from vllama.errors import InvalidRequest
from vllama.models.resolve import ResolvedModel
from vllama.ollama_api.schema import ChatRequest, GenerateRequest
from vllama.translate import prompts
from vllama.translate.options import (
    context_limits,
    logprobs_wanted,
    model_defaults,
    options_to_sampling,
    structured_output,
)
from vllama.translate.responses import Kind, RequestClock, StreamEncoder, final_object, metrics

OllamaRequest = GenerateRequest | ChatRequest


@dataclasses.dataclass(frozen=True)
class Prepared:
    prompt_token_ids: list[int]
    sampling: SamplingSettings
    request_id: str


class OllamaInference:
    def __init__(self, engine: VllmEngine, model: ResolvedModel) -> None:
        self.engine = engine
        self.model = model
        self.defaults = model_defaults(engine.generation_config, model.parameters)

    async def prepare(self, kind: Kind, request: OllamaRequest) -> Prepared:
        if problem := prompts.unsupported_features(request, self.model.name):
            raise InvalidRequest(problem)
        sampling = dataclasses.replace(
            options_to_sampling(request.options, self.defaults),
            structured=structured_output(request.format),
            logprobs=logprobs_wanted(request.logprobs, request.top_logprobs),
        )
        limits = context_limits(
            request.options, self.defaults, max_model_len=self.engine.max_model_len, truncate=request.truncate
        )
        if kind == "chat":
            assert isinstance(request, ChatRequest)
            ids = await self._fit_chat(prompts.chat_prompt(request, self.model.system), limits)
        else:
            assert isinstance(request, GenerateRequest)
            ids = await self._fit_text(prompts.generate_prompt(request, self.model.system), limits)
        room = limits.num_ctx - len(ids)
        max_tokens = room if sampling.max_tokens is None else min(sampling.max_tokens, room)
        if sampling.min_tokens > max_tokens:
            raise InvalidRequest("min_tokens does not fit in the context left after the prompt")
        return Prepared(ids, dataclasses.replace(sampling, max_tokens=max_tokens), f"{kind}-{uuid.uuid4().hex}")

    async def _render(self, prompt: ChatPrompt | TextPrompt) -> list[int]:
        if isinstance(prompt, TextPrompt):
            return self.engine.encode(prompt.text)
        return list(prompt.context) + await self.engine.render_chat(prompt.messages)

    async def _fit_chat(self, prompt: ChatPrompt, limits: ContextLimits) -> list[int]:
        """Render; while the prompt leaves no room to answer, drop the oldest turn (Ollama's
        `truncate`, on by default), or fail if the client asked not to truncate."""
        ids = await self._render(prompt)
        while len(ids) >= limits.num_ctx:
            fewer = prompts.drop_oldest_turn(prompt.messages) if limits.truncate else None
            if fewer is None:
                raise InvalidRequest(_too_long(len(ids), limits.num_ctx))
            prompt = dataclasses.replace(prompt, messages=fewer)
            ids = await self._render(prompt)
        return ids

    async def _fit_text(self, prompt: ChatPrompt | TextPrompt, limits: ContextLimits) -> list[int]:
        ids = await self._render(prompt)
        if len(ids) >= limits.num_ctx:
            if not limits.truncate:
                raise InvalidRequest(_too_long(len(ids), limits.num_ctx))
            ids = ids[len(ids) - limits.num_ctx + 1 :]  # keep the most recent tokens
        return ids

    async def stream(
        self, kind: Kind, request: OllamaRequest, arrival_ns: int, echo_name: str
    ) -> AsyncIterator[bytes]:
        """NDJSON lines. Errors before the first line raise (the route gives them a status);
        closing the iterator aborts the engine request."""
        prepared = await self.prepare(kind, request)
        encoder = StreamEncoder(echo_name, kind)
        clock = RequestClock(arrival_ns=arrival_ns, submitted_ns=time.monotonic_ns())
        first = last = eval_tokens = 0
        output_ids: list[int] = []
        async for delta in self.engine.generate(prepared.prompt_token_ids, prepared.sampling, prepared.request_id):
            last = time.monotonic_ns()
            first = first or last
            eval_tokens += len(delta.token_ids)
            if kind == "generate":
                output_ids.extend(delta.token_ids)
            if delta.text or delta.logprobs:
                yield encoder.chunk(delta.text, delta.logprobs)
            if delta.finish_reason is not None:
                values = metrics(
                    clock, prompt_tokens=len(prepared.prompt_token_ids), eval_tokens=eval_tokens,
                    timings=delta.timings, first_token_ns=first, last_token_ns=last,
                )
                yield encoder.final(delta.finish_reason, values, self._context(kind, request, prepared, output_ids))

    async def complete(self, kind: Kind, request: OllamaRequest, arrival_ns: int, echo_name: str) -> dict[str, Any]:
        """The whole answer as one object (`stream: false`)."""
        prepared = await self.prepare(kind, request)
        clock = RequestClock(arrival_ns=arrival_ns, submitted_ns=time.monotonic_ns())
        first = last = 0
        texts: list[str] = []
        output_ids: list[int] = []
        logprobs: list[TokenLogprob] = []
        finish_reason, timings = "stop", None
        async for delta in self.engine.generate(prepared.prompt_token_ids, prepared.sampling, prepared.request_id):
            last = time.monotonic_ns()
            first = first or last
            texts.append(delta.text)
            output_ids.extend(delta.token_ids)
            logprobs.extend(delta.logprobs)
            if delta.finish_reason is not None:
                finish_reason, timings = delta.finish_reason, delta.timings
        values = metrics(
            clock, prompt_tokens=len(prepared.prompt_token_ids), eval_tokens=len(output_ids),
            timings=timings, first_token_ns=first, last_token_ns=last,
        )
        context = self._context(kind, request, prepared, output_ids)
        return final_object(kind, echo_name, "".join(texts), finish_reason, values, context, logprobs)

    @staticmethod
    def _context(kind: Kind, request: OllamaRequest, prepared: Prepared, output_ids: list[int]) -> list[int] | None:
        # Ollama returns the conversation's token ids on generate (not in raw mode), for the
        # client to send back as `context` with its next prompt.
        if kind != "generate" or getattr(request, "raw", False):
            return None
        return prepared.prompt_token_ids + output_ids


def _too_long(prompt_tokens: int, num_ctx: int) -> str:
    return f"the input length exceeds the context length ({prompt_tokens} prompt tokens, context {num_ctx})"
