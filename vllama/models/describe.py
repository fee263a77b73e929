"""What `/api/tags`, `/api/show` and `/api/ps` say about a served model.

Each replica describes its own model once its engine is up (the weights are on its disk then);
the ingress asks other models' replicas for theirs. Sizes and parameter counts come from the
safetensors headers (a few KiB read, no tensor loaded), not from guesses based on the name.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vllama.models.registry import CreatedModel
from vllama.models.resolve import ResolvedModel

_SAFETENSORS_DTYPES = {"F32": "F32", "BF16": "BF16", "F16": "F16", "F8_E4M3": "F8", "I8": "Q8_0", "U8": "Q4"}
#: Go's time for "forever": Ollama shows this expiry for models kept loaded (keep_alive < 0).
FOREVER = "2318-08-19T00:00:00Z"


@dataclass(frozen=True)
class ModelDescription:
    name: str
    source: str
    size: int
    digest: str
    modified_at: str
    family: str
    parameter_size: str
    quantization_level: str
    context_length: int
    model_info: dict[str, Any]
    template: str
    system: str | None
    parameters: dict[str, Any]
    capabilities: list[str]
    on_gpu: bool
    format: str = "safetensors"
    families: list[str] = field(default_factory=list)
    #: Example conversation and license of a created model (a Modelfile's MESSAGE and LICENSE).
    messages: tuple[dict[str, Any], ...] = ()
    license: tuple[str, ...] = ()
    #: The served model this one runs on: itself, or the base of a created model.
    base: str = ""


def describe(
    model: ResolvedModel,
    *,
    local_dir: Path | None,
    hf_config: dict[str, Any],
    max_model_len: int,
    chat_template: str | None,
    on_gpu: bool,
    embedding: bool = False,
    features: Sequence[str] = (),
) -> ModelDescription:
    weights = _weight_files(local_dir)
    size = sum(f.stat().st_size for f in weights)
    count, dtype = _parameter_count(weights)
    arch = str(hf_config.get("model_type") or model.family or "unknown")
    family = model.family or arch
    config_bytes = (local_dir / "config.json").read_bytes() if local_dir and (local_dir / "config.json").is_file() else b""
    digest = hashlib.sha256(
        model.source.encode() + config_bytes + "".join(f"{f.name}:{f.stat().st_size}" for f in weights).encode()
    ).hexdigest()
    mtime = (local_dir / "config.json").stat().st_mtime if config_bytes else datetime.datetime.now().timestamp()
    quant = hf_config.get("quantization_config", {}).get("quant_method") if hf_config.get("quantization_config") else None
    return ModelDescription(
        name=model.name,
        source=model.source,
        size=size,
        digest=digest,
        modified_at=datetime.datetime.fromtimestamp(mtime).astimezone().isoformat(timespec="microseconds"),
        family=family,
        families=[family],
        parameter_size=format_parameter_count(count) if count else model.parameter_size,
        quantization_level=(str(quant).upper() if quant else _SAFETENSORS_DTYPES.get(dtype, dtype)),
        context_length=max_model_len,
        model_info=_model_info(arch, hf_config, count),
        template=chat_template or "",
        system=model.system,
        parameters=dict(model.parameters),
        # Ollama's names: completion, tools, insert (fill in the middle), vision, thinking.
        capabilities=["embedding"] if embedding else ["completion", *features],
        on_gpu=on_gpu,
        base=model.name,
    )


def describe_unloaded(model: ResolvedModel, local_dir: Path | None, *, on_gpu: bool) -> ModelDescription:
    """What /api/tags and /api/show say of a model whose engine is not running, from its files
    alone (as Ollama answers them without loading a model): the context length is the configured
    one or the model's own, and the capabilities beyond completion are known once it has loaded."""
    hf_config: dict[str, Any] = {}
    template = None
    if local_dir is not None:
        hf_config = _read_json(local_dir / "config.json")
        template = _read_json(local_dir / "tokenizer_config.json").get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    context = model.engine_kwargs.get("max_model_len") or hf_config.get("max_position_embeddings") or 0
    return describe(model, local_dir=local_dir, hf_config=hf_config, max_model_len=int(context),
                    chat_template=template if isinstance(template, str) else None, on_gpu=on_gpu)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def created_description(base: ModelDescription, created: CreatedModel) -> ModelDescription:
    """What a created model looks like: its base model, with the created model's own name,
    digest, date and Modelfile parts (its parameters over the base's)."""
    return dataclasses.replace(
        base,
        name=created.name,
        digest=created.digest,
        modified_at=created.modified_at or base.modified_at,
        template=created.template if created.template is not None else base.template,
        system=created.system if created.system is not None else base.system,
        parameters={**base.parameters, **created.parameters},
        messages=created.messages,
        license=created.license,
        base=base.name,
    )


def format_parameter_count(count: int) -> str:
    """As Ollama's `format.HumanNumber` shows it: 7B, 7.6B, 135M, 494.03M, 72K, 999."""
    if count >= 1_000_000_000:
        value = count / 1e9
        return f"{value:.0f}B" if value.is_integer() else f"{value:.1f}B"
    if count >= 1_000_000:
        value = count / 1e6
        return f"{value:.0f}M" if value.is_integer() else f"{value:.2f}M"
    if count >= 1_000:
        return f"{count / 1e3:.0f}K"
    return str(count)


def _weight_files(local_dir: Path | None) -> list[Path]:
    if local_dir is None or not local_dir.is_dir():
        return []
    return sorted(local_dir.glob("*.safetensors")) or sorted(local_dir.glob("*.bin"))


def _parameter_count(weights: list[Path]) -> tuple[int, str]:
    """Sum of tensor sizes from safetensors headers (8-byte length, then JSON)."""
    count: int = 0
    dtypes: dict[str, int] = {}
    for path in weights:
        if path.suffix != ".safetensors":
            return 0, ""
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, tensor in header.items():
            if name == "__metadata__":
                continue
            n = 1
            for dim in tensor["shape"]:
                n *= dim
            count += n
            dtypes[tensor["dtype"]] = dtypes.get(tensor["dtype"], 0) + n
    dtype = max(dtypes, key=dtypes.__getitem__) if dtypes else ""
    return count, dtype


_INFO_KEYS = {
    "max_position_embeddings": "context_length",
    "hidden_size": "embedding_length",
    "num_hidden_layers": "block_count",
    "intermediate_size": "feed_forward_length",
    "num_attention_heads": "attention.head_count",
    "num_key_value_heads": "attention.head_count_kv",
    "rms_norm_eps": "attention.layer_norm_rms_epsilon",
    "vocab_size": "vocab_size",
}


def _model_info(arch: str, hf_config: dict[str, Any], parameter_count: int) -> dict[str, Any]:
    """GGUF-style keys, as Ollama's `model_info` carries them."""
    info: dict[str, Any] = {"general.architecture": arch}
    if parameter_count:
        info["general.parameter_count"] = parameter_count
    for hf_key, gguf_key in _INFO_KEYS.items():
        if (value := hf_config.get(hf_key)) is not None:
            info[f"{arch}.{gguf_key}"] = value
    rope = hf_config.get("rope_theta") or (hf_config.get("rope_parameters") or {}).get("rope_theta")
    if rope is not None:
        info[f"{arch}.rope.freq_base"] = rope
    return info
