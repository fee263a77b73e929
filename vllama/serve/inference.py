"""Run one Ollama generate/chat request on this replica's engine.

Glue between the pure translation functions and the engine adapter: resolve options, render the
prompt, fit it into the context, then stream the engine's deltas as NDJSON lines built right
here, where the tokens are made (no second JSON translation, no hop).

Two ways to the engine:
- plain requests (most of them) render the chat template and sample with our own settings:
  the per-token path stays as short as it can be;
- requests with tools, a thought, or images go through vLLM's chat layer
  (`VllmEngine.render_openai_chat`), whose parsers split thoughts and tool calls from the text.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from vllama.engine.params import ChatPrompt, ContextLimits, FillInMiddle, SamplingSettings, TextPrompt
from vllama.engine.types import EngineDelta, TokenLogprob
from vllama.engine.vllm_engine import VllmEngine
from vllama.errors import EngineFailed, InvalidRequest, PromptTooLong
from vllama.models.registry import CreatedModel
from vllama.models.resolve import ResolvedModel
from vllama.ollama_api.schema import ChatRequest, GenerateRequest
from vllama.serve import telemetry
from vllama.serve.hop import Piece, Resume, StreamStart
from vllama.translate import chat as chat_translation
from vllama.translate import prompts
from vllama.translate.options import (
    context_limits,
    logprobs_wanted,
    model_defaults,
    options_to_sampling,
    structured_output,
)
from vllama.translate.responses import Kind, RequestClock, StreamEncoder, final_object, metrics, resumed_metrics

OllamaRequest = GenerateRequest | ChatRequest


@dataclasses.dataclass(frozen=True)
class Prepared:
    #: What the engine gets: the rendered prompt, then (for a resumed stream) the tokens the
    #: client already has.
    prompt_token_ids: list[int]
    sampling: SamplingSettings
    request_id: str
    #: Set when the request goes through vLLM's chat layer (tools, thinking, images).
    chat: Any = None
    #: Tokens of the answer generated before (a stream resumed on this replica).
    resumed: tuple[int, ...] = ()

    @property
    def prompt_count(self) -> int:
        """The prompt's own tokens, as Ollama counts them (`prompt_eval_count`)."""
        return len(self.prompt_token_ids) - len(self.resumed)


class OllamaInference:
    def __init__(self, engine: VllmEngine, model: ResolvedModel, capabilities: list[str]) -> None:
        self.engine = engine
        self.model = model
        self.capabilities = capabilities
        self.defaults = model_defaults(engine.generation_config, model.parameters)

    def _defaults(self, created: CreatedModel | None) -> dict[str, Any]:
        if created is None or not created.parameters:
            return self.defaults
        return model_defaults(self.engine.generation_config, {**self.model.parameters, **created.parameters})

    def _think(self, request: OllamaRequest) -> bool | str | None:
        """The request's `think`, or the model's default; None for a model that does not think."""
        if not self.engine.thinks:
            return None
        return request.think if request.think is not None else self.engine.chat_options.think_default

    async def prepare(
        self, kind: Kind, request: OllamaRequest, created: CreatedModel | None = None, resume: Resume | None = None,
        http_request_id: str = "",
    ) -> Prepared:
        """Sampling settings and prompt token ids. `created`: the model the request named, when
        it is one made by /api/create on this engine's model (its Modelfile parts apply).
        `resume`: go on with an answer another replica started (its tokens follow the prompt,
        and the token budget is what it left). `http_request_id`: the HTTP request's id, made
        part of the engine's (`request_log.py`)."""
        template = (request.template if isinstance(request, GenerateRequest) else None) or (
            created.template if created is not None else None
        )
        capabilities = self.capabilities
        if template and prompts.template_uses(template, "Suffix"):  # the template does fill in the middle
            capabilities = [*capabilities, "insert"]
        if problem := prompts.unsupported_features(request, self.model.name, capabilities):
            raise InvalidRequest(problem)
        defaults = self._defaults(created)
        system = created.system if created is not None and created.system is not None else self.model.system
        examples = created.messages if created is not None else ()
        sampling = dataclasses.replace(
            options_to_sampling(request.options, defaults),
            structured=structured_output(request.format),
            logprobs=logprobs_wanted(request.logprobs, request.top_logprobs),
        )
        limits = context_limits(
            request.options, defaults, max_model_len=self.engine.max_model_len, truncate=request.truncate
        )
        # An Ollama template renders the prompt itself: the model's default thought is not asked
        # for, and what needs vLLM's chat layer (its own template) cannot be combined with it.
        think = request.think if template else self._think(request)
        if template and _needs_chat_layer(request, think):
            raise InvalidRequest("a template cannot be combined with tools, think or images")
        rendered = None
        if kind == "chat" and template:
            assert isinstance(request, ChatRequest)
            messages = prompts.chat_prompt(request, system, examples).messages
            tools = [t.model_dump() for t in request.tools] if request.tools else None
            text = prompts.ollama_template(template, messages, tools=tools, think=request.think)
            ids = await self._fit_text(TextPrompt(text), limits, None)
        elif kind == "chat":
            assert isinstance(request, ChatRequest)
            prompt = prompts.chat_prompt(request, system, examples)
            if _needs_chat_layer(request, think):
                rendered = await self._fit_openai_chat(prompt, sampling, limits, request, think)
                ids = rendered.prompt_token_ids
            else:
                ids = await self._fit_chat(prompt, limits, think)
        else:
            assert isinstance(request, GenerateRequest)
            text_or_chat = prompts.generate_prompt(request, system, examples, template)
            if isinstance(text_or_chat, ChatPrompt) and _needs_chat_layer(request, think):
                if text_or_chat.context:
                    raise InvalidRequest("context cannot be combined with think or images; send the conversation to /api/chat")
                rendered = await self._fit_openai_chat(text_or_chat, sampling, limits, None, think)
                ids = rendered.prompt_token_ids
            else:
                ids = await self._fit_text(text_or_chat, limits, think)
        room = limits.num_ctx - len(ids)
        max_tokens = room if sampling.max_tokens is None else min(sampling.max_tokens, room)
        if sampling.min_tokens > max_tokens:
            raise InvalidRequest("min_tokens does not fit in the context left after the prompt")
        request_id = engine_request_id(kind, http_request_id)
        if resume is None:
            return Prepared(ids, dataclasses.replace(sampling, max_tokens=max_tokens), request_id, rendered)
        if rendered is not None:  # the ingress resumes only what this replica called resumable
            raise EngineFailed("this request cannot be resumed on another replica")
        done = resume.output_token_ids
        sampling = dataclasses.replace(
            sampling, max_tokens=max_tokens - len(done), min_tokens=max(sampling.min_tokens - len(done), 0)
        )
        return Prepared(ids + list(done), sampling, request_id, None, done)

    async def _render(self, prompt: ChatPrompt | TextPrompt | FillInMiddle, think: bool | str | None) -> list[int]:
        if isinstance(prompt, TextPrompt):
            return list(prompt.context) + self.engine.encode(prompt.text)
        if isinstance(prompt, FillInMiddle):
            return self.engine.fill_in_middle(prompt.prefix, prompt.suffix)
        messages = chat_translation.openai_messages(prompt.messages)
        thinking = None if think is None else think is not False
        return list(prompt.context) + await self.engine.render_chat(messages, think=thinking)

    async def _fit_chat(self, prompt: ChatPrompt, limits: ContextLimits, think: bool | str | None) -> list[int]:
        """Render; while the prompt leaves no room to answer, drop the oldest turn (Ollama's
        `truncate`, on by default), or fail if the client asked not to truncate."""
        ids = await self._render(prompt, think)
        while len(ids) >= limits.num_ctx:
            prompt = dataclasses.replace(prompt, messages=self._fewer(prompt.messages, len(ids), limits))
            ids = await self._render(prompt, think)
        return ids

    async def _fit_openai_chat(
        self,
        prompt: ChatPrompt,
        sampling: SamplingSettings,
        limits: ContextLimits,
        request: ChatRequest | None,
        think: bool | str | None,
    ) -> Any:
        """Render through vLLM's chat layer, dropping the oldest turns as `_fit_chat` does."""
        tools = [t.model_dump() for t in request.tools] if request is not None and request.tools else None
        choice = _tool_choice(request) if request is not None else None
        messages = prompt.messages
        while True:
            body = chat_translation.chat_body(self.model.name, messages, sampling, tools=tools, choice=choice, think=think)
            try:
                rendered = await self.engine.render_openai_chat(body)
            except PromptTooLong:  # vLLM refused it as longer than max_model_len (num_ctx is no more)
                messages = self._fewer(messages, None, limits)  # its count is vLLM's, against another bound
                continue
            if len(rendered.prompt_token_ids) < limits.num_ctx:
                return rendered
            messages = self._fewer(messages, len(rendered.prompt_token_ids), limits)

    @staticmethod
    def _fewer(messages: tuple[dict[str, Any], ...], prompt_tokens: int | None, limits: ContextLimits) -> tuple[dict[str, Any], ...]:
        fewer = prompts.drop_oldest_turn(messages) if limits.truncate else None
        if fewer is None:
            raise InvalidRequest(_too_long(prompt_tokens, limits.num_ctx))
        return fewer

    async def _fit_text(
        self, prompt: ChatPrompt | TextPrompt | FillInMiddle, limits: ContextLimits, think: bool | str | None
    ) -> list[int]:
        ids = await self._render(prompt, think)
        if len(ids) >= limits.num_ctx:
            if not limits.truncate:
                raise InvalidRequest(_too_long(len(ids), limits.num_ctx))
            ids = ids[len(ids) - limits.num_ctx + 1 :]  # keep the most recent tokens
        return ids

    def _generate(self, prepared: Prepared) -> AsyncIterator[EngineDelta]:
        if prepared.chat is not None:
            assert prepared.sampling.max_tokens is not None
            return self.engine.generate_chat(prepared.chat, prepared.sampling.max_tokens, prepared.request_id)
        return self.engine.generate(prepared.prompt_token_ids, prepared.sampling, prepared.request_id)

    async def stream(
        self,
        kind: Kind,
        request: OllamaRequest,
        arrival_ns: int,
        echo_name: str,
        created: CreatedModel | None = None,
        resume: Resume | None = None,
        replica: str = "",
        http_request_id: str = "",
    ) -> AsyncIterator[Piece]:
        """NDJSON lines, each with the token ids it carries. Errors before the first line raise
        (the route gives them a status); closing the iterator aborts the engine request."""
        prepared = await self.prepare(kind, request, created, resume, http_request_id)
        encoder = StreamEncoder(echo_name, kind)
        clock = RequestClock(arrival_ns=arrival_ns, submitted_ns=time.monotonic_ns())
        first = last = 0
        output_ids: list[int] = list(prepared.resumed)
        unsent: list[int] = []  # tokens whose text has not gone out yet (held by the detokenizer)
        start = None if resume is not None else StreamStart(replica, resumable=prepared.chat is None)
        calls = chat_translation.ToolCallCollector()
        if prepared.sampling.max_tokens is not None and prepared.sampling.max_tokens <= 0:  # resumed at its end
            yield Piece(encoder.final("length", self._metrics(clock, prepared, resume, 0, 0)), done=True)
            return
        async for delta in self._generate(prepared):
            last = time.monotonic_ns()
            if not first:
                first = last
                if start is not None:
                    start = dataclasses.replace(
                        start, load_ns=clock.submitted_ns - arrival_ns, prefill_ns=first - clock.submitted_ns
                    )
            output_ids.extend(delta.token_ids)
            unsent.extend(delta.token_ids)
            done_calls = calls.add(delta.tool_calls) if delta.tool_calls else []
            if delta.finish_reason is not None:
                data = b""
                if delta.text or delta.logprobs or delta.thinking or done_calls:
                    data = encoder.chunk(delta.text, delta.logprobs, delta.thinking, done_calls)
                if rest := calls.finish():  # Ollama sends each call whole, in a chunk of its own
                    data += encoder.chunk("", (), "", rest)
                values = self._metrics(clock, prepared, resume, first, last, len(output_ids), delta.timings)
                self._record(values, delta.timings)
                data += encoder.final(delta.finish_reason, values, self._context(kind, request, prepared, output_ids))
                yield Piece(data, tuple(unsent), start, done=True)
                return
            if delta.text or delta.logprobs or delta.thinking or done_calls:
                yield Piece(encoder.chunk(delta.text, delta.logprobs, delta.thinking, done_calls), tuple(unsent), start)
                unsent.clear()
                start = None

    def _record(self, values: dict[str, int], timings: Any) -> None:
        telemetry.record_answer(self.model.name, values, timings.queue_ns if timings is not None else 0)

    @staticmethod
    def _metrics(
        clock: RequestClock, prepared: Prepared, resume: Resume | None, first: int, last: int,
        eval_tokens: int = 0, timings: Any = None,
    ) -> dict[str, int]:
        if resume is None:
            return metrics(clock, prompt_tokens=prepared.prompt_count, eval_tokens=eval_tokens, timings=timings,
                           first_token_ns=first, last_token_ns=last)
        return resumed_metrics(
            clock, prompt_tokens=prepared.prompt_count, eval_tokens=eval_tokens or len(prepared.resumed),
            load_ns=resume.start.load_ns, prefill_ns=resume.start.prefill_ns,
            first_token_ns=clock.arrival_ns + resume.first_token_ns, last_token_ns=last or time.monotonic_ns(),
        )

    async def complete(
        self, kind: Kind, request: OllamaRequest, arrival_ns: int, echo_name: str, created: CreatedModel | None = None,
        http_request_id: str = "",
    ) -> dict[str, Any]:
        """The whole answer as one object (`stream: false`)."""
        prepared = await self.prepare(kind, request, created, http_request_id=http_request_id)
        clock = RequestClock(arrival_ns=arrival_ns, submitted_ns=time.monotonic_ns())
        first = last = 0
        texts: list[str] = []
        thoughts: list[str] = []
        output_ids: list[int] = []
        logprobs: list[TokenLogprob] = []
        calls = chat_translation.ToolCallCollector()
        tool_calls: list[dict[str, Any]] = []
        finish_reason, timings = "stop", None
        async for delta in self._generate(prepared):
            last = time.monotonic_ns()
            first = first or last
            texts.append(delta.text)
            thoughts.append(delta.thinking)
            output_ids.extend(delta.token_ids)
            logprobs.extend(delta.logprobs)
            tool_calls += calls.add(delta.tool_calls) if delta.tool_calls else []
            if delta.finish_reason is not None:
                finish_reason, timings = delta.finish_reason, delta.timings
        tool_calls += calls.finish()
        values = metrics(
            clock, prompt_tokens=prepared.prompt_count, eval_tokens=len(output_ids),
            timings=timings, first_token_ns=first, last_token_ns=last,
        )
        self._record(values, timings)
        context = self._context(kind, request, prepared, output_ids)
        return final_object(
            kind, echo_name, "".join(texts), finish_reason, values, context, logprobs,
            thinking="".join(thoughts), tool_calls=tool_calls or None,
        )

    @staticmethod
    def _context(kind: Kind, request: OllamaRequest, prepared: Prepared, output_ids: list[int]) -> list[int] | None:
        # Ollama returns the conversation's token ids on generate (not in raw mode), for the
        # client to send back as `context` with its next prompt.
        if kind != "generate" or getattr(request, "raw", False):
            return None
        return prepared.prompt_token_ids[: prepared.prompt_count] + output_ids


def engine_request_id(kind: Kind, http_request_id: str = "") -> str:
    """The engine's id for a request: the HTTP request's id in it, so the engine's log lines
    can be found by it, and a random part, as vLLM needs its running requests' ids unique and a
    client may send the same `X-Request-Id` twice (or a failed-over stream comes back)."""
    unique = uuid.uuid4().hex
    return f"{kind}-{http_request_id}-{unique[:8]}" if http_request_id else f"{kind}-{unique}"


def _needs_chat_layer(request: OllamaRequest, think: bool | str | None) -> bool:
    """Tools, a thought or images: what vLLM's chat layer handles and our plain path does not."""
    if think not in (None, False):
        return True
    if isinstance(request, ChatRequest):
        tools = bool(request.tools) and _tool_choice(request) != "none"
        return tools or any(m.images for m in request.messages or ())
    return bool(request.images)


def _tool_choice(request: ChatRequest) -> Any:
    """vllama's `tool_choice` extension: top-level (as OpenAI's) or in `options`."""
    if request.tool_choice is not None:
        return request.tool_choice
    return request.options.tool_choice if request.options is not None else None


def _too_long(prompt_tokens: int | None, num_ctx: int) -> str:
    if prompt_tokens is None:  # Ollama's own words, with what is known
        return f"the input length exceeds the context length (context {num_ctx})"
    return f"the input length exceeds the context length ({prompt_tokens} prompt tokens, context {num_ctx})"
