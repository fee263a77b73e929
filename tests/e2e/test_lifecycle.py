"""`vllama serve` with no `--model` serves the embedded offline model; Ctrl-C stops everything.
SIGTERM under load (streams in flight finish, new requests get 503): tests/e2e/test_hardening.py."""

from __future__ import annotations

import signal

import httpx
import psutil
import pytest

from tests.support import ServerProcess, free_port, short_tmpdir, tree_with_engine, vllama_command


@pytest.mark.slow
def test_default_model_then_ctrl_c() -> None:
    workdir = short_tmpdir("vt-life-")
    port = free_port()
    process = ServerProcess(
        vllama_command("serve", "--port", str(port), "--dashboard-port", "0", "--engine-arg", "enforce_eager=true"),
        workdir, port,
    )
    try:
        process.start()
        process.wait_until(lambda p: "vllama: serving" in p.log_path.read_text(errors="replace"), timeout_s=400)
        # The default first; then any model this machine has (the embedding model's package).
        assert [m["name"] for m in httpx.get(f"{process.url}/api/tags").json()["models"]][0] == "vllama-tiny:latest"
        assert [m["name"] for m in httpx.get(f"{process.url}/api/ps").json()["models"]] == ["vllama-tiny:latest"]
        engine = httpx.get(f"{process.url}/vllama/status").json()["models"]["vllama-tiny:latest"]["engine"]
        assert engine["max_num_batched_tokens"] > 0  # not given: vLLM set it for the hardware
        reply = httpx.post(f"{process.url}/api/generate", timeout=60,
                           json={"model": "vllama-tiny", "prompt": "hi", "stream": False, "options": {"num_predict": 2}})
        assert reply.json()["done"] is True

        # Everything it started: Ray's daemons and workers, the replica, vLLM's engine processes.
        tree = tree_with_engine(process.proc.pid)
        process.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert process.wait_exit(90) == 0, process.log_tail()
        assert "vllama: stopping" in process.log_path.read_text()
        _, alive = psutil.wait_procs(tree, timeout=15)
        assert alive == [], [(p.pid, p.name()) for p in alive]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{process.url}/", timeout=3)
    finally:
        process.stop()
