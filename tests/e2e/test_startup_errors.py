"""A bad engine setting stops `vllama serve` at start, with a message that says what to change."""

from __future__ import annotations

import pytest

from tests.support import ServerProcess, free_port, short_tmpdir, vllama_command


def run_to_exit(*flags: str) -> tuple[int | None, str]:
    workdir = short_tmpdir("vt-bad-")
    port = free_port()
    process = ServerProcess(
        vllama_command("serve", "--port", str(port), "--dashboard-port", "0",
                       "--engine-arg", "enforce_eager=true", *flags), workdir, port,
    )
    try:
        process.start()
        code = process.wait_exit(timeout_s=400)
        return code, process.log_path.read_text(errors="replace")
    finally:
        process.stop()


@pytest.mark.slow
def test_context_longer_than_the_model_fails_with_advice() -> None:
    code, log = run_to_exit("--max-model-len", "100000")
    assert code == 1, log[-3000:]
    failure = log[log.index("vllama: failed to start"):].splitlines()[0]
    assert "max_model_len" in failure and "100000" in failure and "32768" in failure, failure
    assert "vllama: vllama-tiny:latest: failed: " in log  # the load's progress ends with its failure


@pytest.mark.slow
def test_no_memory_for_the_kv_cache_fails_with_advice() -> None:
    # On a CPU gpu_memory_utilization is the share of host memory; this leaves about 1 MiB.
    code, log = run_to_exit("--gpu-memory-utilization", "0.0001")
    assert code == 1, log[-3000:]
    failure = log[log.index("vllama: failed to start"):]
    assert "Raise --gpu-memory-utilization" in failure.split("vllama: stopping")[0], failure[:3000]


@pytest.mark.slow
def test_a_memory_share_the_machine_cannot_give_fails_with_advice() -> None:
    # On a CPU gpu_memory_utilization is the share of host memory: 0.99 is more than is free
    # on any machine that runs anything else. vLLM's worker says so in a child process; the
    # cause, not "Engine core initialization failed", must reach the user.
    code, log = run_to_exit("--gpu-memory-utilization", "0.99")
    assert code == 1, log[-3000:]
    failure = log[log.index("vllama: failed to start"):].split("vllama: stopping")[0]
    assert "less than desired CPU memory utilization" in failure, failure[:3000]
    assert "Lower --gpu-memory-utilization (now 0.99)" in failure, failure[:3000]
