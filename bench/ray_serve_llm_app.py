"""Serve a model with Ray Serve LLM's `build_openai_app`, for the benchmark harness.

    python bench/ray_serve_llm_app.py --model-dir DIR --name NAME --port P [--best]

Defaults: Ray Serve LLM as shipped (Serve's HTTP proxy -> OpenAiIngress -> LLMServer, chunks
batched every 50 ms). `--best`: the settings Ray documents for lowest overhead: HAProxy mode,
direct streaming (LLMServer answers HTTP itself) and no batching interval. Engine settings are
the same as every other server in the harness (`--engine-kwargs` JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--engine-kwargs", default="{}")
    parser.add_argument("--best", action="store_true")
    args = parser.parse_args()

    if args.best:
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        os.environ["RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING"] = "1"
    # Same process priority as vllama's own runner gives its engines (bench fairness).
    os.environ.setdefault("RAY_worker_niceness", "0")

    import ray
    from ray import serve
    from ray.serve.llm import LLMConfig, build_openai_app

    ray.init(num_cpus=8, include_dashboard=False)  # logical CPUs: 2 real ones fit nothing
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    config = LLMConfig(
        model_loading_config={"model_id": args.name, "model_source": args.model_dir},
        engine_kwargs=json.loads(args.engine_kwargs),
        deployment_config={"num_replicas": 1},
        log_engine_metrics=False,
        experimental_configs={"stream_batching_interval_ms": 0} if args.best else {},
        # Ray Serve LLM reserves a GPU per engine by default; without one the replica would wait
        # for it forever. On a GPU machine keep its default.
        placement_group_config=None if _has_gpu() else {"bundles": [{"CPU": 1}]},
    )
    serve.run(build_openai_app({"llm_configs": [config]}), name="llm", route_prefix="/")
    print("ray-serve-llm: ready", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()


def _has_gpu() -> bool:
    import shutil
    import subprocess

    return shutil.which("nvidia-smi") is not None and subprocess.run(["nvidia-smi", "-L"], capture_output=True).returncode == 0


if __name__ == "__main__":
    main()
