"""`serve run serve_configs/tiny-cpu.yaml`: Ray's own CLI starts the application from our
builder, and the Ray dashboard lists its deployments: the ingress and the model's engines."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import ServerProcess, available_names, free_port, short_tmpdir

CONFIG = Path(__file__).resolve().parents[2] / "serve_configs" / "tiny-cpu.yaml"


@pytest.mark.slow
def test_serve_run_cpu_config() -> None:
    workdir = short_tmpdir("vt-run-")
    config = yaml.safe_load(CONFIG.read_text())
    port = free_port()
    config["http_options"]["port"] = port
    env_vars = config["controller_options"]["runtime_env"]["env_vars"]
    for name in ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                 "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT"):
        env_vars[name] = str(free_port())  # two servers on one machine must not share ports
    config["applications"][0]["args"]["models"][0].setdefault("engine_kwargs", {})["enforce_eager"] = True
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    serve = shutil.which("serve", path=str(Path(sys.executable).parent))
    process = ServerProcess([serve, "run", str(workdir / "config.yaml")], workdir, port)
    try:
        process.start()
        process.wait_until(lambda p: httpx.get(f"{p.url}/api/tags", timeout=3).status_code == 200, timeout_s=600)
        tags = httpx.get(f"{process.url}/api/tags").json()["models"]
        names = [m["name"] for m in tags]
        assert names[0] == "vllama-tiny:latest"  # the configuration's models first, then what the machine has
        assert set(names[1:]) == available_names(workdir / "home") - {"vllama-tiny:latest"}
        answer = httpx.post(f"{process.url}/api/generate", timeout=60,
                            json={"model": "vllama-tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 3}})
        assert answer.status_code == 200 and answer.json()["done"] is True
        log = re.sub(r"\x1b\[[0-9;]*m", "", process.log_path.read_text(errors="replace"))  # colours
        dashboard = re.search(r"dashboard at (?:http://)?([\d.]+:\d+)", log)
        assert dashboard, process.log_tail()
        # Ray 2.60 guards its dashboard with a token it keeps in ~/.ray/auth_token.
        token_file = Path.home() / ".ray" / "auth_token"
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"} if token_file.exists() else {}
        applications = httpx.get(f"http://{dashboard.group(1)}/api/serve/applications/", headers=headers, timeout=10).json()
        deployments = applications["applications"]["vllama"]["deployments"]
        assert sorted(deployments) == ["Ingress", "ModelServer:vllama-tiny:latest"]
        assert all(d["status"] == "HEALTHY" for d in deployments.values())
        process.stop()
        assert process.proc.returncode is not None
    finally:
        process.stop()
