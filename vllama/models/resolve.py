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
from vllama.models.tiny import TINY_CONTEXT, TinyModelSpec
from vllama.models.tiny_vision import TinyVisionModelSpec

#: Random-weight models made offline (`source: random:<variant>`).
RANDOM_VARIANTS: dict[str, TinyModelSpec | TinyVisionModelSpec] = {
    "tiny": TinyModelSpec(),
    # A vision-language model (Idefics3's architecture), for Ollama's `images`.
    "vision": TinyVisionModelSpec(),
    # Large enough that the engine, not the serving path, dominates a benchmark on a CPU.
    "large": TinyModelSpec(hidden_size=1024, num_layers=8, num_heads=16, num_kv_heads=4, intermediate_size=2816),
}
RANDOM_PREFIX = "random:"

#: The embedded default: served when `vllama serve` gets no `--model`; works offline.
DEFAULT_MODEL = "vllama-tiny:latest"
_RANDOM_CATALOG = {
    "vllama-tiny:latest": "random:tiny",
    "vllama-tiny:large": "random:large",
    "vllama-tiny:vision": "random:vision",
}
#: Engine defaults for random models: float32 (vLLM on CPU runs bf16 through AMX kernels that
#: crash on some VMs), their whole context, and a small KV cache so several engines share one
#: machine.
_RANDOM_ENGINE_DEFAULTS = {"dtype": "float32", "max_model_len": TINY_CONTEXT, "gpu_memory_utilization": 0.1}
#: Their template is Qwen's (tools, and Qwen3's thinking switch), so they take Qwen's parsers.
#: They think only when asked: random weights never end a thought by themselves.
_RANDOM_CHAT = {"tool_parser": "hermes", "reasoning_parser": "qwen3", "think": False}
#: Their Modelfile parameters. Random weights never end an answer by themselves (no weight on
#: the end-of-turn token), so without a bound every answer would run to the end of the context
#: (32,768 tokens: minutes on a CPU). A request's own `num_predict` still wins, as in Ollama.
_RANDOM_PARAMETERS = {"num_predict": 2048}
#: `tool_parser` value meaning "decide from the chat template, once the engine has loaded it".
DETECT = "auto"


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
    tool_parser: str | None = None
    """vLLM's tool-call parser, None for none, `DETECT` to decide from the chat template."""
    think_default: bool = True

    @property
    def parallel_size(self) -> int:
        return int(self.engine_kwargs.get("tensor_parallel_size", 1)) * int(
            self.engine_kwargs.get("pipeline_parallel_size", 1)
        )

    def local_source(self) -> str:
        """The source as vLLM loads it; makes a random model on first use (idempotent)."""
        if self.source.startswith(RANDOM_PREFIX):
            from vllama.models.tiny import make_tiny_model
            from vllama.models.tiny_vision import make_tiny_vision_model

            variant = self.source.removeprefix(RANDOM_PREFIX)
            spec = RANDOM_VARIANTS[variant]
            directory = cache_dir() / f"random-{variant}"
            if isinstance(spec, TinyVisionModelSpec):
                return str(make_tiny_vision_model(directory, spec))
            return str(make_tiny_model(directory, spec))
        if _looks_local(self.source):
            check_model_dir(Path(self.source), self.source)
            return self.source
        from vllama.models.pull import pulled_dir

        if (pulled_dir(home_dir(), self.source) / "config.json").is_file():  # pulled since the start
            return str(pulled_dir(home_dir(), self.source))
        return self.source


def weights_dir(source: str) -> Path | None:
    """The directory holding a model's weights: the source itself, or its Hugging Face cache
    snapshot; None when neither is on this machine (another load format: sizes are then unknown)."""
    if Path(source).is_dir():
        return Path(source)
    if source.startswith(RANDOM_PREFIX):
        made = cache_dir() / f"random-{source.removeprefix(RANDOM_PREFIX)}"
        return made if made.is_dir() else None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception:
        return None


#: On a CPU, the KV cache an engine gets when nothing says (what vLLM's CPU backend used to take
#: by default, VLLM_CPU_KVCACHE_SPACE=4): CPU decoding serves few streams at once, and memory
#: that the cache does not need is left to the other models.
CPU_KV_CACHE_BYTES = 4 << 30
#: The engine worker's own memory beyond its weights (torch, vLLM, activations): in its share.
CPU_ENGINE_OVERHEAD_BYTES = 1 << 30
#: An engine's processes outside its share: its Serve replica (0.9 GiB resident, measured) and
#: vLLM's engine core process (0.8 GiB).
CPU_ENGINE_PROCESSES_BYTES = 1792 << 20
#: vLLM's default share (`gpu_memory_utilization`), the most an engine takes.
VLLM_DEFAULT_SHARE = 0.92


def cpu_memory_share(weights_bytes: int, engines: int, *, available: int, total: int) -> float:
    """On a CPU, `gpu_memory_utilization` is the share of host memory an engine's worker takes
    (weights, KV cache, its own runtime), and vLLM's default (0.92) leaves room for one engine
    and nothing else. The default here: the weights, a 4 GiB KV cache and the worker's runtime,
    and never more than `engines` engines can take together from the memory available now: 90%
    of it (Ray and the ingress need some), less each engine's processes outside its share (the
    Serve replica and vLLM's engine core). Rounded down to a hundredth, as vLLM reads it; at
    least 0.01 (vLLM then says what is missing)."""
    wanted = (weights_bytes + CPU_KV_CACHE_BYTES + CPU_ENGINE_OVERHEAD_BYTES) / total
    fits = (0.9 * available / max(engines, 1) - CPU_ENGINE_PROCESSES_BYTES) / total
    share = min(wanted, fits, VLLM_DEFAULT_SHARE)
    return max(int(share * 100) / 100, 0.01)


#: The smallest KV cache an engine whose share was not set is counted with when it must fit
#: beside others (its share then shrinks to what is free: `cpu_memory_share`).
CPU_MIN_KV_CACHE_BYTES = 1 << 30


def cpu_engine_bytes(model: ResolvedModel, total: int) -> int:
    """The host memory one CPU engine of `model` takes: its share (`gpu_memory_utilization` of
    `total`, what vLLM checks is free as it starts) and its processes outside it; with no share
    set, the least its weights, a KV cache and its runtime take."""
    share = model.engine_kwargs.get("gpu_memory_utilization")
    if share:
        return int(float(share) * total) + CPU_ENGINE_PROCESSES_BYTES
    kv_cache = int(model.engine_kwargs.get("kv_cache_memory_bytes") or CPU_MIN_KV_CACHE_BYTES)
    return weights_bytes(model.source) + kv_cache + CPU_ENGINE_OVERHEAD_BYTES + CPU_ENGINE_PROCESSES_BYTES


def weights_bytes(source: str) -> int:
    """The size of a model's weight files, 0 when they are not on this machine."""
    directory = weights_dir(source)
    if directory is None:
        return 0
    files = list(directory.glob("*.safetensors")) or list(directory.glob("*.bin"))
    return sum(f.stat().st_size for f in files)


def check_model_dir(path: Path, source: str) -> None:
    if not (path / "config.json").is_file():
        raise ConfigError(f"model directory '{source}' has no config.json")


def home_dir() -> Path:
    """Where vllama keeps what it makes and downloads: random models, pulled weights, created
    models, uploaded blobs. `VLLAMA_HOME`, by default `~/.cache/vllama`."""
    return Path(os.environ.get("VLLAMA_HOME", Path.home() / ".cache" / "vllama"))


def cache_dir() -> Path:
    return home_dir() / "models"


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
    if not source.startswith(RANDOM_PREFIX) and not _looks_local(source):
        from vllama.models.pull import pulled_dir

        if (pulled_dir(home_dir(), source) / "config.json").is_file():  # `vllama pull` fetched it
            source = str(pulled_dir(home_dir(), source))
    if _looks_local(source) and not source.startswith(RANDOM_PREFIX):
        path = Path(source).expanduser()
        # A model loaded on demand is checked when it loads: its weights may arrive meanwhile.
        if config.load == "start":
            check_model_dir(path, source)
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
    chat = _chat_defaults(config, entry, source)
    if chat["reasoning_parser"] and "reasoning_parser" not in engine_kwargs:
        engine_kwargs["reasoning_parser"] = chat["reasoning_parser"]
    return ResolvedModel(
        name=parsed.display,
        key=parsed.key,
        source=source,
        engine_kwargs=engine_kwargs,
        parameters={**(_RANDOM_PARAMETERS if source.startswith(RANDOM_PREFIX) else {}), **config.parameters},
        system=config.system,
        family=entry.family if entry else "",
        parameter_size=entry.parameter_size if entry else "",
        tool_parser=chat["tool_parser"],
        think_default=chat["think"],
    )


def _chat_defaults(config: ModelConfig, entry: catalog.CatalogEntry | None, source: str) -> dict[str, Any]:
    """Parsers and the thinking default: the config's, else the catalog's or the random models',
    else found from the chat template (tools) or none (thinking)."""
    random = source.startswith(RANDOM_PREFIX)
    vision = random and isinstance(RANDOM_VARIANTS.get(source.removeprefix(RANDOM_PREFIX)), TinyVisionModelSpec)
    known: dict[str, Any] = (
        {"tool_parser": None, "reasoning_parser": None, "think": False} if vision
        else dict(_RANDOM_CHAT) if random
        else {"tool_parser": entry.tool_parser, "reasoning_parser": entry.reasoning_parser, "think": True}
        if entry is not None and config.source is None
        else {"tool_parser": DETECT, "reasoning_parser": None, "think": True}
    )
    for key in ("tool_parser", "reasoning_parser", "think"):
        if (value := getattr(config, key)) is not None:
            known[key] = None if value == "none" else value
    if known["reasoning_parser"] is None:
        known["reasoning_parser"] = config.engine_kwargs.get("reasoning_parser") or None
    return known


def _looks_local(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or Path(source).expanduser().exists()
