"""The built-in catalog: Ollama library names -> Hugging Face sources and engine defaults."""

from __future__ import annotations

import pytest

from vllama.models import catalog
from vllama.models.names import ModelName


def lookup(text: str) -> catalog.CatalogEntry | None:
    return catalog.lookup(ModelName.parse(text))


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("qwen2.5:1.5b", "Qwen/Qwen2.5-1.5B-Instruct"),
        ("QWEN2.5:1.5B", "Qwen/Qwen2.5-1.5B-Instruct"),
        ("qwen2.5:1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct"),
        ("qwen2.5", "Qwen/Qwen2.5-7B-Instruct"),
        ("qwen2.5:latest", "Qwen/Qwen2.5-7B-Instruct"),
        ("library/qwen2.5:0.5b", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("registry.ollama.ai/library/qwen2.5:0.5b", "Qwen/Qwen2.5-0.5B-Instruct"),
        ("llama3.2", "meta-llama/Llama-3.2-3B-Instruct"),
        ("smollm2", "HuggingFaceTB/SmolLM2-1.7B-Instruct"),
        ("smollm2:135m", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    ],
)
def test_lookup_known(name: str, source: str) -> None:
    entry = lookup(name)
    assert entry is not None
    assert entry.source == source


@pytest.mark.parametrize(
    "name",
    [
        "nosuchmodel",
        "qwen2.5:999b",
        "vllama-tiny",
        "someone/qwen2.5:1.5b",
        "example.com/library/qwen2.5:1.5b",
        "host:5000/library/qwen2.5:1.5b",
    ],
)
def test_lookup_unknown(name: str) -> None:
    assert lookup(name) is None


def test_entry_fields() -> None:
    entry = lookup("qwen2.5:1.5b")
    assert entry is not None
    assert entry.family == "qwen2"
    assert entry.parameter_size == "1.5B"
    assert entry.engine_defaults == {"gpu_memory_utilization": 0.5, "max_model_len": 32768}
    big = lookup("qwen2.5:72b")
    assert big is not None and big.engine_defaults["tensor_parallel_size"] == 4
    assert lookup("llama3.1:8b").gated is True  # type: ignore[union-attr]


def test_every_listed_name_resolves() -> None:
    names = catalog.names()
    assert "qwen2.5:1.5b" in names and "qwen2.5:latest" in names
    assert len(names) == len(set(names))
    for name in names:
        assert lookup(name) is not None, name


def test_lookup_does_not_share_engine_defaults() -> None:
    # Each entry's defaults are its own dict: mutating one must not change another.
    a, b = lookup("qwen2.5:0.5b"), lookup("qwen2.5:1.5b")
    assert a is not None and b is not None
    assert a.engine_defaults is not b.engine_defaults
