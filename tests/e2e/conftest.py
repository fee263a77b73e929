"""One real application for the whole test session: `vllama serve` (Ray Serve in HAProxy mode,
two vLLM engines on the CPU) spoken to over HTTP by the real `ollama` and `openai` clients.

The first model is the application's ingress (served in the replica that received the request);
the second is reached through a forwarded Ray hop, so both request paths are covered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support import ServerProcess, free_port, short_tmpdir, vllama_command

PRIMARY = "vllama-tiny:latest"
SECOND = "tiny-two:latest"
APP_CONFIG = {
    "models": [
        # enforce_eager: no torch.compile, so an engine starts in ~20 s instead of ~45 s.
        {"name": PRIMARY, "engine_kwargs": {"enforce_eager": True}},
        {"name": SECOND, "source": "random:tiny", "engine_kwargs": {"enforce_eager": True}},
    ]
}


def _ready(server: ServerProcess) -> bool:
    response = httpx.get(f"{server.url}/vllama/status", timeout=3)
    return response.status_code == 200 and len(response.json()["models"]) == 2


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    workdir = short_tmpdir("vt-e2e-")
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump(APP_CONFIG))
    port = free_port()
    process = ServerProcess(
        vllama_command("serve", "--config", str(config), "--port", str(port), "--dashboard-port", "0"), workdir, port
    )
    try:
        process.start()
        process.wait_until(_ready, timeout_s=600)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def base_url(server: ServerProcess) -> str:
    return server.url


@pytest.fixture(scope="session")
def model_dir(server: ServerProcess) -> Path:
    """The random model's files, as the server made them (for comparisons with transformers)."""
    return server.workdir / "home" / "models" / "random-tiny"


@pytest.fixture(scope="session")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        yield client
