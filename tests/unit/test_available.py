"""Which models this machine can serve beyond the configured ones (`models/available.py`): model
directories under $VLLAMA_HOME/models, pulled repositories, catalog models on disk; and the
names requests find them by. Real directories in a temporary home; the Hugging Face cache is
pointed at an empty directory so that the machine's own cache does not leak in."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllama.models import catalog
from vllama.models.available import available_models, find_available
from vllama.models.names import ModelName
from vllama.models.pull import pulled_dir


@pytest.fixture(autouse=True)
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    # Catalog models shipped in a Python package are on disk wherever it is installed: none here.
    monkeypatch.setattr(catalog.CatalogEntry, "local_source", lambda self: self.source)


def model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text('{"model_type": "qwen2"}')
    return path


def names(home: Path) -> list[str]:
    return [c.name for c in available_models(home)]


def test_nothing_in_an_empty_home(tmp_path: Path) -> None:
    assert names(tmp_path / "home") == []
    assert find_available("anything", tmp_path / "home") is None


def test_model_directories_under_the_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    model_dir(home / "models" / "my-model")
    model_dir(home / "models" / "other:v2")
    (home / "models" / "empty").mkdir()  # no config.json: not a model
    model_dir(home / "models" / "random-tiny")  # vllama's random models are not listed
    model_dir(home / "models" / "bad name!")  # Ollama's names cannot spell it
    assert names(home) == ["my-model:latest", "other:v2"]
    found = find_available("MY-MODEL", home)
    assert found is not None and found.name == "my-model:latest"
    assert found.source == str(home / "models" / "my-model") and found.load == "demand"
    assert find_available("empty", home) is None
    assert find_available("random-tiny", home) is None


def test_pulled_repositories(tmp_path: Path) -> None:
    home = tmp_path / "home"
    model_dir(pulled_dir(home, "someorg/Some-Model"))
    model_dir(pulled_dir(home, "Qwen/Qwen2.5-1.5B-Instruct"))  # in the catalog: its catalog name
    listed = {c.name: c for c in available_models(home)}
    assert set(listed) == {"hf.co/someorg/Some-Model:latest", "qwen2.5:1.5b"}
    assert listed["hf.co/someorg/Some-Model:latest"].source == "someorg/Some-Model"
    assert listed["qwen2.5:1.5b"].source is None  # the catalog's defaults; resolve() finds the copy
    # Found by the name it was pulled by too, as the model it is listed as (one engine for both).
    by_repo = find_available("someorg/Some-Model", home)
    assert by_repo is not None and by_repo.source == "someorg/Some-Model"
    assert by_repo.name == "hf.co/someorg/Some-Model:latest"
    by_tag = find_available("qwen2.5:1.5b-instruct", home)
    assert by_tag is not None and by_tag.name == "qwen2.5:1.5b"
    assert find_available("someorg/other", home) is None
    assert find_available("llama3.2:1b", home) is None  # in the catalog, not on disk


def test_catalog_models_in_the_hugging_face_cache(tmp_path: Path) -> None:
    from huggingface_hub import constants

    entry = catalog.lookup(ModelName.parse("qwen2.5:0.5b"))
    assert entry is not None
    repo = Path(constants.HF_HUB_CACHE) / f"models--{entry.source.replace('/', '--')}"
    snapshot = repo / "snapshots" / "abc123"
    model_dir(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    assert names(tmp_path / "home") == ["qwen2.5:0.5b"]
    assert find_available("qwen2.5:0.5b", tmp_path / "home") is not None


def test_a_directory_wins_over_a_catalog_model_of_the_same_name(tmp_path: Path) -> None:
    home = tmp_path / "home"
    model_dir(home / "models" / "qwen2.5:1.5b")
    model_dir(pulled_dir(home, "Qwen/Qwen2.5-1.5B-Instruct"))
    [only] = available_models(home)
    assert only.source == str(home / "models" / "qwen2.5:1.5b")
