"""The vLLM adapter: the only module of vllama that imports vllm.

One `VllmEngine` owns one `AsyncLLM` (and so its engine-core process and workers). It renders
prompts with vLLM's own renderer (the same code path as vLLM's /v1/chat/completions), turns our
`SamplingSettings` into `SamplingParams`, and yields `EngineDelta`s. It also builds vLLM's OpenAI
serving objects over the same engine, so `/v1` is vLLM's own implementation, not a re-translation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from vllama.engine.pacing import paced
from vllama.engine.params import SamplingSettings, StructuredOutput
from vllama.engine.startup import OutputTap, explain, root_cause
from vllama.engine.types import EngineDelta, Timings, TokenLogprob
from vllama.engine.vllm_errors import from_vllm
from vllama.engine.vllm_openai import OpenAIServing
from vllama.errors import ConfigError, EngineFailed, InvalidRequest

logger = logging.getLogger(__name__)

#: vLLM's metrics that `VllmEngine.cache_stats` reads.
_CACHE_METRICS = ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits", "vllm:kv_cache_usage_perc")

# Keys that vllama sets itself from the model's name and source.
RESERVED_ENGINE_KWARGS = frozenset({"model", "served_model_name"})


def engine_arg_names() -> frozenset[str]:
    """Every keyword `AsyncEngineArgs` takes (to reject a config's typo before anything starts)."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    return frozenset(f.name for f in dataclasses.fields(AsyncEngineArgs))


def check_engine_kwargs(engine_kwargs: Mapping[str, Any]) -> None:
    reserved = RESERVED_ENGINE_KWARGS & engine_kwargs.keys()
    if reserved:
        raise ConfigError(f"engine_kwargs may not set {sorted(reserved)}: vllama sets them from the model's name and source")
    unknown = sorted(set(engine_kwargs) - engine_arg_names())
    if unknown:
        raise ConfigError(f"unknown vLLM engine argument(s): {', '.join(unknown)} (see vLLM's AsyncEngineArgs)")


class CountingEngineClient:
    """`AsyncLLM`, counting how its requests end: finished by the engine, or aborted because
    their consumer went away first (vLLM aborts a request when its generator is closed early,
    but its metrics do not count aborts). Our Ollama path and vLLM's own /v1 handlers both use
    this client, so every request is counted, and every stream is paced (`engine/pacing.py`)."""

    def __init__(self, engine: Any, stream_interval_s: float = 0.0) -> None:
        self._engine = engine
        self.stream_interval_s = stream_interval_s
        self.completed_requests = 0
        self.aborted_requests = 0
        #: When the engine last gave an output to any request, and last took a new one
        #: (monotonic seconds): an engine with work that gives nothing for long has stalled.
        self.last_output_s = time.monotonic()
        self.last_submit_s = self.last_output_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def generate(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        self.last_submit_s = time.monotonic()
        stream = self._engine.generate(*args, **kwargs)
        params = args[1] if len(args) > 1 else kwargs.get("sampling_params")
        outputs = stream
        if self.stream_interval_s > 0 and _streams_deltas(params):
            outputs = paced(stream, self.stream_interval_s, merge=_merge_outputs,
                            finished=lambda output: output.finished, visible=_has_text)
        ended = False
        try:
            async for output in outputs:
                self.last_output_s = time.monotonic()
                if output.finished:
                    ended = True
                    if output.outputs and output.outputs[0].finish_reason == "abort":
                        self.aborted_requests += 1
                    else:
                        self.completed_requests += 1
                yield output
        except Exception:
            ended = True
            # Refused or failed. vLLM may have registered the request before the failure (a
            # seed too large for the engine core's encoder failed after it): abort it, which
            # is a no-op for a request vLLM does not hold, or it stays unfinished for good.
            request_id = args[2] if len(args) > 2 else kwargs.get("request_id")
            if request_id is not None:
                with contextlib.suppress(Exception):  # a dead engine cannot abort: its error is the one to raise
                    await self._engine.abort(request_id)
            raise
        finally:
            if not ended:
                self.aborted_requests += 1
            # vLLM aborts on GeneratorExit/CancelledError of its own generator; closing it
            # here makes that happen now, not whenever the garbage collector gets to it.
            if outputs is not stream:
                await outputs.aclose()  # type: ignore[attr-defined]
            await stream.aclose()


def _streams_deltas(params: Any) -> bool:
    """Whether the request streams (`RequestOutputKind.DELTA`): only then are there outputs to
    pace; a whole answer (`FINAL_ONLY`) comes as one output anyway."""
    return getattr(getattr(params, "output_kind", None), "name", None) == "DELTA"


def _merge_outputs(held: Any, newer: Any) -> Any:
    # What vLLM's own per-request collector does when its consumer falls behind.
    held.add(newer, aggregate=True)
    return held


def _has_text(output: Any) -> bool:
    return any(completion.text for completion in output.outputs)


#: `ChatOptions.tool_parser` value meaning: decide from the model's chat template.
DETECT_TOOL_PARSER = "auto"

#: How a chat template writes a tool call -> vLLM's parser for that format.
_TOOL_CALL_MARKERS = (("<tool_call>", "hermes"), ("<|python_tag|>", "llama3_json"), ("[TOOL_CALLS]", "mistral"))


def tool_parser_for_template(template: str) -> str | None:
    """The tool-call parser for a model served from a directory, by how its template writes calls."""
    if "tools" not in template:
        return None
    return next((parser for marker, parser in _TOOL_CALL_MARKERS if marker in template), None)


@dataclasses.dataclass(frozen=True)
class ChatOptions:
    """How the serving layer reads this model's chats (not engine arguments)."""

    #: vLLM's tool-call parser for the model's family (`--tool-call-parser`), or None.
    tool_parser: str | None = None
    #: Whether a request that does not say `think` thinks, for a model with a reasoning parser.
    think_default: bool = True


class VllmEngine:
    """A started vLLM engine for one model. Build it with `await VllmEngine.start(...)`."""

    def __init__(self, engine: Any, name: str, openai: OpenAIServing, vllm_config: Any, chat: ChatOptions) -> None:
        self._engine = engine
        self.name = name
        self.openai = openai
        self.chat_options = chat
        #: vLLM's reasoning parser (an engine argument: the engine needs it too, to start
        #: structured outputs after the thought and to end a thought at its token budget).
        self.reasoning_parser: str = vllm_config.structured_outputs_config.reasoning_parser or ""
        model_config = engine.model_config
        scheduler, cache, parallel = vllm_config.scheduler_config, vllm_config.cache_config, vllm_config.parallel_config
        #: What the engine runs with, after vLLM filled in what was left unset.
        self.settings: dict[str, Any] = {
            "max_model_len": model_config.max_model_len,
            "max_num_seqs": scheduler.max_num_seqs,
            "max_num_batched_tokens": scheduler.max_num_batched_tokens,
            "enable_prefix_caching": bool(cache.enable_prefix_caching),
            "gpu_memory_utilization": cache.gpu_memory_utilization,
            "tensor_parallel_size": parallel.tensor_parallel_size,
            "pipeline_parallel_size": parallel.pipeline_parallel_size,
            "dtype": str(model_config.dtype).removeprefix("torch."),
        }
        self.max_model_len: int = model_config.max_model_len
        self.generation_config: dict[str, Any] = model_config.get_diff_sampling_param()
        self.hf_config: dict[str, Any] = model_config.hf_config.to_dict()
        #: A pooling engine (`runner: pooling`): it embeds and cannot generate.
        self.is_embedding: bool = model_config.runner_type == "pooling"
        self._tokenizer = engine.get_tokenizer()
        template = getattr(self._tokenizer, "chat_template", None)
        self.chat_template: str | None = template if isinstance(template, str) else None
        #: A vision (or other multimodal) model: messages may carry images.
        self.is_multimodal: bool = bool(model_config.is_multimodal_model)
        #: Fill-in-the-middle tokens (prefix, suffix, middle), when the tokenizer has them.
        self.fim_tokens: tuple[str, str, str] | None = _fim_tokens(self._tokenizer)

    @property
    def thinks(self) -> bool:
        return bool(self.reasoning_parser)

    @property
    def tools(self) -> bool:
        return self.chat_options.tool_parser is not None

    @classmethod
    async def start(
        cls,
        name: str,
        source: str,
        engine_kwargs: Mapping[str, Any],
        chat: ChatOptions | None = None,
        *,
        stream_interval_s: float = 0.0,
        stat_loggers: Sequence[Any] = (),
    ) -> VllmEngine:
        """Start the engine; a bad setting raises `ConfigError` saying what to change.
        `stream_interval_s`: how often a stream goes out after its first token (`paced`).
        `stat_loggers`: vLLM stat logger factories besides its default (Prometheus) one."""
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.usage.usage_lib import UsageContext
        from vllm.v1.engine.async_llm import AsyncLLM

        check_engine_kwargs(engine_kwargs)
        tap = OutputTap.install()
        kwargs = {"disable_log_stats": False, **engine_kwargs, "model": source, "served_model_name": name}
        started = time.monotonic()
        try:
            kwargs["structured_outputs_config"] = _structured_outputs_config(engine_kwargs.get("structured_outputs_config"))
            args = AsyncEngineArgs(**kwargs)
            # The OpenAI server's usage context gives the same defaults as `vllm serve`
            # (max_num_seqs, max_num_batched_tokens), which the seed's "set automatically" relies on.
            vllm_config = args.create_engine_config(usage_context=UsageContext.OPENAI_API_SERVER)
        except Exception as exc:  # pydantic ValidationError, ValueError, OSError for a bad path...
            raise ConfigError(f"invalid engine settings for model '{name}': {_first_line(exc)}") from exc
        if vllm_config.parallel_config.distributed_executor_backend == "ray":
            # Serve reserved a placement group for this replica (serve/app.py): vLLM's Ray
            # workers go into its GPU bundles, as Ray Serve LLM does it.
            import ray.util

            vllm_config.parallel_config.placement_group = ray.util.get_current_placement_group()
        try:
            engine = CountingEngineClient(AsyncLLM.from_vllm_config(
                vllm_config,
                usage_context=UsageContext.OPENAI_API_SERVER,
                disable_log_stats=kwargs["disable_log_stats"],
                stat_loggers=list(stat_loggers) or None,
            ), stream_interval_s)
        except Exception as exc:
            cause = root_cause(tap.recent_lines()) or _first_line(exc)
            raise ConfigError(f"engine for model '{name}' failed to start: {explain(cause, engine_kwargs)}") from exc
        chat = chat or ChatOptions()
        if chat.tool_parser == DETECT_TOOL_PARSER:
            template = getattr(engine.get_tokenizer(), "chat_template", None)
            chat = dataclasses.replace(chat, tool_parser=tool_parser_for_template(template if isinstance(template, str) else ""))
        reasoning = vllm_config.structured_outputs_config.reasoning_parser or ""
        try:
            openai = OpenAIServing.build(engine, name, source, chat, reasoning)
        except Exception as exc:  # an unknown parser name, a parser the tokenizer lacks tokens for
            engine.shutdown()
            raise ConfigError(f"chat settings for model '{name}': {_first_line(exc)}") from exc
        started_engine = cls(engine, name, openai, vllm_config, chat)
        logger.info("engine for %s ready in %.1f s: %s", name, time.monotonic() - started, started_engine.settings)
        return started_engine

    # --- prompts -------------------------------------------------------------------------

    async def render_chat(self, messages: Sequence[Mapping[str, Any]], *, think: bool | None = None) -> list[int]:
        """Prompt token ids for messages, through the model's chat template (as vLLM's /v1 does).

        `think`: the template's `enable_thinking`, for a model that thinks (None: not passed)."""
        from vllm.exceptions import VLLMError
        from vllm.renderers import ChatParams

        template_kwargs: dict[str, Any] = {"add_generation_prompt": True}
        if think is not None:
            template_kwargs["enable_thinking"] = think
        try:
            _, (rendered,) = await self._engine.renderer.render_chat_async(
                [list(messages)], ChatParams(chat_template_kwargs=template_kwargs)
            )
        except VLLMError as exc:
            raise from_vllm(exc, self.name) from exc
        except Exception as exc:  # a template that raises on these messages (jinja's TemplateError...)
            raise InvalidRequest(f"the chat template failed on these messages: {exc}") from exc
        return list(rendered["prompt_token_ids"])

    def encode(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def fill_in_middle(self, prefix: str, suffix: str) -> list[int]:
        """A fill-in-the-middle prompt: the model's prefix, suffix and middle tokens around the
        two texts (by id, so the format holds whatever spaces the vocabulary's strings carry)."""
        if self.fim_tokens is None:
            raise InvalidRequest(f'"{self.name}" does not support insert')
        start, hole, end = (self._tokenizer.convert_tokens_to_ids(t) for t in self.fim_tokens)
        return [start, *self.encode(prefix), hole, *self.encode(suffix), end]

    def encode_for_embedding(self, text: str, *, truncate: bool) -> list[int]:
        """Token ids of one input framed as the model expects (BERT's [CLS] ... [SEP]), cut to
        the context when `truncate` (Ollama's default) and refused otherwise when too long."""
        ids = list(self._tokenizer.encode(text, add_special_tokens=True))
        if len(ids) > self.max_model_len:
            if not truncate:
                raise InvalidRequest("the input length exceeds the context length")
            ids = list(self._tokenizer.encode(text, add_special_tokens=True, truncation=True, max_length=self.max_model_len))
        return ids

    async def embed(self, prompt_token_ids: list[int], request_id: str) -> list[float]:
        """The pooled vector of one input, not normalised (callers normalise where Ollama does)."""
        from vllm.exceptions import VLLMError
        from vllm.inputs import TokensPrompt
        from vllm.pooling_params import PoolingParams

        # use_activation=False: the embed pooler's activation is the L2 normalisation.
        params = PoolingParams(task="embed", use_activation=False)
        final = None
        try:
            async for output in self._engine.encode(TokensPrompt(prompt_token_ids=prompt_token_ids), params, request_id):
                final = output
        except VLLMError as exc:
            raise from_vllm(exc, self.name) from exc
        if final is None:
            raise EngineFailed("the engine returned no embedding")
        return [float(v) for v in final.outputs.data.tolist()]

    # --- generation ----------------------------------------------------------------------

    async def generate(
        self, prompt_token_ids: list[int], sampling: SamplingSettings, request_id: str
    ) -> AsyncIterator[EngineDelta]:
        """Stream the new text of each engine step. Closing this generator aborts the request."""
        from vllm.exceptions import VLLMError
        from vllm.inputs import TokensPrompt

        params = self._sampling_params(sampling)
        # A thinking model's engine holds an output constraint back until the thought ends; this
        # path never thinks (thinking requests take `generate_chat`), so it ends at once.
        extra = {"reasoning_ended": True} if self.thinks else {}
        stream = self._engine.generate(TokensPrompt(prompt_token_ids=prompt_token_ids), params, request_id, **extra)
        try:
            async for output in stream:
                completion = output.outputs[0]
                logprobs = _token_logprobs(completion, sampling.logprobs) if sampling.logprobs is not None else ()
                if not output.finished:
                    yield EngineDelta(completion.text, tuple(completion.token_ids), logprobs=logprobs)
                    continue
                if completion.finish_reason not in ("stop", "length"):
                    raise EngineFailed(f"generation ended with '{completion.finish_reason}'")
                yield EngineDelta(
                    completion.text,
                    tuple(completion.token_ids),
                    finish_reason=completion.finish_reason,
                    prompt_token_ids=tuple(output.prompt_token_ids or prompt_token_ids),
                    timings=_timings(output.metrics),
                    logprobs=logprobs,
                )
        except VLLMError as exc:
            raise from_vllm(exc, self.name) from exc
        finally:
            await stream.aclose()  # closing early aborts the request (CountingEngineClient)

    def _sampling_params(self, s: SamplingSettings) -> Any:
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        return SamplingParams(
            temperature=s.temperature,
            top_p=s.top_p,
            top_k=s.top_k,
            min_p=s.min_p,
            repetition_penalty=s.repetition_penalty,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            seed=s.seed,
            stop=list(s.stop) or None,
            max_tokens=s.max_tokens,
            min_tokens=s.min_tokens,
            ignore_eos=s.ignore_eos,
            logprobs=s.logprobs,
            structured_outputs=_structured_outputs(s.structured),
            output_kind=RequestOutputKind.DELTA,
        )

    # --- chats through vLLM's chat layer (tools, thinking, images) ------------------------

    async def render_openai_chat(self, body: dict[str, Any]) -> Any:
        """Render an OpenAI chat body with vLLM's chat layer (`vllama.engine.vllm_chat`)."""
        from vllama.engine import vllm_chat

        if self.openai.chat is None:
            raise InvalidRequest("this model does not support chat")
        return await vllm_chat.render(self.openai.chat, body)

    def generate_chat(self, chat: Any, max_tokens: int, request_id: str) -> AsyncIterator[EngineDelta]:
        """Generate a rendered chat; deltas carry thoughts and tool calls apart from the text."""
        from vllama.engine import vllm_chat

        return vllm_chat.generate(self.openai.chat, self._engine, chat, max_tokens, request_id, logprobs=_token_logprobs)

    async def abort(self, request_id: str) -> None:
        await self._engine.abort(request_id)

    def num_unfinished_requests(self) -> int:
        return int(self._engine.get_num_unfinished_requests())

    @property
    def completed_requests(self) -> int:
        return self._engine.completed_requests

    @property
    def aborted_requests(self) -> int:
        return self._engine.aborted_requests

    async def check_health(self) -> None:
        await self._engine.check_health()

    def cache_stats(self) -> dict[str, Any]:
        """The prefix cache's use since the engine started (prompt tokens looked up, and found
        cached) and the KV cache's current use, from vLLM's own metrics in this process."""
        import prometheus_client

        totals = dict.fromkeys(_CACHE_METRICS, 0.0)
        for family in prometheus_client.REGISTRY.collect():
            if family.name in totals:
                for sample in family.samples:
                    if sample.labels.get("model_name") == self.name and not sample.name.endswith("_created"):
                        totals[family.name] += sample.value
        queries, hits = totals["vllm:prefix_cache_queries"], totals["vllm:prefix_cache_hits"]
        return {
            "prefix_cache_queries": int(queries),
            "prefix_cache_hits": int(hits),
            "prefix_cache_hit_rate": round(hits / queries, 4) if queries else None,
            "kv_cache_usage": round(totals["vllm:kv_cache_usage_perc"], 4),
        }

    @property
    def dead(self) -> bool:
        """The engine stopped for good (its process died): only a new replica can serve again."""
        return bool(self._engine.errored)

    def stalled_for(self) -> float:
        """Seconds the engine has held requests without giving any of them an output (0: it is
        idle or making progress). A hung engine is alive to vLLM's own health check."""
        if self.num_unfinished_requests() == 0:
            return 0.0
        return time.monotonic() - max(self._engine.last_output_s, self._engine.last_submit_s)

    def death_cause(self) -> str:
        """Why the engine stopped, as far as its processes tell (exit codes, the last error line)."""
        try:
            finished = self._engine.engine_core.resources.engine_manager.finished_procs()
        except AttributeError:  # another executor, or vLLM moved it: say what is known
            finished = {}
        exits = [f"{name} exited with {_exit_text(code)}" for name, code in finished.items() if code != 0]
        if exits:
            return "; ".join(exits)
        return root_cause(OutputTap.install().recent_lines()) or "the engine process stopped"

    def shutdown(self) -> None:
        self._engine.shutdown()


def _exit_text(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


def _timings(metrics: Any) -> Timings | None:
    """Engine-core timestamps (monotonic, seconds) -> durations; None when stats are disabled."""
    if metrics is None or not getattr(metrics, "first_token_ts", 0):
        return None
    scheduled = metrics.scheduled_ts or metrics.first_token_ts
    queued = metrics.queued_ts or scheduled
    return Timings(
        queue_ns=max(int((scheduled - queued) * 1e9), 0),
        prefill_ns=max(int((metrics.first_token_ts - scheduled) * 1e9), 0),
        decode_ns=max(int((metrics.last_token_ts - metrics.first_token_ts) * 1e9), 0),
    )


def _token_logprobs(completion: Any, top: int) -> tuple[TokenLogprob, ...]:
    """vLLM's per-token {token id: Logprob} maps (this step's tokens only: DELTA output) ->
    the chosen token's log probability and the `top` most likely tokens at its position.

    vLLM's map holds the top `top` by rank plus the chosen token when it ranked lower."""
    entries = []
    for token_id, candidates in zip(completion.token_ids, completion.logprobs or (), strict=False):
        chosen = candidates[token_id]
        ranked = sorted((c for c in candidates.values() if c.rank is not None and c.rank <= top), key=lambda c: c.rank)
        entries.append(TokenLogprob(
            chosen.decoded_token or "", chosen.logprob, tuple((c.decoded_token or "", c.logprob) for c in ranked)
        ))
    return tuple(entries)


def _structured_outputs_config(given: Any) -> Any:
    """vLLM's structured-output settings: compact JSON through xgrammar, unless the config names
    a backend of its own.

    With whitespace allowed between every token of the grammar (vLLM's default), a model can
    spend its whole budget on newlines and never close the object: small models do, and so does
    the random test model. Ollama's JSON grammar bounds whitespace for the same reason. vLLM
    allows compact output only with a named backend. xgrammar is vLLM's first choice, and the
    one its tool-call grammars (structural tags, which keep a forced or strict tool call valid)
    are written for; it reads a schema that does not mention `additionalProperties` as allowing
    no other keys, which is what schemas made from pydantic models (Ollama's documented use of
    `format`) mean. A config can name `guidance` (llguidance) for schemas xgrammar cannot compile,
    at the cost of forced tool calls.
    """
    from vllm.config import StructuredOutputsConfig

    if isinstance(given, StructuredOutputsConfig):
        return given
    given = dict(given or {})
    defaults = {} if "backend" in given else {"backend": "xgrammar", "disable_any_whitespace": True}
    return StructuredOutputsConfig(**{**defaults, **given})


def _structured_outputs(structured: StructuredOutput | None) -> Any:
    if structured is None:
        return None
    from vllm.sampling_params import StructuredOutputsParams

    if structured.json_schema is None:
        return StructuredOutputsParams(json_object=True)
    return StructuredOutputsParams(json=structured.json_schema)


def _fim_tokens(tokenizer: Any) -> tuple[str, str, str] | None:
    """The fill-in-the-middle tokens of Qwen2.5-Coder, StarCoder, DeepSeek-Coder and CodeLlama
    style vocabularies, as (prefix, suffix, middle)."""
    vocab = tokenizer.get_vocab()
    for tokens in (
        ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
        ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
        ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
        ("▁<PRE>", "▁<SUF>", "▁<MID>"),
    ):
        if all(t in vocab for t in tokens):
            return tokens
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(line.strip() for line in text.splitlines()[:4])
