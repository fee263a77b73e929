"""The tests' own clean-up: a process that left the server's process group and session (as Ray
Serve's HAProxy does) is still found and stopped by the Ray directory in its environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from vllama.bench.processes import kill_started_under


def _wait_gone(proc: subprocess.Popen, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return True
        time.sleep(0.05)
    return False


def test_a_process_in_its_own_session_is_found_by_its_environment(tmp_path: Path) -> None:
    mine = tmp_path / "server" / "ray"
    other = tmp_path / "other" / "ray"
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    orphan = subprocess.Popen(sleeper, env={**os.environ, "RAY_TMPDIR": str(mine)}, start_new_session=True)
    bystander = subprocess.Popen(sleeper, env={**os.environ, "RAY_TMPDIR": str(other)}, start_new_session=True)
    try:
        time.sleep(0.2)  # its environment is readable once it has started
        kill_started_under(mine)
        assert _wait_gone(orphan)
        assert bystander.poll() is None  # another server's processes are left alone
    finally:
        for proc in (orphan, bystander):
            proc.kill()
            proc.wait()
