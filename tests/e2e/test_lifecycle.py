"""`vllama serve` with no `--model` serves the embedded offline model; Ctrl-C stops everything,
and SIGTERM (what a container runtime or systemd sends) lets the streams in flight finish first."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import orjson
import psutil
import pytest

from tests.support import ServerProcess, free_port, short_tmpdir, vllama_command


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
        tree = _tree_with_engine(process.proc.pid)
        process.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert process.wait_exit(90) == 0, process.log_tail()
        assert "vllama: stopping" in process.log_path.read_text()
        _, alive = psutil.wait_procs(tree, timeout=15)
        assert alive == [], [(p.pid, p.name()) for p in alive]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{process.url}/", timeout=3)
    finally:
        process.stop()


def _tree_with_engine(pid: int, timeout_s: float = 30) -> list[psutil.Process]:
    """The server's process tree once vLLM's engine process is in it, or a failure that shows the
    whole tree. Asked again for a while: one CI run's single snapshot lacked the engine, with no
    more shown than the first names; the next failure, if any, says where everything was."""
    deadline = time.monotonic() + timeout_s
    while True:
        tree = psutil.Process(pid).children(recursive=True)
        if any("EngineCore" in " ".join(_cmdline(p)) or "VLLM" in _name(p) for p in tree):
            return tree
        if time.monotonic() > deadline:
            pytest.fail("no vLLM engine process under the server: " + "; ".join(
                f"{p.pid}<-{_ppid(p)} {_name(p)} {' '.join(_cmdline(p))[:100]}" for p in tree))
        time.sleep(1)


def _name(proc: psutil.Process) -> str:
    try:
        return proc.name()
    except psutil.Error:
        return "?"


def _ppid(proc: psutil.Process) -> int:
    try:
        return proc.ppid()
    except psutil.Error:
        return -1


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


@pytest.mark.slow
def test_sigterm_lets_streams_in_flight_finish() -> None:
    workdir = short_tmpdir("vt-term-")
    port = free_port()
    process = ServerProcess(
        vllama_command("serve", "--port", str(port), "--dashboard-port", "0", "--engine-arg", "enforce_eager=true",
                       "--gpu-memory-utilization", "0.05"),
        workdir, port,
    )
    try:
        process.start()
        process.wait_until(lambda p: "vllama: serving" in p.log_path.read_text(errors="replace"), timeout_s=400)
        lines: list[dict] = []
        failure: list[BaseException] = []

        def stream() -> None:
            body = {"model": "vllama-tiny", "prompt": "a long answer", "options": {"num_predict": 600, "ignore_eos": True}}
            try:
                with httpx.stream("POST", f"{process.url}/api/generate", json=body, timeout=120) as response:
                    lines.extend(orjson.loads(line) for line in response.iter_lines() if line.strip())
            except BaseException as exc:  # reported by the test below
                failure.append(exc)

        client = threading.Thread(target=stream)
        client.start()
        deadline = time.monotonic() + 30
        while not lines and time.monotonic() < deadline:  # the stream is under way (the reader fills `lines` at the end)
            status = httpx.get(f"{process.url}/vllama/status", timeout=10).json()
            if status["models"]["vllama-tiny:latest"]["unfinished_requests"]:
                break
            time.sleep(0.05)
        process.proc.send_signal(signal.SIGTERM)
        client.join(timeout=120)
        assert failure == [], (failure, process.log_tail())
        assert lines and lines[-1].get("done") is True and lines[-1]["eval_count"] == 600, lines[-1:]
        assert process.wait_exit(120) == 0, process.log_tail()
    finally:
        process.stop()
