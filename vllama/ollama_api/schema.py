"""Ollama's HTTP wire schema, as typed models.

Mirrors `api/types.go` of ollama/ollama (v0.32 line): same names, same JSON keys. Where Go uses a
pointer (three states: unset, false, true), the field here is `X | None = None`.

Two rules from Ollama's own decoder:
- lenient on names: unknown top-level keys and unknown `options` are ignored (options with a
  warning in the log), because clients send keys Ollama dropped long ago (LangChain's `mirostat`,
  `tfs_z`; ollama-python's `numa`, `low_vram`...);
- strict on types: a value of the wrong type is a 400. Pydantic's strict mode gives that, except
  for integer options, which take any JSON number and truncate it, as Ollama does.

Requests are validated with `model_validate_json` straight from the body bytes (one parse, in
pydantic-core). Streaming chunks are not built from these models: the per-token encoder in
`vllama.translate.responses` writes the same keys directly, and the unit tests check its output
against `GenerateResponse` and `ChatResponse` below.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

logger = logging.getLogger(__name__)


class WireModel(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, use_attribute_docstrings=True)


def _truncate_number(value: Any) -> Any:
    # Ollama's Options.FromMap: "integer options accept any JSON number; decimals are truncated".
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    return value


def _stop_list(value: Any) -> Any:
    # Native Ollama wants an array; a lone string is accepted too (LangChain and curl users send it).
    return [value] if isinstance(value, str) else value


#: Ollama's integers are Go's 64-bit ints: a larger number is a decoding error there, a 400
#: here (and the engine's encoder could not carry it).
LenientInt = Annotated[int, BeforeValidator(_truncate_number), Field(ge=-(2**63), le=2**63 - 1)]


class Options(WireModel):
    """`options`: model parameters for one request. Ollama's `Options` plus its `Runner` part."""

    model_config = ConfigDict(extra="allow", strict=True, use_attribute_docstrings=True)

    # --- per-request sampling options (Ollama's Options) ---
    num_keep: LenientInt | None = None
    seed: LenientInt | None = None
    num_predict: LenientInt | None = None
    """Maximum number of tokens to generate; -1 (or unset) means until the context is full."""
    top_k: LenientInt | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repeat_last_n: LenientInt | None = None
    temperature: float | None = None
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: Annotated[list[str] | None, BeforeValidator(_stop_list)] = None
    # --- load-time options (Ollama's Runner); vLLM fixes these when the engine starts ---
    num_ctx: LenientInt | None = None
    """Context length. Checked against the engine's `max_model_len`: a prompt longer than that
    is refused, and num_ctx larger than it is capped (vLLM cannot grow its context per request)."""
    num_batch: LenientInt | None = None
    num_gpu: LenientInt | None = None
    main_gpu: LenientInt | None = None
    use_mmap: bool | None = None
    num_thread: LenientInt | None = None
    # --- vLLM extras, not in Ollama: benchmarks need exact output lengths ---
    ignore_eos: bool | None = None
    """Keep generating after the end-of-sequence token (vLLM's `ignore_eos`)."""
    min_tokens: LenientInt | None = None
    """Generate at least this many tokens before a stop condition applies (vLLM's `min_tokens`)."""
    thinking_token_budget: LenientInt | None = None
    """Most tokens a thinking model may think before the thought is ended (vLLM's extension)."""
    tool_choice: str | dict[str, Any] | None = None
    """OpenAI's `tool_choice`, which Ollama lacks: "auto" (the default), "none", "required", or
    the name of the tool the model must call. Also accepted at the top level of a chat request."""

    @model_validator(mode="after")
    def _warn_unknown(self) -> Options:
        if self.model_extra:
            logger.warning("ignoring unknown options: %s", ", ".join(sorted(self.model_extra)))
        return self


# --- polymorphic top-level fields ---------------------------------------------------------

_GO_DURATION = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float | None:
    """`keep_alive`: a number of seconds, or a Go duration string ("5m", "1h30m", "-1s").

    Returns seconds; negative means forever. A string without a unit is an error, as in Go.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("keep_alive must be a number of seconds or a duration string")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        body = text.lstrip("+-")
        if body == "0":
            return 0.0
        pos, total = 0, 0.0
        for match in _GO_DURATION.finditer(body):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if body and pos == len(body):
            return sign * total
        raise ValueError(f'time: missing unit in duration "{value}"' if body.replace(".", "").isdigit()
                         else f'time: invalid duration "{value}"')
    raise ValueError("keep_alive must be a number of seconds or a duration string")


Duration = Annotated[float | None, BeforeValidator(parse_duration)]

THINK_LEVELS = ("low", "medium", "high", "max")


def _check_think(value: Any) -> Any:
    if value is None or isinstance(value, bool) or value in THINK_LEVELS:
        return value
    if value in ("true", "false"):
        return value == "true"
    raise ValueError(f'invalid think value: "{value}" (must be "true", "false", "high", "medium", "low")')


Think = Annotated[bool | Literal["low", "medium", "high", "max"] | None, BeforeValidator(_check_think)]


# --- requests ------------------------------------------------------------------------------


class ModelRequest(WireModel):
    """Requests that name one model. Old clients (ollama-js pull/delete, Continue's show) send
    `name` instead of `model`; both are accepted."""

    model: str | None = None
    name: str | None = None

    @property
    def model_name(self) -> str | None:
        return self.model or self.name


class ToolCallFunction(WireModel):
    index: int | None = None
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class ToolCall(WireModel):
    id: str | None = None
    type: str | None = None
    function: ToolCallFunction


class Message(WireModel):
    """One chat message. `role` is matched case-insensitively, as Ollama does."""

    role: str
    content: str = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None

    @field_validator("role")
    @classmethod
    def _lower_role(cls, role: str) -> str:
        return role.lower()


class _InferenceRequest(ModelRequest):
    stream: bool | None = None
    """Stream NDJSON chunks (the default) or answer one JSON object (`false`)."""
    format: Any = None
    """`"json"`, a JSON schema object, or empty for free text."""
    keep_alive: Duration = None
    options: Options | None = None
    think: Think = None
    truncate: bool | None = None
    shift: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    @property
    def streaming(self) -> bool:
        return self.stream is not False


class GenerateRequest(_InferenceRequest):
    """`POST /api/generate`."""

    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool | None = None
    images: list[str] | None = None


class Tool(WireModel):
    type: str = "function"
    function: dict[str, Any]


class ChatRequest(_InferenceRequest):
    """`POST /api/chat`."""

    messages: list[Message] | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    """vllama's extension, as OpenAI's (see `Options.tool_choice`)."""


class EmbedRequest(ModelRequest):
    """`POST /api/embed`. `input` is checked by the translation layer, which answers Ollama's
    `invalid input type` for anything but a string or a list of strings."""

    input: Any = None
    truncate: bool | None = None
    dimensions: int | None = None
    keep_alive: Duration = None
    options: Options | None = None


class EmbeddingsRequest(ModelRequest):
    """`POST /api/embeddings`, the legacy form: one prompt, an unnormalised vector."""

    prompt: str | None = None
    keep_alive: Duration = None
    options: Options | None = None


class ShowRequest(ModelRequest):
    """`POST /api/show`."""

    verbose: bool | None = None
    system: str | None = None
    options: dict[str, Any] | None = None


def _license_list(value: Any) -> Any:
    # Ollama's `license` is a string or a list of strings (a Modelfile may have several LICENSE).
    return [value] if isinstance(value, str) else value


class CreateRequest(ModelRequest):
    """`POST /api/create`: a new model from an existing one, with what a Modelfile would say."""

    from_: str | None = Field(default=None, alias="from")
    """The model to build on (a served model or one made by create/copy)."""
    files: dict[str, str] | None = None
    """Weights uploaded with `/api/blobs` (file name -> digest)."""
    adapters: dict[str, str] | None = None
    template: str | None = None
    system: str | None = None
    license: Annotated[list[str] | None, BeforeValidator(_license_list)] = None
    parameters: dict[str, Any] | None = None
    messages: list[Message] | None = None
    quantize: str | None = None
    stream: bool | None = None
    modelfile: str | None = None
    """The Modelfile's text, as clients before Ollama 0.5 sent it (instead of the fields above)."""

    @property
    def streaming(self) -> bool:
        return self.stream is not False


class CopyRequest(WireModel):
    """`POST /api/copy`."""

    source: str
    destination: str


class PullRequest(ModelRequest):
    """`POST /api/pull` (and `/api/push`, which takes the same body)."""

    insecure: bool | None = None
    stream: bool | None = None

    @property
    def streaming(self) -> bool:
        return self.stream is not False


# --- responses -----------------------------------------------------------------------------


class Metrics(WireModel):
    """The six timings of a final chunk, in nanoseconds (Go `omitempty`: absent when zero)."""

    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class TokenLogprob(WireModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    token: str
    logprob: float
    bytes: list[int] | None = None


class Logprob(TokenLogprob):
    """One generated token's entry in `logprobs`, with the most likely alternatives if asked."""

    top_logprobs: list[TokenLogprob] | None = None


class GenerateResponse(Metrics):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str
    created_at: str
    response: str
    thinking: str | None = None
    done: bool
    done_reason: str | None = None
    context: list[int] | None = None
    logprobs: list[Logprob] | None = None


class ResponseMessage(WireModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    role: str
    content: str
    thinking: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatResponse(Metrics):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str
    created_at: str
    message: ResponseMessage
    done: bool
    done_reason: str | None = None
    logprobs: list[Logprob] | None = None


class EmbedResponse(WireModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str
    embeddings: list[list[float]]
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None


class EmbeddingsResponse(WireModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    embedding: list[float]


class ModelDetails(WireModel):
    parent_model: str = ""
    format: str = "safetensors"
    family: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""


class ListModelResponse(WireModel):
    """One entry of `GET /api/tags`."""

    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: ModelDetails


class ProcessModelResponse(WireModel):
    """One entry of `GET /api/ps`."""

    name: str
    model: str
    size: int
    digest: str
    details: ModelDetails
    expires_at: str
    size_vram: int
    context_length: int
    replicas: int = 1
    """vllama's addition: engine replicas serving the model (each holds `size_vram`)."""


class ShowResponse(WireModel):
    """`POST /api/show`. `model_info` is always present (ollama-python requires the key) and so
    is `capabilities` (GitHub Copilot crashes without it)."""

    license: str | None = None
    modelfile: str
    parameters: str
    template: str
    system: str | None = None
    details: ModelDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str
    messages: list[dict[str, Any]] | None = None


class ListResponse(WireModel):
    """`GET /api/tags`."""

    models: list[ListModelResponse]


class ProcessResponse(WireModel):
    """`GET /api/ps`."""

    models: list[ProcessModelResponse]


class VersionResponse(WireModel):
    """`GET /api/version`: the Ollama API release whose wire format is followed."""

    version: str


class ProgressResponse(WireModel):
    """One line of `/api/create` and `/api/pull` (the last one alone with `stream: false`)."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


class ErrorResponse(WireModel):
    """Every Ollama route's error body (OpenAI's error object on `/v1`)."""

    error: str
