"""The seed's engine flags given to `vllama serve` are what the engines run with."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import PRIMARY, SECOND


def test_engines_run_with_the_command_line_flags(http: httpx.Client) -> None:
    models = http.get("/vllama/status").json()["models"]
    for name in (PRIMARY, SECOND):
        engine = models[name]["engine"]
        assert engine["gpu_memory_utilization"] == 0.1
        assert engine["max_num_seqs"] == 64
        assert engine["max_num_batched_tokens"] == 4096
        assert engine["max_model_len"] == 2048
        assert engine["enable_prefix_caching"] is True
        assert engine["tensor_parallel_size"] == 1
        assert engine["dtype"] == "float32"  # the CPU default (bf16 kernels crash on some VMs)
