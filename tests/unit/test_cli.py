"""`vllama serve`: flags -> build_app args, without Ray or vLLM."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import vllama
from vllama.cli.main import app
from vllama.cli.serve import build_config, local_model_name, model_entry, parse_engine_arg
from vllama.config import ENGINE_FLAGS, ServingConfig

NO_FLAGS: dict[str, Any] = {key: None for key in ENGINE_FLAGS}


def build(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "models": [],
        "config_file": None,
        "flags": NO_FLAGS,
        "engine_args": [],
        "accelerator": "auto",
        "num_replicas": None,
    }
    args.update(kw)
    return build_config(**args)


# --- build_config ------------------------------------------------------------------------------------


def test_default_model() -> None:
    args = build()
    assert args == {"models": [{"name": "vllama-tiny:latest", "deployment": {"max_constructor_retry_count": 1}}]}
    ServingConfig.model_validate(args)


def test_lifecycle_flags() -> None:
    args = build(models=["a=/m/a", "b=/m/b"], load="demand", keep_alive="10m", load_timeout="1m",
                 max_loaded_models=1, max_queue=8)
    assert [m["load"] for m in args["models"]] == ["demand", "demand"]
    assert (args["keep_alive"], args["load_timeout"], args["max_loaded_models"], args["max_queue"]) == ("10m", "1m", 1, 8)
    config = ServingConfig.model_validate(args)
    assert config.model_keep_alive(config.models[0]) == 600.0 and config.load_timeout == 60.0


def test_only_configured_models() -> None:
    """By default the models on this machine that the command line does not name are served too
    (the config's default); `--only-configured` turns that off."""
    assert "available_models" not in build()
    assert ServingConfig.model_validate(build()).available_models is True
    args = build(available_models=False)
    assert ServingConfig.model_validate(args).available_models is False


def test_lifecycle_flags_from_ollamas_environment(monkeypatch: Any) -> None:
    """OLLAMA_KEEP_ALIVE, OLLAMA_LOAD_TIMEOUT, OLLAMA_MAX_LOADED_MODELS, OLLAMA_MAX_QUEUE, as Ollama reads them."""
    from typer.testing import CliRunner

    from vllama.cli import serve as serve_module
    from vllama.cli.main import app

    seen: dict[str, Any] = {}
    monkeypatch.setattr("vllama.serve.runner.run_foreground", lambda args, **_: seen.update(args) or 0)
    env = {"OLLAMA_KEEP_ALIVE": "-1", "OLLAMA_LOAD_TIMEOUT": "30s", "OLLAMA_MAX_LOADED_MODELS": "2", "OLLAMA_MAX_QUEUE": "3"}
    result = CliRunner().invoke(app, ["serve", "--model", "vllama-tiny"], env=env)
    assert result.exit_code == 0, result.output
    assert serve_module is not None
    assert (seen["keep_alive"], seen["load_timeout"], seen["max_loaded_models"], seen["max_queue"]) == (-1.0, "30s", 2, 3)


def test_flags_applied_to_every_model() -> None:
    flags = {**NO_FLAGS, "gpu_memory_utilization": 0.6, "max_num_seqs": 32, "enable_prefix_caching": False}
    args = build(models=["qwen2.5:1.5b", "qwen2.5:0.5b"], flags=flags)
    assert [m["name"] for m in args["models"]] == ["qwen2.5:1.5b", "qwen2.5:0.5b"]
    for model in args["models"]:
        assert model["gpu_memory_utilization"] == 0.6
        assert model["max_num_seqs"] == 32
        assert model["enable_prefix_caching"] is False
        assert "max_model_len" not in model
        assert model["deployment"]["max_constructor_retry_count"] == 1
    ServingConfig.model_validate(args)


def test_embedding_models_keep_their_own_context() -> None:
    flags = {**NO_FLAGS, "max_model_len": 4096, "max_num_seqs": 32, "enable_prefix_caching": True}
    args = build(models=["qwen2.5:1.5b", "all-minilm", "emb=/models/e"], flags=flags)
    generating, catalog_embedding, unknown = args["models"]
    assert generating["max_model_len"] == 4096 and generating["enable_prefix_caching"] is True
    assert "max_model_len" not in catalog_embedding and "enable_prefix_caching" not in catalog_embedding
    assert catalog_embedding["max_num_seqs"] == 32
    assert unknown["max_model_len"] == 4096  # not known to embed: a config says `runner: pooling`
    ServingConfig.model_validate(args)


def test_engine_args_parsed_as_yaml() -> None:
    args = build(
        models=["qwen2.5:1.5b"],
        engine_args=["enforce-eager=true", "max-loras=4", "kv_cache_dtype=fp8", "hf_overrides={rope_theta: 1000}"],
    )
    assert args["models"][0]["engine_kwargs"] == {
        "enforce_eager": True,
        "max_loras": 4,
        "kv_cache_dtype": "fp8",
        "hf_overrides": {"rope_theta": 1000},
    }


def test_num_replicas_and_accelerator() -> None:
    args = build(models=["qwen2.5:1.5b"], num_replicas=3, accelerator="cpu")
    assert args["models"][0]["deployment"] == {"num_replicas": 3, "max_constructor_retry_count": 1}
    assert args["accelerator"] == "cpu"
    assert "accelerator" not in build()


SERVE_YAML = """
proxy_location: EveryNode
applications:
  - name: vllama
    import_path: vllama:build_app
    args:
      accelerator: gpu
      models:
        - name: qwen2.5:1.5b
          engine_kwargs: {enforce_eager: true}
          deployment: {max_constructor_retry_count: 3}
        - name: smollm2:135m
          max_num_seqs: 8
"""

BARE_YAML = """
models:
  - name: mine
    source: random:tiny
    parameters: {temperature: 0.1}
"""


def test_config_file_serve_yaml(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(SERVE_YAML)
    args = build(config_file=path, engine_args=["max-num-seqs=4"], flags={**NO_FLAGS, "max_model_len": 1024})
    assert args["accelerator"] == "gpu"
    first, second = args["models"]
    assert first["name"] == "qwen2.5:1.5b"
    assert first["engine_kwargs"] == {"enforce_eager": True, "max_num_seqs": 4}
    assert first["deployment"]["max_constructor_retry_count"] == 3  # the file's value is kept
    assert first["max_model_len"] == second["max_model_len"] == 1024
    assert second["max_num_seqs"] == 8
    assert second["deployment"]["max_constructor_retry_count"] == 1


def test_config_file_bare(tmp_path: Path) -> None:
    path = tmp_path / "vllama.yaml"
    path.write_text(BARE_YAML)
    args = build(config_file=path)
    assert args["models"] == [
        {
            "name": "mine",
            "source": "random:tiny",
            "parameters": {"temperature": 0.1},
            "deployment": {"max_constructor_retry_count": 1},
        }
    ]
    ServingConfig.model_validate(args)


def test_models_flag_replaces_config_file_models(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text(SERVE_YAML)
    args = build(config_file=path, models=["qwen2.5:0.5b"])
    assert [m["name"] for m in args["models"]] == ["qwen2.5:0.5b"]
    assert args["accelerator"] == "gpu"


def test_empty_config_file_gives_default_model(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert build(config_file=path)["models"][0]["name"] == "vllama-tiny:latest"


SERVE_CONFIGS = sorted((Path(__file__).resolve().parents[2] / "serve_configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SERVE_CONFIGS, ids=lambda p: p.name)
def test_repo_serve_configs_validate(path: Path) -> None:
    # Every serve config shipped with the project must pass the typed config, as `serve run`
    # (the file's args) and as `vllama serve --config` (through build_config) read it.
    from vllama.models.resolve import resolve

    data = yaml.safe_load(path.read_text())
    config = ServingConfig.model_validate(data["applications"][0]["args"])
    for model in config.models:
        assert resolve(model, "gpu").source
    ServingConfig.model_validate(build(config_file=path))


# --- model_entry --------------------------------------------------------------------------------------


def test_model_entry_name_equals_source() -> None:
    assert model_entry("mine=/models/x") == {"name": "mine", "source": "/models/x"}
    assert model_entry("a:b=org/repo=v2") == {"name": "a:b", "source": "org/repo=v2"}


def test_model_entry_local_dir(tmp_path: Path) -> None:
    directory = tmp_path / "My Model v1.0"
    directory.mkdir()
    assert model_entry(str(directory)) == {"name": "my-model-v1.0:latest", "source": str(directory)}


@pytest.mark.parametrize(
    ("spec", "entry"),
    [
        ("qwen2.5:1.5b", {"name": "qwen2.5:1.5b"}),
        ("qwen2.5", {"name": "qwen2.5"}),
        ("vllama-tiny", {"name": "vllama-tiny"}),
        ("vllama-tiny:large", {"name": "vllama-tiny:large"}),
        ("Qwen/Qwen2.5-0.5B-Instruct", {"name": "Qwen/Qwen2.5-0.5B-Instruct", "source": "Qwen/Qwen2.5-0.5B-Instruct"}),
        ("unknown", {"name": "unknown"}),
    ],
)
def test_model_entry(spec: str, entry: dict[str, Any]) -> None:
    assert model_entry(spec) == entry


@pytest.mark.parametrize(
    ("dirname", "name"),
    [("Qwen2.5-0.5B", "qwen2.5-0.5b:latest"), ("-weird-", "weird:latest"), ("a b  c", "a-b-c:latest"), ("@@", "model:latest")],
)
def test_local_model_name(tmp_path: Path, dirname: str, name: str) -> None:
    assert local_model_name(tmp_path / dirname) == name


# --- parse_engine_arg ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("enforce-eager=true", ("enforce_eager", True)),
        ("max_loras=4", ("max_loras", 4)),
        ("swap-space=1.5", ("swap_space", 1.5)),
        ("kv-cache-dtype=fp8", ("kv_cache_dtype", "fp8")),
        ("x=", ("x", None)),
        ("x=a=b", ("x", "a=b")),
        ("x=[1, 2]", ("x", [1, 2])),
        (" spaced =1", ("spaced", 1)),
    ],
)
def test_parse_engine_arg(text: str, pair: tuple[str, Any]) -> None:
    assert parse_engine_arg(text) == pair


@pytest.mark.parametrize("text", ["novalue", "=1", ""])
def test_parse_engine_arg_errors(text: str) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_engine_arg(text)


# --- the Typer application ----------------------------------------------------------------------------

WIDE = {"COLUMNS": "240", "TERMINAL_WIDTH": "240", "NO_COLOR": "1"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_help() -> None:
    result = CliRunner().invoke(app, ["--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "serve" in result.output


@pytest.mark.parametrize(
    "flag",
    [
        "--gpu-memory-utilization",
        "--max-num-seqs",
        "--max-num-batched-tokens",
        "--max-model-len",
        "--enable-prefix-caching",
        "--tensor-parallel-size",
        "--port",
        "--host",
        "--model",
        "--engine-arg",
        "--config",
    ],
)
def test_serve_help_lists_flags(flag: str) -> None:
    result = CliRunner().invoke(app, ["serve", "--help"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert flag in ANSI.sub("", result.output)


def test_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == vllama.__version__


@pytest.fixture
def no_foreground(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    import vllama.serve.runner

    calls: list[Any] = []

    def forbidden(*args: Any, **kwargs: Any) -> int:
        calls.append((args, kwargs))
        raise AssertionError("run_foreground must not be called for an invalid configuration")

    monkeypatch.setattr(vllama.serve.runner, "run_foreground", forbidden)
    return calls


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["serve", "--gpu-memory-utilization", "1.5"], "gpu_memory_utilization"),
        (["serve", "--max-num-seqs", "0"], "max_num_seqs"),
        (["serve", "--model", "a/b/c/d"], "invalid model name"),
        (["serve", "--engine-arg", "novalue"], "KEY=VALUE"),
        (["serve", "--model", "m=random:tiny", "--model", "M=random:tiny"], "same name"),
        (["serve", "--accelerator", "tpu"], "accelerator"),
    ],
)
def test_serve_invalid_config_exits_2(no_foreground: list[Any], argv: list[str], needle: str) -> None:
    result = CliRunner().invoke(app, argv, env=WIDE)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert needle in result.output
    assert no_foreground == []


def test_serve_valid_config_reaches_run_foreground(monkeypatch: pytest.MonkeyPatch) -> None:
    import vllama.serve.runner

    seen: dict[str, Any] = {}

    def fake(args: dict[str, Any], **kwargs: Any) -> int:
        seen.update(args=args, **kwargs)
        return 0

    monkeypatch.setattr(vllama.serve.runner, "run_foreground", fake)
    result = CliRunner().invoke(
        app, ["serve", "--max-model-len", "1024", "--port", "12345", "--host", "0.0.0.0", "--no-haproxy"], env=WIDE
    )
    assert result.exit_code == 0, result.output
    assert seen["port"] == 12345 and seen["host"] == "0.0.0.0" and seen["haproxy"] is False
    assert seen["args"]["models"][0] == {
        "name": "vllama-tiny:latest",
        "max_model_len": 1024,
        "deployment": {"max_constructor_retry_count": 1},
    }


def test_stream_interval_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "stream_interval_ms" not in build()  # the config's default
    import vllama.serve.runner

    seen: dict[str, Any] = {}
    monkeypatch.setattr(vllama.serve.runner, "run_foreground", lambda args, **_: seen.update(args) or 0)
    result = CliRunner().invoke(app, ["serve", "--stream-interval-ms", "0"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert seen["stream_interval_ms"] == 0
    assert ServingConfig.model_validate(seen).stream_interval_ms == 0


def test_access_log_flag() -> None:
    assert "access_log" not in build()  # Serve's default
    args = build(access_log=False)
    assert args["access_log"] is False
    assert ServingConfig.model_validate(args).access_log is False


# --- replicas, routing, failover -------------------------------------------------------------------

AUTOSCALED_YAML = """
models:
  - name: qwen2.5:1.5b
    deployment:
      autoscaling_config: {min_replicas: 1, max_replicas: 4, target_ongoing_requests: 16}
"""

FIXED_YAML = """
models:
  - name: qwen2.5:1.5b
    deployment: {num_replicas: 2, max_constructor_retry_count: 2}
"""


@pytest.mark.parametrize(
    ("min_replicas", "max_replicas", "autoscaling"),
    [
        (1, 4, {"min_replicas": 1, "max_replicas": 4}),
        (0, 2, {"min_replicas": 0, "max_replicas": 2}),  # scale to zero
        (3, None, {"min_replicas": 3, "max_replicas": 3}),  # at least the minimum
        (0, None, {"min_replicas": 0, "max_replicas": 1}),
        (None, 5, {"max_replicas": 5}),
    ],
)
def test_min_max_replicas_autoscale(
    min_replicas: int | None, max_replicas: int | None, autoscaling: dict[str, int]
) -> None:
    args = build(models=["qwen2.5:1.5b", "qwen2.5:0.5b"], min_replicas=min_replicas, max_replicas=max_replicas)
    for model in args["models"]:
        assert model["deployment"] == {"autoscaling_config": autoscaling, "max_constructor_retry_count": 1}
    ServingConfig.model_validate(args)


def test_min_max_replicas_replace_a_config_files_num_replicas(tmp_path: Path) -> None:
    path = tmp_path / "fixed.yaml"
    path.write_text(FIXED_YAML)
    args = build(config_file=path, min_replicas=1, max_replicas=3)
    assert args["models"][0]["deployment"] == {
        "autoscaling_config": {"min_replicas": 1, "max_replicas": 3},
        "max_constructor_retry_count": 2,
    }
    ServingConfig.model_validate(args)


def test_min_max_replicas_keep_a_config_files_other_autoscaling(tmp_path: Path) -> None:
    path = tmp_path / "autoscaled.yaml"
    path.write_text(AUTOSCALED_YAML)
    args = build(config_file=path, max_replicas=8)
    assert args["models"][0]["deployment"]["autoscaling_config"] == {
        "min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": 16,
    }
    ServingConfig.model_validate(args)


def test_num_replicas_replaces_a_config_files_autoscaling(tmp_path: Path) -> None:
    path = tmp_path / "autoscaled.yaml"
    path.write_text(AUTOSCALED_YAML)
    assert "autoscaling_config" in build(config_file=path)["models"][0]["deployment"]  # the file's, kept
    args = build(config_file=path, num_replicas=2)
    assert args["models"][0]["deployment"] == {"num_replicas": 2, "max_constructor_retry_count": 1}
    ServingConfig.model_validate(args)


@pytest.mark.parametrize(("min_replicas", "max_replicas"), [(1, None), (None, 4), (1, 4)])
def test_num_replicas_with_min_max_is_refused(min_replicas: int | None, max_replicas: int | None) -> None:
    with pytest.raises(ValueError, match="pick one"):
        build(num_replicas=2, min_replicas=min_replicas, max_replicas=max_replicas)


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"routing": "least_loaded"}, {"routing": "least_loaded"}),
        ({"routing": "prefix"}, {"routing": "prefix"}),
        ({"failover": False}, {"failover": False}),
        ({"failover": True}, {"failover": True}),
        ({"routing": "least_loaded", "failover": False}, {"routing": "least_loaded", "failover": False}),
    ],
)
def test_routing_and_failover_flags(kw: dict[str, Any], expected: dict[str, Any]) -> None:
    args = build(**kw)
    assert {k: args[k] for k in ("routing", "failover") if k in args} == expected
    config = ServingConfig.model_validate(args)
    assert config.routing == expected.get("routing", "prefix")
    assert config.failover is expected.get("failover", True)


def test_routing_and_failover_default_to_the_config() -> None:
    args = build()
    assert "routing" not in args and "failover" not in args
    config = ServingConfig.model_validate(args)
    assert config.routing == "prefix" and config.failover is True


def test_routing_flag_overrides_a_config_file(tmp_path: Path) -> None:
    path = tmp_path / "vllama.yaml"
    path.write_text("routing: least_loaded\nfailover: false\nmodels: [{name: qwen2.5:1.5b}]\n")
    assert build(config_file=path)["routing"] == "least_loaded"
    args = build(config_file=path, routing="prefix", failover=True)
    assert args["routing"] == "prefix" and args["failover"] is True


def test_bad_routing_fails_validation() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="routing"):
        ServingConfig.model_validate(build(routing="random"))


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["serve", "--num-replicas", "2", "--max-replicas", "4"], "pick one"),
        (["serve", "--routing", "random"], "routing"),
    ],
)
def test_serve_refuses_bad_replica_and_routing_flags(no_foreground: list[Any], argv: list[str], needle: str) -> None:
    result = CliRunner().invoke(app, argv, env=WIDE)
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert needle in result.output
    assert no_foreground == []


def test_serve_passes_replica_routing_and_failover_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    import vllama.serve.runner

    seen: dict[str, Any] = {}
    monkeypatch.setattr(vllama.serve.runner, "run_foreground", lambda args, **_: seen.update(args) or 0)
    result = CliRunner().invoke(
        app,
        ["serve", "--min-replicas", "1", "--max-replicas", "3", "--routing", "least_loaded", "--no-failover"],
        env=WIDE,
    )
    assert result.exit_code == 0, result.output
    assert seen["models"][0]["deployment"]["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 3}
    assert seen["routing"] == "least_loaded" and seen["failover"] is False
