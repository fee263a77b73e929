"""The typed serve config and model resolution (catalog, random models, local directories)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from vllama.config import DeploymentSettings, ModelConfig, ServingConfig
from vllama.errors import ConfigError, InvalidRequest
from vllama.models.pull import pulled_dir
from vllama.models.resolve import DEFAULT_MODEL, DETECT, ResolvedModel, cache_dir, resolve


@pytest.fixture(autouse=True)
def _own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # resolve() prefers weights `vllama pull` fetched under VLLAMA_HOME: never look at the user's.
    home = tmp_path / "vllama-home"
    monkeypatch.setenv("VLLAMA_HOME", str(home))
    return home


def serving(*models: dict[str, Any], **extra: Any) -> ServingConfig:
    return ServingConfig.model_validate({"models": list(models), **extra})


# --- ServingConfig / ModelConfig -----------------------------------------------------------------


def test_minimal_config() -> None:
    config = serving({"name": "qwen2.5:1.5b"})
    assert config.accelerator == "auto"
    assert config.stream_interval_ms == 40.0
    assert config.routing == "prefix" and config.failover is True
    assert config.ingress.num_replicas is None and config.ingress.autoscaling_config is None
    model = config.models[0]
    assert model.source is None and model.engine_kwargs == {} and model.parameters == {}
    assert model.deployment == DeploymentSettings()


def test_full_model_config() -> None:
    config = serving(
        {
            "name": "mine:v1",
            "source": "/models/mine",
            "gpu_memory_utilization": 1.0,
            "max_num_seqs": 64,
            "max_num_batched_tokens": 8192,
            "max_model_len": 4096,
            "enable_prefix_caching": True,
            "tensor_parallel_size": 2,
            "pipeline_parallel_size": 1,
            "dtype": "bfloat16",
            "engine_kwargs": {"enforce_eager": True},
            "parameters": {"temperature": 0.2, "stop": ["x"]},
            "system": "Be brief.",
            "deployment": {"num_replicas": 2, "max_ongoing_requests": 10, "placement_group_strategy": "SPREAD"},
        },
        accelerator="cpu",
        routing="least_loaded",
        failover=False,
    )
    model = config.models[0]
    assert model.engine_flags() == {
        "gpu_memory_utilization": 1.0,
        "max_num_seqs": 64,
        "max_num_batched_tokens": 8192,
        "max_model_len": 4096,
        "enable_prefix_caching": True,
        "tensor_parallel_size": 2,
        "pipeline_parallel_size": 1,
        "dtype": "bfloat16",
    }
    assert model.deployment.num_replicas == 2
    assert model.deployment.placement_group_strategy == "SPREAD"


def test_engine_flags_omit_unset() -> None:
    assert ModelConfig(name="m", max_num_seqs=8).engine_flags() == {"max_num_seqs": 8}
    assert ModelConfig(name="m", enable_prefix_caching=False).engine_flags() == {"enable_prefix_caching": False}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"models": [{"name": "m"}], "bogus": 1}, "bogus"),
        ({"models": [{"name": "m", "gpu_mem": 0.5}]}, "gpu_mem"),
        ({"models": [{"name": "m", "deployment": {"replicas": 2}}]}, "replicas"),
        ({"models": []}, "models"),
        ({}, "models"),
        ({"models": [{"source": "x"}]}, "name"),
        ({"models": [{"name": "a"}, {"name": "A:latest"}]}, "same name"),
        ({"models": [{"name": "qwen2.5:1.5b"}, {"name": "QWEN2.5:1.5B", "source": "x"}]}, "same name"),
        ({"models": [{"name": "m", "gpu_memory_utilization": 0}]}, "gpu_memory_utilization"),
        ({"models": [{"name": "m", "gpu_memory_utilization": 1.5}]}, "gpu_memory_utilization"),
        ({"models": [{"name": "m", "gpu_memory_utilization": -0.1}]}, "gpu_memory_utilization"),
        ({"models": [{"name": "m", "max_num_seqs": 0}]}, "max_num_seqs"),
        ({"models": [{"name": "m", "tensor_parallel_size": 0}]}, "tensor_parallel_size"),
        ({"models": [{"name": "m", "max_model_len": 512, "engine_kwargs": {"max_model_len": 256}}]}, "max_model_len"),
        ({"models": [{"name": "m", "dtype": "half", "engine_kwargs": {"dtype": "float"}}]}, "dtype"),
        ({"models": [{"name": "m"}], "accelerator": "tpu"}, "accelerator"),
        ({"models": [{"name": "m"}], "forward_batch_interval_ms": 5}, "forward_batch_interval_ms"),
        ({"models": [{"name": "m"}], "routing": "random"}, "routing"),
        ({"models": [{"name": "m", "routing": "round_robin"}]}, "routing"),
        ({"models": [{"name": "m"}], "ingress": {"num_replicas": 1, "autoscaling_config": {}}}, "autoscaling_config"),
        ({"models": [{"name": "m"}], "ingress": {"num_replicas": 0}}, "num_replicas"),
        ({"models": [{"name": "m", "deployment": {"engine_stall_timeout_s": -1}}]}, "engine_stall_timeout_s"),
        ({"models": [{"name": "m"}], "stream_interval_ms": -1}, "stream_interval_ms"),
        ({"models": [{"name": "m", "deployment": {"num_replicas": 1, "autoscaling_config": {}}}]}, "autoscaling_config"),
        ({"models": [{"name": "m", "deployment": {"placement_group_strategy": "ANY"}}]}, "placement_group_strategy"),
        ({"models": [{"name": "m", "deployment": {"max_constructor_retry_count": 0}}]}, "max_constructor_retry_count"),
    ],
)
def test_invalid_config(args: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        ServingConfig.model_validate(args)
    assert needle in str(info.value)


@pytest.mark.parametrize("name", ["", "-x", "a/b/c/d", "ns.x/m", "a" * 81])
def test_invalid_model_name_rejected(name: str) -> None:
    with pytest.raises((ValidationError, InvalidRequest)) as info:
        serving({"name": name})
    assert "invalid model name" in str(info.value)


def test_flag_in_engine_kwargs_alone_is_fine() -> None:
    model = serving({"name": "m", "engine_kwargs": {"max_model_len": 256}}).models[0]
    assert model.engine_kwargs == {"max_model_len": 256} and model.max_model_len is None


@pytest.mark.parametrize(
    ("settings", "ok"),
    [
        ({"num_replicas": 2}, True),
        ({"num_replicas": 0}, True),
        ({"autoscaling_config": {"min_replicas": 1, "max_replicas": 4}}, True),
        ({"num_replicas": 2, "autoscaling_config": {"min_replicas": 1}}, False),
        ({"num_replicas": -1}, False),
        ({"max_ongoing_requests": 0}, False),
        ({"health_check_period_s": 0}, False),
        ({"health_check_timeout_s": 5}, True),
    ],
)
def test_deployment_settings(settings: dict[str, Any], ok: bool) -> None:
    if ok:
        DeploymentSettings.model_validate(settings)
    else:
        with pytest.raises(ValidationError):
            DeploymentSettings.model_validate(settings)


def test_replicas_and_autoscaling_message() -> None:
    with pytest.raises(ValidationError, match="num_replicas or autoscaling_config"):
        DeploymentSettings(num_replicas=2, autoscaling_config={"max_replicas": 3})


# --- resolve ----------------------------------------------------------------------------------------


def test_resolve_catalog_model() -> None:
    model = resolve(ModelConfig(name="qwen2.5:1.5b"), "gpu")
    assert model == ResolvedModel(
        name="qwen2.5:1.5b",
        key="registry.ollama.ai/library/qwen2.5:1.5b",
        source="Qwen/Qwen2.5-1.5B-Instruct",
        engine_kwargs={"gpu_memory_utilization": 0.5, "max_model_len": 32768},
        parameters={},
        system=None,
        family="qwen2",
        parameter_size="1.5B",
        tool_parser="hermes",
        think_default=True,
    )


def test_resolve_catalog_latest_and_display_name() -> None:
    model = resolve(ModelConfig(name="QWEN2.5"), "gpu")
    assert model.source == "Qwen/Qwen2.5-7B-Instruct"
    assert model.name == "QWEN2.5:latest"
    assert model.key == "registry.ollama.ai/library/qwen2.5:latest"
    assert model.engine_kwargs["gpu_memory_utilization"] == 0.9


def test_resolve_flags_override_catalog() -> None:
    model = resolve(ModelConfig(name="qwen2.5:1.5b", gpu_memory_utilization=0.7, max_num_seqs=16), "gpu")
    assert model.engine_kwargs == {"gpu_memory_utilization": 0.7, "max_model_len": 32768, "max_num_seqs": 16}


def test_resolve_engine_kwargs_override_catalog() -> None:
    config = ModelConfig(name="qwen2.5:1.5b", max_num_seqs=4, engine_kwargs={"max_model_len": 1024, "enforce_eager": True})
    model = resolve(config, "gpu")
    assert model.engine_kwargs == {
        "gpu_memory_utilization": 0.5,
        "max_model_len": 1024,
        "max_num_seqs": 4,
        "enforce_eager": True,
    }


def test_resolve_catalog_tensor_parallel_and_parallel_size() -> None:
    model = resolve(ModelConfig(name="qwen2.5:72b"), "gpu")
    assert model.engine_kwargs["tensor_parallel_size"] == 4
    assert model.parallel_size == 4
    model = resolve(ModelConfig(name="qwen2.5:72b", pipeline_parallel_size=2), "gpu")
    assert model.parallel_size == 8


def test_resolve_catalog_name_with_own_source_skips_catalog_defaults() -> None:
    model = resolve(ModelConfig(name="qwen2.5:1.5b", source="someorg/qwen-finetune"), "gpu")
    assert model.source == "someorg/qwen-finetune"
    assert model.engine_kwargs == {}


def test_resolve_parameters_and_system() -> None:
    model = resolve(ModelConfig(name="qwen2.5:0.5b", parameters={"temperature": 0.1}, system="S"), "gpu")
    assert model.parameters == {"temperature": 0.1}
    assert model.system == "S"


@pytest.mark.parametrize(
    ("name", "source", "expected_source"),
    [
        (DEFAULT_MODEL, None, "random:tiny"),
        ("vllama-tiny", None, "random:tiny"),
        ("VLLAMA-TINY:LATEST", None, "random:tiny"),
        ("vllama-tiny:large", None, "random:large"),
        ("anything:v1", "random:tiny", "random:tiny"),
    ],
)
@pytest.mark.parametrize("accelerator", ["gpu", "cpu"])
def test_resolve_random(name: str, source: str | None, expected_source: str, accelerator: str) -> None:
    model = resolve(ModelConfig(name=name, source=source), accelerator)
    assert model.source == expected_source
    # Qwen's template: hermes tool calls and Qwen3's thinking switch, thinking only when asked.
    assert model.engine_kwargs == {
        "dtype": "float32",
        "max_model_len": 32768,
        "gpu_memory_utilization": 0.1,
        "reasoning_parser": "qwen3",
    }
    assert model.tool_parser == "hermes"
    assert model.think_default is False
    assert model.family == "" and model.parameter_size == ""


@pytest.mark.parametrize("accelerator", ["gpu", "cpu"])
def test_resolve_random_vision_has_no_parsers(accelerator: str) -> None:
    model = resolve(ModelConfig(name="vllama-tiny:vision"), accelerator)
    assert model.source == "random:vision"
    assert model.engine_kwargs == {"dtype": "float32", "max_model_len": 32768, "gpu_memory_utilization": 0.1}
    assert model.tool_parser is None
    assert model.think_default is False


def test_resolve_random_flags_override() -> None:
    model = resolve(ModelConfig(name="vllama-tiny", dtype="bfloat16", max_model_len=512), "cpu")
    assert model.engine_kwargs == {
        "dtype": "bfloat16",
        "max_model_len": 512,
        "gpu_memory_utilization": 0.1,
        "reasoning_parser": "qwen3",
    }


def test_resolve_unknown_random_variant() -> None:
    with pytest.raises(ConfigError, match="random:huge"):
        resolve(ModelConfig(name="m", source="random:huge"), "gpu")


@pytest.mark.parametrize("name", ["nosuchmodel:7b", "qwen2.5:999b", "someone/qwen2.5:1.5b"])
def test_resolve_unknown_name_without_source(name: str) -> None:
    with pytest.raises(ConfigError, match="not in the catalog"):
        resolve(ModelConfig(name=name), "gpu")


def test_resolve_local_dir_without_config_json(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config.json"):
        resolve(ModelConfig(name="mine", source=str(tmp_path)), "gpu")


def test_resolve_missing_local_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config.json"):
        resolve(ModelConfig(name="mine", source=str(tmp_path / "absent")), "gpu")


def test_resolve_local_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_dir = tmp_path / "mine"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    model = resolve(ModelConfig(name="mine", source=str(model_dir)), "gpu")
    assert model.source == str(model_dir.resolve())
    assert model.engine_kwargs == {}
    assert model.name == "mine:latest"
    assert model.tool_parser == DETECT == "auto"  # found from the chat template once loaded
    assert model.think_default is True
    # A relative path is made absolute (the replica may run elsewhere).
    monkeypatch.chdir(tmp_path)
    assert resolve(ModelConfig(name="mine", source="./mine"), "gpu").source == str(model_dir.resolve())


def test_resolve_hf_repo_id_kept() -> None:
    model = resolve(ModelConfig(name="org/model", source="org/model"), "gpu")
    assert model.source == "org/model"
    assert model.name == "org/model:latest"


@pytest.mark.parametrize(
    ("config", "dtype"),
    [
        ({"name": "qwen2.5:1.5b"}, "float32"),
        ({"name": "qwen2.5:1.5b", "dtype": "bfloat16"}, "bfloat16"),
        ({"name": "qwen2.5:1.5b", "engine_kwargs": {"dtype": "half"}}, "half"),
        ({"name": "org/model", "source": "org/model"}, "float32"),
    ],
)
def test_resolve_cpu_dtype(config: dict[str, Any], dtype: str) -> None:
    assert resolve(ModelConfig.model_validate(config), "cpu").engine_kwargs["dtype"] == dtype


def test_resolve_gpu_leaves_dtype_to_vllm() -> None:
    assert "dtype" not in resolve(ModelConfig(name="qwen2.5:1.5b"), "gpu").engine_kwargs


def test_resolve_does_not_mutate_catalog() -> None:
    resolve(ModelConfig(name="qwen2.5:0.5b", gpu_memory_utilization=0.2, dtype="half"), "cpu")
    assert resolve(ModelConfig(name="qwen2.5:0.5b"), "gpu").engine_kwargs == {
        "gpu_memory_utilization": 0.5,
        "max_model_len": 32768,
    }


# --- tool and reasoning parsers, thinking default ------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tool_parser", "reasoning_parser"),
    [
        ("qwen2.5:0.5b", "hermes", None),
        ("qwen2.5:1.5b", "hermes", None),
        ("qwen2.5-coder:7b", "hermes", None),
        ("llama3.2:1b", "llama3_json", None),
        ("llama3.1:8b", "llama3_json", None),
        ("llama3:8b", None, None),
        ("mistral:7b", "mistral", None),
        ("qwen3:0.6b", "hermes", "qwen3"),
        ("qwen3", "hermes", "qwen3"),
        ("deepseek-r1:1.5b", None, "deepseek_r1"),
        ("deepseek-r1:8b", None, "deepseek_r1"),
        ("gemma2:2b", None, None),
        ("smollm2:135m", None, None),
    ],
)
def test_resolve_catalog_parsers(name: str, tool_parser: str | None, reasoning_parser: str | None) -> None:
    model = resolve(ModelConfig(name=name), "gpu")
    assert model.tool_parser == tool_parser
    assert model.engine_kwargs.get("reasoning_parser") == reasoning_parser
    assert ("reasoning_parser" in model.engine_kwargs) is (reasoning_parser is not None)
    assert model.think_default is True


def test_resolve_thinking_model_engine_kwargs() -> None:
    assert resolve(ModelConfig(name="qwen3:0.6b"), "gpu").engine_kwargs == {
        "gpu_memory_utilization": 0.5,
        "max_model_len": 32768,
        "reasoning_parser": "qwen3",
    }


def test_resolve_catalog_name_with_own_source_detects_parsers() -> None:
    model = resolve(ModelConfig(name="qwen3:0.6b", source="someorg/qwen3-finetune"), "gpu")
    assert model.tool_parser == DETECT
    assert model.engine_kwargs == {}
    assert model.think_default is True


@pytest.mark.parametrize(
    ("fields", "tool_parser", "engine_kwargs", "think_default"),
    [
        ({"tool_parser": "mistral"}, "mistral", {"reasoning_parser": "qwen3"}, True),
        ({"tool_parser": "none"}, None, {"reasoning_parser": "qwen3"}, True),
        ({"reasoning_parser": "none"}, "hermes", {}, True),
        ({"reasoning_parser": "deepseek_r1"}, "hermes", {"reasoning_parser": "deepseek_r1"}, True),
        ({"think": False}, "hermes", {"reasoning_parser": "qwen3"}, False),
        ({"think": True}, "hermes", {"reasoning_parser": "qwen3"}, True),
        # engine_kwargs is vLLM's own: its reasoning_parser wins over the catalog's and over "none".
        ({"engine_kwargs": {"reasoning_parser": "deepseek_r1"}}, "hermes", {"reasoning_parser": "deepseek_r1"}, True),
        (
            {"reasoning_parser": "none", "engine_kwargs": {"reasoning_parser": "deepseek_r1"}},
            "hermes",
            {"reasoning_parser": "deepseek_r1"},
            True,
        ),
    ],
)
def test_resolve_config_chat_fields_override_catalog(
    fields: dict[str, Any], tool_parser: str | None, engine_kwargs: dict[str, Any], think_default: bool
) -> None:
    model = resolve(ModelConfig.model_validate({"name": "qwen3:0.6b", "max_model_len": 1024, **fields}), "gpu")
    assert model.tool_parser == tool_parser
    assert model.engine_kwargs == {"gpu_memory_utilization": 0.5, "max_model_len": 1024, **engine_kwargs}
    assert model.think_default is think_default


@pytest.mark.parametrize(
    ("fields", "tool_parser", "engine_kwargs", "think_default"),
    [
        ({}, "hermes", {"reasoning_parser": "qwen3"}, False),
        ({"tool_parser": "none", "reasoning_parser": "none"}, None, {}, False),
        ({"think": True}, "hermes", {"reasoning_parser": "qwen3"}, True),
        ({"tool_parser": "llama3_json"}, "llama3_json", {"reasoning_parser": "qwen3"}, False),
    ],
)
def test_resolve_config_chat_fields_override_random(
    fields: dict[str, Any], tool_parser: str | None, engine_kwargs: dict[str, Any], think_default: bool
) -> None:
    model = resolve(ModelConfig.model_validate({"name": "vllama-tiny", **fields}), "gpu")
    assert model.tool_parser == tool_parser
    assert model.engine_kwargs == {"dtype": "float32", "max_model_len": 32768, "gpu_memory_utilization": 0.1,
                                   **engine_kwargs}
    assert model.think_default is think_default


@pytest.mark.parametrize(
    ("fields", "tool_parser", "engine_kwargs"),
    [
        ({}, "auto", {}),
        ({"tool_parser": "hermes"}, "hermes", {}),
        ({"tool_parser": "none"}, None, {}),
        ({"reasoning_parser": "qwen3"}, "auto", {"reasoning_parser": "qwen3"}),
        ({"reasoning_parser": "none"}, "auto", {}),
    ],
)
def test_resolve_local_dir_chat_fields(
    tmp_path: Path, fields: dict[str, Any], tool_parser: str | None, engine_kwargs: dict[str, Any]
) -> None:
    (tmp_path / "config.json").write_text("{}")
    model = resolve(ModelConfig.model_validate({"name": "mine", "source": str(tmp_path), **fields}), "gpu")
    assert model.tool_parser == tool_parser
    assert model.engine_kwargs == engine_kwargs


def test_model_config_chat_fields_default_unset() -> None:
    model = ModelConfig(name="m")
    assert (model.tool_parser, model.reasoning_parser, model.think) == (None, None, None)
    assert "tool_parser" not in model.engine_flags()


@pytest.mark.parametrize(("field", "value"), [("tool_parser", 3), ("reasoning_parser", ["qwen3"]), ("think", "maybe")])
def test_model_config_chat_fields_typed(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match=field):
        ModelConfig.model_validate({"name": "m", field: value})


# --- weights fetched by `vllama pull` ---------------------------------------------------------------


def _pulled(home: Path, repo: str, *, config: bool = True) -> Path:
    directory = pulled_dir(home, repo)
    directory.mkdir(parents=True)
    if config:
        (directory / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    return directory


def test_pulled_dir_layout(tmp_path: Path) -> None:
    expected = tmp_path / "models" / "hub" / "Qwen--Qwen2.5-1.5B-Instruct"
    assert pulled_dir(tmp_path, "Qwen/Qwen2.5-1.5B-Instruct") == expected


def test_resolve_prefers_pulled_catalog_model(_own_home: Path) -> None:
    directory = _pulled(_own_home, "Qwen/Qwen2.5-1.5B-Instruct")
    assert directory == _own_home / "models" / "hub" / "Qwen--Qwen2.5-1.5B-Instruct"
    model = resolve(ModelConfig(name="qwen2.5:1.5b"), "gpu")
    assert model.source == str(directory.resolve())
    # Still the catalog's model: its engine defaults, family and parsers stay.
    assert model.engine_kwargs == {"gpu_memory_utilization": 0.5, "max_model_len": 32768}
    assert (model.family, model.parameter_size, model.tool_parser) == ("qwen2", "1.5B", "hermes")
    assert model.local_source() == str(directory.resolve())


def test_resolve_pulled_thinking_model_keeps_reasoning_parser(_own_home: Path) -> None:
    directory = _pulled(_own_home, "Qwen/Qwen3-0.6B")
    model = resolve(ModelConfig(name="qwen3:0.6b"), "gpu")
    assert model.source == str(directory.resolve())
    assert model.engine_kwargs["reasoning_parser"] == "qwen3"
    assert model.tool_parser == "hermes"


def test_resolve_prefers_pulled_repo_id_source(_own_home: Path) -> None:
    directory = _pulled(_own_home, "org/model")
    assert resolve(ModelConfig(name="org/model", source="org/model"), "gpu").source == str(directory.resolve())


def test_resolve_ignores_pulled_dir_without_config_json(_own_home: Path) -> None:
    _pulled(_own_home, "Qwen/Qwen2.5-1.5B-Instruct", config=False)
    assert resolve(ModelConfig(name="qwen2.5:1.5b"), "gpu").source == "Qwen/Qwen2.5-1.5B-Instruct"


def test_resolve_pulled_dir_of_another_model_not_used(_own_home: Path) -> None:
    _pulled(_own_home, "Qwen/Qwen2.5-0.5B-Instruct")
    assert resolve(ModelConfig(name="qwen2.5:1.5b"), "gpu").source == "Qwen/Qwen2.5-1.5B-Instruct"


def test_resolve_random_never_uses_pulled_dir(_own_home: Path) -> None:
    _pulled(_own_home, "random:tiny")
    assert resolve(ModelConfig(name="vllama-tiny"), "cpu").source == "random:tiny"


# --- cache dir and random models --------------------------------------------------------------------


def test_cache_dir_follows_vllama_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLAMA_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "models"


def test_local_source_of_hf_model_is_the_source() -> None:
    assert resolve(ModelConfig(name="qwen2.5:1.5b"), "gpu").local_source() == "Qwen/Qwen2.5-1.5B-Instruct"


def test_local_source_makes_random_model_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLAMA_HOME", str(tmp_path))
    model = resolve(ModelConfig(name="vllama-tiny"), "cpu")
    path = Path(model.local_source())
    assert path == tmp_path / "models" / "random-tiny"
    assert (path / "vllama-tiny.json").is_file()
    assert (path / "config.json").is_file()
    assert list(path.glob("*.safetensors"))
    assert json.loads((path / "config.json").read_text())["model_type"] == "qwen2"
    stamp = (path / "config.json").stat().st_mtime_ns
    start = time.monotonic()
    assert Path(model.local_source()) == path
    assert time.monotonic() - start < 0.5  # reused, not rebuilt
    assert (path / "config.json").stat().st_mtime_ns == stamp
    # Nothing but the model is left in the cache (the staging directory is gone).
    assert sorted(p.name for p in path.parent.iterdir()) == ["random-tiny"]
