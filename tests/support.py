"""Starting and stopping real servers in tests: free ports, own process group, own Ray temp dir.

Every process a test starts is stopped, on failure too: first with SIGINT (vllama and `serve
run` then shut Serve and Ray down themselves), then SIGKILL to the whole process group, then any
process still naming the server's private Ray directory, on its command line (Ray's daemons) or
in its environment (Ray Serve's HAProxy). A leftover Ray cluster would make the next run hang.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from vllama.bench.processes import kill_started_under

#: Where test servers listen: above Ray's worker ports (10002-19999), below Serve's replica HTTP
#: ports (30000 up) and the kernel's ephemeral range (32768 up). A port the kernel hands out as
#: free (bind to 0) is an ephemeral one, which any outgoing connection of Ray's may take before
#: the server binds it: once in CI, HAProxy could not bind the port a test had been given.
TEST_PORTS = range(20000, 30000)


def free_port() -> int:
    for port in random.sample(TEST_PORTS, 200):
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {TEST_PORTS}")


def available_names(home: Path) -> set[str]:
    """The models a server on `home` lists beside its configuration: what this machine has
    (model directories, pulled repositories, catalog models on disk, such as the embedding
    model the test dependencies install)."""
    from vllama.models.available import available_models
    from vllama.models.names import ModelName

    return {ModelName.parse(config.name).display for config in available_models(home)}


def short_tmpdir(prefix: str) -> Path:
    # Ray puts Unix sockets under its temp dir; their paths must stay under 107 bytes.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@dataclass
class ServerProcess:
    command: list[str]
    workdir: Path
    port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    def start(self) -> None:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "RAY_TMPDIR": str(self.workdir / "ray"),
            "VLLAMA_HOME": str(self.workdir / "home"),
            **self.env,
        }
        env.pop("RAY_ADDRESS", None)
        (self.workdir / "ray").mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        # Its own process group (so that stop() can kill all of it), but this session: Linux
        # shares CPU time between sessions ("autogroup"), and a server in a session of its own
        # left this process, the client, without the CPU for up to seconds while the engine ran
        # (docs/PERFORMANCE.md, "The client's share of the CPU").
        self.proc = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, env=env, process_group=0, cwd=self.workdir
        )

    def log_tail(self, lines: int = 60) -> str:
        """The log's last lines, after vllama's own (`vllama: failed to start: ...`), which a
        stop's noise would otherwise push out of view."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        own = [line for line in text if line.startswith("vllama: ")]
        return "\n".join([*own, "...", *text[-lines:]])

    def wait_until(self, ready: callable, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if ready(self):
                    return
            except (httpx.HTTPError, OSError):
                pass
            time.sleep(1.0)
        raise TimeoutError(f"server not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def wait_exit(self, timeout_s: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace_s: float = 60.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            if self.wait_exit(grace_s) is None:
                _killpg(self.proc.pid)
                self.wait_exit(10)
        if self.proc is not None:
            _killpg(self.proc.pid)  # anything of the group that outlived its leader
        subprocess.run(["pkill", "-9", "-f", str(self.workdir / "ray")], check=False)
        kill_started_under(self.workdir / "ray")  # HAProxy: in its own session
        shutil.rmtree(self.workdir, ignore_errors=True)


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def vllama_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vllama", *args]


def replica_http_port(server: ServerProcess, deployment: str) -> int:
    """The HTTP port of a deployment's replica, which Ray Serve's HAProxy forwards to: the port
    in Serve's direct-ingress range that the replica's process listens on."""

    assert server.proc is not None
    for proc in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            if deployment not in " ".join(proc.cmdline()) and deployment not in proc.name():
                continue
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN and 30000 <= conn.laddr.port <= 31000:
                    return int(conn.laddr.port)
        except psutil.Error:
            continue
    raise LookupError(f"no replica of {deployment} listens in Serve's direct-ingress range")


@contextlib.contextmanager
def vllama_server(
    prefix: str, *args: str, workdir: Path | None = None, env: dict[str, str] | None = None, timeout_s: float = 600
) -> Iterator[ServerProcess]:
    """`vllama serve ARGS` on a free port, in a directory of its own (a new one named after
    `prefix`, or `workdir`), ready once it says it serves; stopped on the way out, on failure too."""
    directory = workdir or short_tmpdir(prefix)
    port = free_port()
    process = ServerProcess(vllama_command("serve", *args, "--port", str(port)), directory, port, env=env or {})
    try:
        process.start()
        process.wait_until(lambda p: "vllama: serving" in p.log_path.read_text(errors="replace"), timeout_s=timeout_s)
        yield process
    finally:
        process.stop()


def tree_with_engine(pid: int, timeout_s: float = 30) -> list[psutil.Process]:
    """The server's process tree once vLLM's engine process is in it, or a failure that shows the
    whole tree. Asked again for a while: one CI run's single snapshot lacked the engine, with no
    more shown than the first names; the next failure, if any, says where everything was."""
    deadline = time.monotonic() + timeout_s
    while True:
        tree = psutil.Process(pid).children(recursive=True)
        if any("EngineCore" in " ".join(_cmdline(p)) or "VLLM" in _name(p) for p in tree):
            return tree
        if time.monotonic() > deadline:
            raise AssertionError("no vLLM engine process under the server: " + "; ".join(
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
