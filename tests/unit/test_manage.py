"""`/api/create`, `/api/copy`, `/api/delete` on a registry in a temporary directory, with served
models given by a fake lookup (as the application's directory gives them)."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from vllama.errors import InvalidRequest, ModelNotFound, VllamaError
from vllama.models.manage import ModelManager, checked_parameters, from_modelfile
from vllama.models.names import ModelName
from vllama.models.registry import CreatedModel, Registry
from vllama.ollama_api.schema import CreateRequest

SERVED = {ModelName.parse(n).key: n for n in ("qwen2.5:0.5b", "vllama-tiny:latest", "ns/served:v1")}
BASE = CreatedModel(name="qwen2.5:0.5b", base="qwen2.5:0.5b")


def served(name: str) -> str | None:
    """The application directory's lookup: display name of a served model, None otherwise."""
    try:
        return SERVED.get(ModelName.parse(name).key)
    except InvalidRequest:
        return None


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(tmp_path)


@pytest.fixture
def manager(registry: Registry) -> ModelManager:
    return ModelManager(registry, served)


def create(manager: ModelManager, **body: Any) -> list[dict[str, Any]]:
    return manager.create(CreateRequest.model_validate(body))


def layer(value: Any) -> str:
    return "creating new layer sha256:" + hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def without_time(model: CreatedModel | None) -> CreatedModel:
    assert model is not None
    assert datetime.datetime.fromisoformat(model.modified_at).tzinfo is not None
    return dataclasses.replace(model, modified_at="")


# --- find -----------------------------------------------------------------------------------------


def test_find(manager: ModelManager, registry: Registry) -> None:
    assert manager.find("QWEN2.5:0.5B") == BASE
    assert manager.find("ns/served:v1") == CreatedModel(name="ns/served:v1", base="ns/served:v1")
    assert manager.find("mine") is None
    create(manager, model="mine", **{"from": "qwen2.5:0.5b"}, system="S")
    assert without_time(manager.find("MINE:latest")) == CreatedModel(name="mine:latest", base="qwen2.5:0.5b", system="S")


# --- create from a served model ------------------------------------------------------------------


def test_create_from_served_model(manager: ModelManager, registry: Registry) -> None:
    statuses = create(
        manager,
        model="Mario",
        **{"from": "QWEN2.5:0.5b"},
        system="You are Mario.",
        template="{{ .Prompt }}",
        parameters={"temperature": 0.7, "stop": ["<|im_end|>"]},
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "It's-a me!"}],
        license="MIT",
    )
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "It's-a me!"}]
    assert statuses == [
        {"status": "using existing layer sha256:" + BASE.digest},
        {"status": layer("{{ .Prompt }}")},
        {"status": layer("You are Mario.")},
        {"status": layer({"temperature": 0.7, "stop": ["<|im_end|>"]})},
        {"status": layer(messages)},
        {"status": layer(["MIT"])},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    assert without_time(registry.get("mario")) == CreatedModel(
        name="Mario:latest",
        base="qwen2.5:0.5b",
        system="You are Mario.",
        template="{{ .Prompt }}",
        parameters={"temperature": 0.7, "stop": ["<|im_end|>"]},
        messages=tuple(messages),
        license=("MIT",),
    )


def test_create_with_nothing_new(manager: ModelManager, registry: Registry) -> None:
    statuses = create(manager, model="plain", **{"from": "vllama-tiny"})
    base = CreatedModel(name="vllama-tiny:latest", base="vllama-tiny:latest")
    assert statuses == [
        {"status": "using existing layer sha256:" + base.digest},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    assert without_time(registry.get("plain")) == CreatedModel(name="plain:latest", base="vllama-tiny:latest")


@pytest.mark.parametrize(
    ("extra", "new_layers"),
    [
        ({"system": "S"}, ["S"]),
        ({"template": "T"}, ["T"]),
        ({"parameters": {"top_k": 5}}, [{"top_k": 5}]),
        ({"messages": [{"role": "user", "content": "x"}]}, [[{"role": "user", "content": "x"}]]),
        ({"license": ["A", "B"]}, [["A", "B"]]),
        ({"system": ""}, []),  # an empty part makes no layer
        ({"parameters": {}, "messages": [], "license": []}, []),
    ],
)
def test_create_status_one_layer_per_part(manager: ModelManager, extra: dict[str, Any], new_layers: list[Any]) -> None:
    statuses = create(manager, model="m2", **{"from": "qwen2.5:0.5b"}, **extra)
    assert statuses == [
        {"status": "using existing layer sha256:" + BASE.digest},
        *({"status": layer(v)} for v in new_layers),
        {"status": "writing manifest"},
        {"status": "success"},
    ]


def test_create_parameters_are_checked_and_unknown_dropped(
    manager: ModelManager, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        create(manager, model="m2", **{"from": "qwen2.5:0.5b"},
               parameters={"num_predict": 3.9, "stop": "END", "mirostat": 2, "seed": None})
    assert registry.get("m2").parameters == {"num_predict": 3, "stop": ["END"]}  # type: ignore[union-attr]
    assert "mirostat" in caplog.text


def test_create_replaces_a_created_model(manager: ModelManager, registry: Registry) -> None:
    create(manager, model="m2", **{"from": "qwen2.5:0.5b"}, system="one")
    create(manager, model="M2:latest", **{"from": "vllama-tiny"}, system="two")
    (only,) = registry.list()
    assert without_time(only) == CreatedModel(name="M2:latest", base="vllama-tiny:latest", system="two")


# --- create from a created model ------------------------------------------------------------------


@pytest.fixture
def mario(manager: ModelManager, registry: Registry) -> CreatedModel:
    create(
        manager,
        model="mario",
        **{"from": "qwen2.5:0.5b"},
        system="You are Mario.",
        template="{{ .Prompt }}",
        parameters={"temperature": 0.7, "stop": ["<|im_end|>"]},
        messages=[{"role": "user", "content": "hi"}],
        license="MIT",
    )
    found = registry.get("mario")
    assert found is not None
    return found


def test_create_from_created_model_is_flattened(manager: ModelManager, registry: Registry, mario: CreatedModel) -> None:
    statuses = create(
        manager, model="luigi", **{"from": "Mario"}, system="You are Luigi.", parameters={"temperature": 0.2, "top_k": 3}
    )
    assert statuses == [
        {"status": "using existing layer sha256:" + mario.digest},
        {"status": layer("You are Luigi.")},
        {"status": layer({"temperature": 0.2, "stop": ["<|im_end|>"], "top_k": 3})},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    assert without_time(registry.get("luigi")) == CreatedModel(
        name="luigi:latest",
        base="qwen2.5:0.5b",  # the served model, never "mario"
        system="You are Luigi.",
        template="{{ .Prompt }}",
        parameters={"temperature": 0.2, "stop": ["<|im_end|>"], "top_k": 3},  # merged, new values win
        messages=({"role": "user", "content": "hi"},),  # inherited: none given
        license=("MIT",),
    )
    assert registry.get("mario") == mario  # the base is untouched


def test_create_from_created_model_replaces_messages_when_given(
    manager: ModelManager, registry: Registry, mario: CreatedModel
) -> None:
    create(manager, model="luigi", **{"from": "mario"}, messages=[{"role": "assistant", "content": "Wahoo"}])
    assert registry.get("luigi").messages == ({"role": "assistant", "content": "Wahoo"},)  # type: ignore[union-attr]


def test_create_same_values_as_base_make_no_layer(manager: ModelManager, mario: CreatedModel) -> None:
    statuses = create(manager, model="copy", **{"from": "mario"}, system="You are Mario.", parameters={"temperature": 0.7})
    assert statuses == [
        {"status": "using existing layer sha256:" + mario.digest},
        {"status": "writing manifest"},
        {"status": "success"},
    ]


# --- create errors: nothing is written -------------------------------------------------------------

FILES_MESSAGE = (
    "creating a model from uploaded files or adapters is not supported: vllama builds models on the models it "
    "serves (use FROM <model>); to serve other weights, start the server with --model <directory or Hugging Face "
    "repo id>"
)
DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("body", "error", "status", "message"),
    [
        ({"from": "qwen2.5:0.5b"}, InvalidRequest, 400, "model is required"),
        ({"model": "", "from": "qwen2.5:0.5b"}, InvalidRequest, 400, "model is required"),
        ({"model": "a/b/c/d", "from": "qwen2.5:0.5b"}, InvalidRequest, 400, "invalid model name"),
        ({"model": "bad name", "from": "qwen2.5:0.5b"}, InvalidRequest, 400, "invalid model name"),
        (
            {"model": "QWEN2.5:0.5b", "from": "vllama-tiny"},
            InvalidRequest,
            400,
            "model 'QWEN2.5:0.5b' is served from the application's configuration and cannot be replaced; choose "
            "another name",
        ),
        (
            {"model": "ns/served:v1", "system": "s"},
            InvalidRequest,
            400,
            "model 'ns/served:v1' is served from the application's configuration and cannot be replaced; choose "
            "another name",
        ),
        ({"model": "m", "files": {"model.gguf": DIGEST}}, InvalidRequest, 400, FILES_MESSAGE),
        ({"model": "m", "from": "qwen2.5:0.5b", "adapters": {"a.safetensors": DIGEST}}, InvalidRequest, 400, FILES_MESSAGE),
        (
            {"model": "m", "from": "qwen2.5:0.5b", "quantize": "q4_K_M"},
            InvalidRequest,
            400,
            "quantize is not supported: vLLM loads quantized weights as they are published",
        ),
        ({"model": "m"}, InvalidRequest, 400, "neither 'from' or 'files' was specified"),
        ({"model": "m", "system": "s"}, InvalidRequest, 400, "neither 'from' or 'files' was specified"),
        ({"model": "m", "from": "nothing"}, ModelNotFound, 404, "base model 'nothing' not found"),
        ({"model": "m", "from": "qwen2.5:7b"}, ModelNotFound, 404, "base model 'qwen2.5:7b' not found"),
        (
            {"model": "m", "from": "qwen2.5:0.5b", "parameters": {"temperature": "hot"}},
            InvalidRequest,
            400,
            "invalid value for parameter 'temperature': Input should be a valid number",
        ),
        (
            {"model": "m", "from": "qwen2.5:0.5b", "parameters": {"stop": [1]}},
            InvalidRequest,
            400,
            "invalid value for parameter 'stop.0': Input should be a valid string",
        ),
        (
            {"model": "m", "from": "qwen2.5:0.5b", "parameters": {"num_ctx": "4096"}},
            InvalidRequest,
            400,
            "invalid value for parameter 'num_ctx': Input should be a valid integer",
        ),
        (
            {"model": "m", "from": "qwen2.5:0.5b", "template": "{{ .Prompt"},
            InvalidRequest,
            400,
            "invalid template: template:1:1: unclosed action",
        ),
        (
            {"model": "m", "from": "qwen2.5:0.5b", "template": '{{ define "x" }}y{{ end }}'},
            InvalidRequest,
            400,
            "invalid template: template:1:4: {{define}} is not supported",
        ),
        # The template is checked before the base is looked up.
        (
            {"model": "m", "from": "nothing", "template": "{{ end }}"},
            InvalidRequest,
            400,
            "invalid template: template:1:1: unexpected {{end}}",
        ),
    ],
)
def test_create_errors(
    manager: ModelManager, tmp_path: Path, body: dict[str, Any], error: type[VllamaError], status: int, message: str
) -> None:
    with pytest.raises(error) as info:
        manager.create(CreateRequest.model_validate(body))
    assert type(info.value) is error
    assert info.value.status_code == status
    assert info.value.message == message
    assert tree(tmp_path) == []


def test_failed_create_keeps_existing_model(manager: ModelManager, registry: Registry, mario: CreatedModel) -> None:
    before = tree(registry.root)
    with pytest.raises(InvalidRequest):
        create(manager, model="mario", **{"from": "qwen2.5:0.5b"}, parameters={"top_p": "high"})
    assert registry.get("mario") == mario
    assert tree(registry.root) == before


def test_checked_parameters() -> None:
    assert checked_parameters({}) == {}
    assert checked_parameters({"temperature": 1, "stop": ["a", "b"], "use_mmap": False}) == {
        "temperature": 1.0,
        "stop": ["a", "b"],
        "use_mmap": False,
    }


# --- the legacy `modelfile` field ---------------------------------------------------------------------

MODELFILE = '''FROM qwen2.5:0.5b
SYSTEM """You are Mario."""
PARAMETER temperature 0.3
PARAMETER stop <|im_end|>
MESSAGE user hi
MESSAGE assistant hello
LICENSE MIT
'''


def test_from_modelfile() -> None:
    request = from_modelfile(CreateRequest.model_validate({"name": "mario", "modelfile": MODELFILE, "stream": False}))
    assert request.model_name == "mario"
    assert request.from_ == "qwen2.5:0.5b"
    assert request.system == "You are Mario."
    assert request.parameters == {"temperature": 0.3, "stop": ["<|im_end|>"]}
    assert [m.model_dump(exclude_none=True) for m in request.messages or ()] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert request.license == ["MIT"]
    assert request.template is None
    assert request.stream is False


def test_create_from_modelfile(manager: ModelManager, registry: Registry) -> None:
    statuses = create(manager, model="mario", modelfile=MODELFILE)
    assert statuses[0] == {"status": "using existing layer sha256:" + BASE.digest}
    assert statuses[-2:] == [{"status": "writing manifest"}, {"status": "success"}]
    assert len(statuses) == 7  # system, parameters, messages, license
    assert without_time(registry.get("mario")) == CreatedModel(
        name="mario:latest",
        base="qwen2.5:0.5b",
        system="You are Mario.",
        parameters={"temperature": 0.3, "stop": ["<|im_end|>"]},
        messages=({"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}),
        license=("MIT",),
    )


def test_modelfile_ignored_when_from_is_given(manager: ModelManager, registry: Registry) -> None:
    create(manager, model="m2", **{"from": "vllama-tiny"}, modelfile=MODELFILE)
    assert without_time(registry.get("m2")) == CreatedModel(name="m2:latest", base="vllama-tiny:latest")


@pytest.mark.parametrize(
    ("modelfile", "error", "message"),
    [
        ("SYSTEM hi\n", InvalidRequest, "no FROM line"),
        ("FROM qwen2.5:0.5b\nBOGUS x\n", InvalidRequest, "(line 2): command must be one of"),
        ("FROM qwen2.5:0.5b\nPARAMETER nope 1\n", InvalidRequest, "(line 2): unknown parameter 'nope'"),
        ("FROM qwen2.5:0.5b\nPARAMETER temperature hot\n", InvalidRequest,
         '(line 2): invalid float value "hot" for parameter temperature'),
        ("FROM qwen2.5:0.5b\nADAPTER ./lora\n", InvalidRequest,
         "(line 2): ADAPTER is not supported yet: vllama cannot apply LoRA adapters from a Modelfile"),
        ("FROM nothing:1b\n", ModelNotFound, "base model 'nothing:1b' not found"),
        ("FROM qwen2.5:0.5b\nTEMPLATE {{ .Prompt\n", InvalidRequest, "invalid template: template:1:1: unclosed action"),
    ],
)
def test_create_from_bad_modelfile(
    manager: ModelManager, tmp_path: Path, modelfile: str, error: type[VllamaError], message: str
) -> None:
    with pytest.raises(error) as info:
        create(manager, model="m2", modelfile=modelfile)
    assert type(info.value) is error
    assert info.value.message.startswith(message)
    assert tree(tmp_path) == []


# --- copy -------------------------------------------------------------------------------------------


def test_copy_served_model(manager: ModelManager, registry: Registry) -> None:
    manager.copy("QWEN2.5:0.5B", "Alias")
    assert without_time(registry.get("alias")) == CreatedModel(name="Alias:latest", base="qwen2.5:0.5b")


def test_copy_created_model(manager: ModelManager, registry: Registry, mario: CreatedModel) -> None:
    manager.copy("mario", "ns/mario-copy:v2")
    copied = registry.get("ns/mario-copy:v2")
    assert without_time(copied) == dataclasses.replace(mario, name="ns/mario-copy:v2", modified_at="")
    assert copied.digest == mario.digest  # type: ignore[union-attr]
    assert registry.get("mario") == mario


def test_copy_over_created_model(manager: ModelManager, registry: Registry, mario: CreatedModel) -> None:
    manager.copy("vllama-tiny", "mario")
    assert without_time(registry.get("mario")) == CreatedModel(name="mario:latest", base="vllama-tiny:latest")


@pytest.mark.parametrize(
    ("source", "destination", "error", "status", "message"),
    [
        ("nothing", "x", ModelNotFound, 404, 'model "nothing" not found'),
        ("Nothing:V1", "x", ModelNotFound, 404, 'model "Nothing:V1" not found'),
        ("qwen2.5:0.5b", "", InvalidRequest, 400, "model is required"),
        ("qwen2.5:0.5b", "a/b/c/d", InvalidRequest, 400, "invalid model name"),
        (
            "qwen2.5:0.5b",
            "VLLAMA-TINY",
            InvalidRequest,
            400,
            "model 'VLLAMA-TINY:latest' is served from the application's configuration and cannot be replaced; "
            "choose another name",
        ),
    ],
)
def test_copy_errors(
    manager: ModelManager,
    tmp_path: Path,
    source: str,
    destination: str,
    error: type[VllamaError],
    status: int,
    message: str,
) -> None:
    with pytest.raises(error) as info:
        manager.copy(source, destination)
    assert type(info.value) is error
    assert info.value.status_code == status
    assert info.value.message == message
    assert tree(tmp_path) == []


# --- delete -------------------------------------------------------------------------------------------


def test_delete_created_model(manager: ModelManager, registry: Registry, mario: CreatedModel) -> None:
    manager.delete("MARIO:latest")
    assert registry.get("mario") is None
    assert manager.find("mario") is None
    assert tree(registry.root) == []


@pytest.mark.parametrize(
    ("name", "error", "status", "message"),
    [
        (None, InvalidRequest, 400, "model is required"),
        ("", InvalidRequest, 400, "model is required"),
        (
            "Qwen2.5:0.5b",
            InvalidRequest,
            400,
            "model 'Qwen2.5:0.5b' is served from the application's configuration; remove it there to stop serving it",
        ),
        ("nothing", ModelNotFound, 404, "model 'nothing' not found"),
        ("mario:v2", ModelNotFound, 404, "model 'mario:v2' not found"),
        ("a/b/c/d", ModelNotFound, 404, "model 'a/b/c/d' not found"),
    ],
)
def test_delete_errors(
    manager: ModelManager,
    registry: Registry,
    mario: CreatedModel,
    name: str | None,
    error: type[VllamaError],
    status: int,
    message: str,
) -> None:
    before = tree(registry.root)
    with pytest.raises(error) as info:
        manager.delete(name)
    assert type(info.value) is error
    assert info.value.status_code == status
    assert info.value.message == message
    assert tree(registry.root) == before
    assert registry.get("mario") == mario
