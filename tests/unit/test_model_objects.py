"""Model descriptions (from safetensors headers) -> /api/tags, /api/ps, /api/show and /v1/models."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from vllama.models.describe import FOREVER, ModelDescription, describe, format_parameter_count
from vllama.models.resolve import ResolvedModel
from vllama.ollama_api.schema import ListModelResponse, ProcessModelResponse, ShowResponse
from vllama.translate.models import modelfile, openai_model, parameters_text, ps_entry, show_response, tags_entry

MTIME = 1_700_000_000
HF_CONFIG = {
    "model_type": "qwen2",
    "max_position_embeddings": 32768,
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "intermediate_size": 4864,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-6,
    "vocab_size": 151936,
    "rope_theta": 1000000.0,
}


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], int]]) -> int:
    """A hand-written safetensors file: 8-byte little-endian header length, JSON header, data."""
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {}
    raw = json.dumps(header).encode()
    data = struct.pack("<Q", len(raw)) + raw + b"\0" * offset
    path.write_bytes(data)
    return len(data)


def make_model_dir(root: Path, hf_config: dict[str, Any] = HF_CONFIG) -> tuple[Path, int]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(hf_config))
    os.utime(root / "config.json", (MTIME, MTIME))
    size = write_safetensors(root / "model.safetensors", {"a": ("F32", [2, 3], 24)})
    return root, size


def resolved(source: str, **kw: Any) -> ResolvedModel:
    base: dict[str, Any] = {
        "name": "tiny:latest",
        "key": "registry.ollama.ai/library/tiny:latest",
        "source": source,
        "engine_kwargs": {},
    }
    return ResolvedModel(**{**base, **kw})


def describe_dir(local_dir: Path | None, hf_config: dict[str, Any] = HF_CONFIG, **kw: Any) -> ModelDescription:
    model = resolved(str(local_dir) if local_dir else "org/tiny", **kw)
    return describe(
        model, local_dir=local_dir, hf_config=hf_config, max_model_len=2048, chat_template="{{ messages }}", on_gpu=True
    )


@pytest.fixture
def model_dir(tmp_path: Path) -> tuple[Path, int]:
    return make_model_dir(tmp_path / "tiny")


# --- describe -------------------------------------------------------------------------------------


def test_describe_reads_safetensors_header(model_dir: tuple[Path, int]) -> None:
    path, size = model_dir
    desc = describe_dir(path)
    assert desc.size == size
    assert desc.model_info["general.parameter_count"] == 6
    assert desc.parameter_size == format_parameter_count(6)
    assert desc.quantization_level == "F32"
    assert desc.format == "safetensors"
    assert desc.family == "qwen2" and desc.families == ["qwen2"]
    assert desc.context_length == 2048
    assert desc.template == "{{ messages }}"
    assert desc.capabilities == ["completion"]
    assert len(desc.digest) == 64 and int(desc.digest, 16) >= 0
    assert datetime.datetime.fromisoformat(desc.modified_at).timestamp() == MTIME


def test_describe_model_info(model_dir: tuple[Path, int]) -> None:
    info = describe_dir(model_dir[0]).model_info
    assert info == {
        "general.architecture": "qwen2",
        "general.parameter_count": 6,
        "qwen2.context_length": 32768,
        "qwen2.embedding_length": 896,
        "qwen2.block_count": 24,
        "qwen2.feed_forward_length": 4864,
        "qwen2.attention.head_count": 14,
        "qwen2.attention.head_count_kv": 2,
        "qwen2.attention.layer_norm_rms_epsilon": 1e-6,
        "qwen2.vocab_size": 151936,
        "qwen2.rope.freq_base": 1000000.0,
    }


def test_describe_rope_parameters_and_family_from_model(model_dir: tuple[Path, int]) -> None:
    config = {"model_type": "llama", "rope_parameters": {"rope_theta": 500000.0}}
    desc = describe_dir(model_dir[0], config, family="llama3", parameter_size="8.0B")
    assert desc.family == "llama3"
    assert desc.model_info["general.architecture"] == "llama"
    assert desc.model_info["llama.rope.freq_base"] == 500000.0
    assert desc.parameter_size == format_parameter_count(6)  # measured beats the catalog's


def test_describe_several_files_and_dtypes(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    s1 = write_safetensors(tmp_path / "model-00001-of-00002.safetensors", {"w": ("BF16", [10, 10], 200)})
    s2 = write_safetensors(
        tmp_path / "model-00002-of-00002.safetensors", {"x": ("F32", [3], 12), "y": ("BF16", [4, 5], 40)}
    )
    desc = describe_dir(tmp_path, {})
    assert desc.size == s1 + s2
    assert desc.model_info["general.parameter_count"] == 123
    assert desc.quantization_level == "BF16"  # the dtype holding most parameters
    assert desc.model_info["general.architecture"] == "unknown"


def test_describe_quantization_config_wins(model_dir: tuple[Path, int]) -> None:
    desc = describe_dir(model_dir[0], {**HF_CONFIG, "quantization_config": {"quant_method": "awq"}})
    assert desc.quantization_level == "AWQ"


def test_describe_without_local_dir() -> None:
    desc = describe_dir(None, {"model_type": "qwen2"}, parameter_size="1.5B", family="qwen2")
    assert desc.size == 0
    assert desc.parameter_size == "1.5B"
    assert desc.quantization_level == ""
    assert "general.parameter_count" not in desc.model_info
    assert desc.source == "org/tiny"


def test_describe_digest_changes_with_content(tmp_path: Path) -> None:
    a, _ = make_model_dir(tmp_path / "a")
    b, _ = make_model_dir(tmp_path / "b", {**HF_CONFIG, "vocab_size": 1})
    assert describe_dir(a).digest != describe_dir(b).digest
    assert describe_dir(a).digest == describe_dir(a).digest


# --- format_parameter_count -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (494_030_000, "494.03M"),
        (1_543_714_304, "1.5B"),
        (7_615_616_512, "7.6B"),
        (8_030_261_248, "8.0B"),
        (135_000_000, "135M"),  # Ollama's format.HumanNumber drops decimals of whole numbers
        (7_000_000_000, "7B"),
        (361_821_120, "361.82M"),
        (72_000, "72K"),
        (6, "6"),
        (999, "999"),
    ],
)
def test_format_parameter_count(count: int, text: str) -> None:
    assert format_parameter_count(count) == text


# --- Ollama objects -------------------------------------------------------------------------------


@pytest.fixture
def desc(model_dir: tuple[Path, int]) -> ModelDescription:
    return dataclasses.replace(
        describe_dir(model_dir[0], system="You are terse."),
        parameters={"temperature": 0.7, "stop": ["<|im_end|>", "<|endoftext|>"], "num_ctx": 4096},
    )


def test_tags_entry(desc: ModelDescription) -> None:
    entry = tags_entry(desc)
    assert set(entry) == {"name", "model", "modified_at", "size", "digest", "details"}
    assert entry["name"] == entry["model"] == "tiny:latest"
    assert entry["size"] == desc.size and entry["digest"] == desc.digest
    assert entry["details"] == {
        "parent_model": "",
        "format": "safetensors",
        "family": "qwen2",
        "families": ["qwen2"],
        "parameter_size": desc.parameter_size,
        "quantization_level": "F32",
    }
    ListModelResponse.model_validate_json(json.dumps(entry))


@pytest.mark.parametrize(("on_gpu", "vram"), [(True, True), (False, False)])
def test_ps_entry(desc: ModelDescription, on_gpu: bool, vram: bool) -> None:
    entry = ps_entry(dataclasses.replace(desc, on_gpu=on_gpu), replicas=3)
    assert set(entry) == {"name", "model", "size", "digest", "details", "expires_at", "size_vram", "context_length", "replicas"}
    assert entry["replicas"] == 3
    assert entry["expires_at"] == FOREVER
    assert entry["size_vram"] == (desc.size if vram else 0)
    assert entry["context_length"] == 2048
    ProcessModelResponse.model_validate_json(json.dumps(entry))


def test_show_response(desc: ModelDescription) -> None:
    show = show_response(desc, verbose=False)
    assert {"modelfile", "parameters", "template", "details", "model_info", "capabilities", "modified_at"} <= set(show)
    assert show["system"] == "You are terse."
    assert "license" not in show
    assert show["capabilities"] == ["completion"]
    assert show["model_info"]["general.parameter_count"] == 6
    assert show["template"] == "{{ messages }}"
    assert show["parameters"].splitlines() == [
        f"{'temperature':<30} 0.7",
        f"{'stop':<30} \"<|im_end|>\"",
        f"{'stop':<30} \"<|endoftext|>\"",
        f"{'num_ctx':<30} 4096",
    ]
    ShowResponse.model_validate_json(json.dumps(show))


def test_show_always_has_model_info_and_capabilities(desc: ModelDescription) -> None:
    bare = dataclasses.replace(desc, model_info={}, capabilities=[], system=None, parameters={}, template="")
    show = show_response(bare, verbose=False)
    assert show["model_info"] == {}
    assert show["capabilities"] == []
    assert show["parameters"] == ""
    assert "system" not in show


@pytest.mark.parametrize(("verbose", "tokens"), [(False, []), (True, ["a", "b", "c", "d", "e", "f"])])
def test_show_long_lists_only_when_verbose(desc: ModelDescription, verbose: bool, tokens: list[str]) -> None:
    info = {**desc.model_info, "tokenizer.ggml.tokens": list("abcdef"), "short": [1, 2]}
    show = show_response(dataclasses.replace(desc, model_info=info), verbose=verbose)
    assert show["model_info"]["tokenizer.ggml.tokens"] == tokens
    assert show["model_info"]["short"] == [1, 2]


@pytest.mark.parametrize(
    ("parameters", "lines"),
    [
        ({}, []),
        ({"temperature": 0.5}, ["temperature                    0.5"]),
        ({"num_ctx": 8192}, ["num_ctx                        8192"]),
        ({"stop": "END"}, ['stop                           "END"']),
        ({"stop": ["a", "b"]}, ['stop                           "a"', 'stop                           "b"']),
        ({"penalize_newline": True}, ["penalize_newline               true"]),
        ({"k": 'q"uote'}, ['k                              "q\\"uote"']),
    ],
)
def test_parameters_text(parameters: dict[str, Any], lines: list[str]) -> None:
    assert parameters_text(parameters).splitlines() == lines


def test_modelfile(desc: ModelDescription) -> None:
    text = modelfile(desc)
    lines = text.splitlines()
    assert lines[0].startswith("# Modelfile generated by")
    assert f"FROM {desc.source}" in lines
    assert 'TEMPLATE """{{ messages }}"""' in lines
    assert 'SYSTEM """You are terse."""' in lines
    assert "PARAMETER temperature 0.7" in lines
    assert 'PARAMETER stop "<|im_end|>"' in lines and 'PARAMETER stop "<|endoftext|>"' in lines
    assert "PARAMETER num_ctx 4096" in lines
    assert text.endswith("\n")


def test_openai_model(desc: ModelDescription) -> None:
    assert openai_model(desc) == {"id": "tiny:latest", "object": "model", "created": MTIME, "owned_by": "vllama"}
