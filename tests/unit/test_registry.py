"""Created models: their definition, digest, and the registry's files under `<home>/manifests`."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from vllama.errors import InvalidRequest
from vllama.models.registry import CreatedModel, Registry

MARIO = CreatedModel(
    name="mario:latest",
    base="qwen2.5:0.5b",
    system="You are Mario.",
    template="{{ .Prompt }}",
    parameters={"temperature": 0.7, "stop": ["<|im_end|>"]},
    messages=({"role": "user", "content": "hi"}, {"role": "assistant", "content": "It's-a me!"}),
    license=("MIT",),
    modified_at="2025-01-02T03:04:05.000006+00:00",
)


def files(root: Path) -> list[str]:
    """Every file and directory under `root`, relative, sorted (temporary files included)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- CreatedModel ---------------------------------------------------------------------------------


def test_digest_is_sha256_of_the_definition() -> None:
    body = {
        "base": "qwen2.5:0.5b",
        "system": "You are Mario.",
        "template": "{{ .Prompt }}",
        "parameters": {"temperature": 0.7, "stop": ["<|im_end|>"]},
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "It's-a me!"}],
        "license": ["MIT"],
    }
    assert MARIO.digest == hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def test_digest_ignores_name_and_time() -> None:
    assert dataclasses.replace(MARIO, name="luigi:v2", modified_at="").digest == MARIO.digest


@pytest.mark.parametrize(
    "change",
    [
        {"base": "qwen2.5:1.5b"},
        {"system": "You are Luigi."},
        {"system": None},
        {"template": None},
        {"parameters": {"temperature": 0.8, "stop": ["<|im_end|>"]}},
        {"parameters": {}},
        {"messages": ()},
        {"license": ("Apache-2.0",)},
    ],
)
def test_digest_follows_every_part(change: dict[str, Any]) -> None:
    digest = dataclasses.replace(MARIO, **change).digest
    assert digest != MARIO.digest
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_digest_of_a_served_model() -> None:
    body = {"base": "m:latest", "system": None, "template": None, "parameters": {}, "messages": [], "license": []}
    expected = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    assert CreatedModel(name="m:latest", base="m:latest").digest == expected


def test_derive_without_changes_keeps_everything_but_name_and_time() -> None:
    derived = MARIO.derive("mario2:latest")
    assert derived.name == "mario2:latest"
    assert derived.base == "qwen2.5:0.5b"
    assert dataclasses.replace(derived, name=MARIO.name, modified_at=MARIO.modified_at) == MARIO
    assert derived.digest == MARIO.digest
    assert datetime.datetime.fromisoformat(derived.modified_at).tzinfo is not None
    assert derived.modified_at != MARIO.modified_at


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"system": "Luigi."}, {"system": "Luigi."}),
        ({"system": ""}, {"system": ""}),
        ({"template": "T"}, {"template": "T"}),
        # parameters merge, the new values winning
        (
            {"parameters": {"temperature": 0.1, "top_k": 5}},
            {"parameters": {"temperature": 0.1, "stop": ["<|im_end|>"], "top_k": 5}},
        ),
        ({"parameters": {}}, {}),
        # messages and license are replaced when given, kept when empty
        ({"messages": [{"role": "user", "content": "yo"}]}, {"messages": ({"role": "user", "content": "yo"},)}),
        ({"messages": []}, {}),
        ({"license": ["GPL"]}, {"license": ("GPL",)}),
        ({"license": []}, {}),
    ],
)
def test_derive(changes: dict[str, Any], expected: dict[str, Any]) -> None:
    derived = MARIO.derive("new:latest", **changes)
    assert dataclasses.replace(derived, modified_at="") == dataclasses.replace(
        MARIO, name="new:latest", modified_at="", **expected
    )


def test_derive_does_not_share_mutable_parts() -> None:
    messages = [{"role": "user", "content": "yo"}]
    derived = MARIO.derive("new:latest", messages=messages, parameters={"top_k": 1})
    messages[0]["content"] = "changed"
    assert derived.messages == ({"role": "user", "content": "yo"},)
    assert MARIO.parameters == {"temperature": 0.7, "stop": ["<|im_end|>"]}


# --- Registry ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("mario", "registry.ollama.ai/library/mario/latest.json"),
        ("mario:latest", "registry.ollama.ai/library/mario/latest.json"),
        ("Mario:V1", "registry.ollama.ai/library/mario/v1.json"),
        ("ns/m:v1", "registry.ollama.ai/ns/m/v1.json"),
        ("NS/M", "registry.ollama.ai/ns/m/latest.json"),
        ("example.com/ns/m:v1", "example.com/ns/m/v1.json"),
        ("localhost:5000/ns/m", "localhost:5000/ns/m/latest.json"),
    ],
)
def test_path_layout(tmp_path: Path, name: str, path: str) -> None:
    assert Registry(tmp_path).path(name) == tmp_path / "manifests" / path


@pytest.mark.parametrize("name", ["", "a/b/c/d", "-x", "m:"])
def test_invalid_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidRequest, match="^invalid model name$"):
        Registry(tmp_path).get(name)


def test_save_and_get(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.save(MARIO)
    assert registry.get("mario") == MARIO
    assert registry.get("MARIO:LATEST") == MARIO
    assert registry.get("mario:v2") is None
    assert files(tmp_path) == [
        "manifests",
        "manifests/registry.ollama.ai",
        "manifests/registry.ollama.ai/library",
        "manifests/registry.ollama.ai/library/mario",
        "manifests/registry.ollama.ai/library/mario/latest.json",
    ]


def test_file_contents(tmp_path: Path) -> None:
    Registry(tmp_path).save(MARIO)
    data = json.loads((tmp_path / "manifests/registry.ollama.ai/library/mario/latest.json").read_text())
    assert data == {
        "schema": 1,
        "name": "mario:latest",
        "base": "qwen2.5:0.5b",
        "system": "You are Mario.",
        "template": "{{ .Prompt }}",
        "parameters": {"temperature": 0.7, "stop": ["<|im_end|>"]},
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "It's-a me!"}],
        "license": ["MIT"],
        "modified_at": "2025-01-02T03:04:05.000006+00:00",
    }


def test_get_fills_missing_optional_fields(tmp_path: Path) -> None:
    path = Registry(tmp_path).path("old")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"name": "old:latest", "base": "m:latest"}))
    assert Registry(tmp_path).get("old") == CreatedModel(name="old:latest", base="m:latest")


def test_names_are_case_insensitive(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.save(dataclasses.replace(MARIO, name="Mario:Latest"))
    registry.save(dataclasses.replace(MARIO, name="mario:latest", system="second"))
    (only,) = registry.list()
    assert only.name == "mario:latest" and only.system == "second"
    assert registry.get("MaRiO").system == "second"  # type: ignore[union-attr]


def test_display_name_is_kept(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.save(dataclasses.replace(MARIO, name="Mario:V1"))
    assert registry.get("mario:v1").name == "Mario:V1"  # type: ignore[union-attr]


def test_namespaced_names(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.save(dataclasses.replace(MARIO, name="ns/mario:v1"))
    registry.save(dataclasses.replace(MARIO, name="mario:v1", system="library"))
    assert registry.get("ns/mario:v1").system == "You are Mario."  # type: ignore[union-attr]
    assert registry.get("mario:v1").system == "library"  # type: ignore[union-attr]
    assert (tmp_path / "manifests/registry.ollama.ai/ns/mario/v1.json").is_file()


def test_list(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    assert registry.list() == []
    for name in ("b:latest", "a:v2", "ns/c:latest", "a:v1"):
        registry.save(dataclasses.replace(MARIO, name=name))
    assert [m.name for m in registry.list()] == ["a:v1", "a:v2", "b:latest", "ns/c:latest"]
    assert all(m == dataclasses.replace(MARIO, name=m.name) for m in registry.list())


@pytest.mark.parametrize(
    "garbage",
    ["not json", "", "[1, 2]", '{"base": "no name"}', '{"name": "no base"}', '"a string"', "null"],
)
def test_garbage_does_not_break_list(tmp_path: Path, garbage: str) -> None:
    registry = Registry(tmp_path)
    registry.save(MARIO)
    junk = tmp_path / "manifests/registry.ollama.ai/library/junk/latest.json"
    junk.parent.mkdir(parents=True)
    junk.write_text(garbage)
    (tmp_path / "manifests/README").write_text("not ours")
    assert registry.list() == [MARIO]


def test_get_through_a_file_is_none(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    (tmp_path / "manifests/registry.ollama.ai").mkdir(parents=True)
    (tmp_path / "manifests/registry.ollama.ai/library").write_text("a file where a directory should be")
    assert registry.get("mario") is None


def test_save_replaces_atomically_and_leaves_no_temp_files(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.save(MARIO)
    registry.save(dataclasses.replace(MARIO, system="again"))
    assert registry.get("mario").system == "again"  # type: ignore[union-attr]
    directory = tmp_path / "manifests/registry.ollama.ai/library/mario"
    assert sorted(p.name for p in directory.iterdir()) == ["latest.json"]


def test_failed_save_leaves_nothing(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.save(MARIO)
    with pytest.raises(TypeError):
        registry.save(dataclasses.replace(MARIO, parameters={"bad": object()}))
    assert registry.get("mario") == MARIO  # the old definition is whole
    directory = tmp_path / "manifests/registry.ollama.ai/library/mario"
    assert sorted(p.name for p in directory.iterdir()) == ["latest.json"]


def test_delete(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.save(MARIO)
    registry.save(dataclasses.replace(MARIO, name="mario:v2"))
    assert registry.delete("MARIO") is True
    assert registry.get("mario") is None
    assert [m.name for m in registry.list()] == ["mario:v2"]
    assert registry.delete("mario") is False


def test_delete_tidies_empty_directories(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.save(dataclasses.replace(MARIO, name="ns/mario:v1"))
    registry.save(dataclasses.replace(MARIO, name="other:latest"))
    assert registry.delete("ns/mario:v1") is True
    assert files(tmp_path) == [
        "manifests",
        "manifests/registry.ollama.ai",
        "manifests/registry.ollama.ai/library",
        "manifests/registry.ollama.ai/library/other",
        "manifests/registry.ollama.ai/library/other/latest.json",
    ]
    assert registry.delete("other") is True
    assert files(tmp_path) == ["manifests"]  # the root itself stays


def test_delete_keeps_directories_with_other_tags(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.save(MARIO)
    registry.save(dataclasses.replace(MARIO, name="mario:v2"))
    registry.delete("mario:latest")
    assert files(tmp_path / "manifests/registry.ollama.ai/library") == ["mario", "mario/v2.json"]


@pytest.mark.parametrize("name", ["nothing", "ns/nothing:v1"])
def test_delete_unknown(tmp_path: Path, name: str) -> None:
    assert Registry(tmp_path).delete(name) is False
    assert not (tmp_path / "manifests").exists()
