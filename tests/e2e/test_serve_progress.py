"""`vllama serve` tells each model's load as it goes: with its output in a file (not a terminal),
one plain line per phase, in order, then the load's time, before it says it serves."""

from __future__ import annotations

import re

import pytest

from tests.support import vllama_server


@pytest.mark.slow
def test_plain_lines_tell_the_phases_of_a_real_load() -> None:
    # With torch.compile (no enforce_eager), so the compiling phase is there to tell.
    with vllama_server("vt-progress-", "--dashboard-port", "0") as server:
        log = server.log_path.read_text(errors="replace")
    told = [line.removeprefix("vllama: vllama-tiny:latest: ")
            for line in log.splitlines() if line.startswith("vllama: vllama-tiny:latest: ")]
    assert told[:3] == ["loading weights", "compiling", "warming up"], log[-3000:]
    assert len(told) == 4 and re.fullmatch(r"ready in \d+\.\d s", told[3]), told
    assert log.index("vllama: vllama-tiny:latest: ready in") < log.index("vllama: serving")
    assert "\x1b[" not in "".join(line for line in log.splitlines() if line.startswith("vllama:"))  # no drawing
