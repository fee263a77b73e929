"""Ollama's embedding inputs and vectors, without an engine."""

from __future__ import annotations

import math
from typing import Any

import pytest

from vllama.errors import InvalidRequest
from vllama.models import catalog
from vllama.models.names import ModelName
from vllama.ollama_api.schema import EmbedResponse
from vllama.translate.embeddings import check_dimensions, embed_inputs, embed_response, normalized


@pytest.mark.parametrize(
    ("value", "texts"),
    [("hi", ["hi"]), (["a", "b"], ["a", "b"]), ([], []), ("", []), (None, []), (["", "x"], ["", "x"])],
)
def test_embed_inputs(value: Any, texts: list[str]) -> None:
    assert embed_inputs(value) == texts


@pytest.mark.parametrize("value", [3, {"text": "x"}, ["a", 1], [["a"]]])
def test_embed_inputs_refuses_other_types(value: Any) -> None:
    with pytest.raises(InvalidRequest, match="^invalid input type$"):
        embed_inputs(value)


def test_normalized_is_unit_length() -> None:
    v = normalized([3.0, 4.0])
    assert v == pytest.approx([0.6, 0.8])


def test_dimensions_cut_then_normalise() -> None:
    v = normalized([3.0, 4.0, 12.0], dimensions=2)
    assert v == pytest.approx([0.6, 0.8]) and math.isclose(math.hypot(*v), 1.0)
    assert normalized([1.0, 0.0], dimensions=5) == [1.0, 0.0]  # more than there are: all of them


def test_zero_vector_stays_zero() -> None:
    assert normalized([0.0, 0.0]) == [0.0, 0.0]


@pytest.mark.parametrize("dimensions", [0, -3])
def test_dimensions_must_be_positive(dimensions: int) -> None:
    with pytest.raises(InvalidRequest, match="dimensions must be greater than 0"):
        check_dimensions(dimensions)


def test_embed_response_shape_and_order() -> None:
    obj = embed_response("all-minilm", [[0.6, 0.8]], 7, {"total_duration": 10, "load_duration": 2})
    assert list(obj) == ["model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"]
    EmbedResponse.model_validate(obj)
    assert embed_response("m", [], 0, {"total_duration": 5, "load_duration": 0}) == {
        "model": "m", "embeddings": [], "total_duration": 5,
    }


@pytest.mark.parametrize("name", ["all-minilm", "all-minilm:latest", "all-minilm:22m", "all-minilm:l6-v2", "ALL-MINILM"])
def test_catalog_embedding_model(name: str) -> None:
    entry = catalog.lookup(ModelName.parse(name))
    assert entry is not None and entry.embedding
    assert entry.source == "sentence-transformers/all-MiniLM-L6-v2"


def test_offline_package_is_used_when_installed(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "fake_weights_pkg"
    (package / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model" / "config.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = catalog.CatalogEntry("org/repo", "bert", "1M", offline_package="fake_weights_pkg")
    assert entry.local_source() == str(package / "model")
    assert catalog.CatalogEntry("org/repo", "bert", "1M", offline_package="no_such_pkg_here").local_source() == "org/repo"
