"""Stopping what a benchmarked or tested server left behind (Linux: reads /proc)."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def kill_started_under(ray_tmpdir: Path) -> None:
    """Kill whatever still runs with this RAY_TMPDIR in its environment. Ray Serve's HAProxy
    runs in a session and process group of its own, with no Ray path on its command line, so
    neither killing the server's process group nor matching command lines finds it; once in CI,
    after `serve run` was stopped, it outlived Ray and kept the port."""
    marker = f"RAY_TMPDIR={ray_tmpdir}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if marker in environment:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
