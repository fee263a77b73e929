"""Turn an engine that failed to start into a message that says what to change.

vLLM starts its engine core in a child process. When that child fails (too little memory for the
KV cache, a context too long for it...), the parent only gets "Engine core initialization failed.
See root cause above": the cause went to the child's stdout/stderr. `OutputTap` sends this
process's stdout and stderr (and so its children's, which inherit them) through pipes that a
thread copies on unchanged, keeping the last lines so the root cause can be found.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

_ERROR_LINE = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")
#: The process tags that vLLM and Ray put before a child's lines: "(EngineCore_DP0 pid=12)",
#: "(VllmWorker-0 pid=34)" (vLLM's CPU worker: a hyphen), "(ServeReplica:app:Model pid=56)".
_PROCESS_TAGS = re.compile(r"^(\([^()\s]+(?: pid=\d+)?\)\s*)+")
_LOG_HEADER = re.compile(r"^(ERROR|WARNING|INFO)\s+\S+\s+\S+\s+\[[^\]]*\]\s*")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class OutputTap:
    """Copies fds 1 and 2 through pipes, remembering the last `keep` lines. Installed once per
    process and left in place: the engine's children inherit the pipes for their whole life."""

    _installed: OutputTap | None = None
    _lock = threading.Lock()

    def __init__(self, keep: int = 400) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._listeners: tuple[Callable[[str], None], ...] = ()
        for fd in (1, 2):
            original = os.dup(fd)
            read_end, write_end = os.pipe()
            os.dup2(write_end, fd)
            os.close(write_end)
            threading.Thread(target=self._pump, args=(read_end, original), daemon=True, name=f"vllama-tap-{fd}").start()

    @classmethod
    def install(cls) -> OutputTap:
        with cls._lock:
            if cls._installed is None:
                cls._installed = cls()
            return cls._installed

    def _pump(self, read_end: int, original: int) -> None:
        pending = b""
        while chunk := os.read(read_end, 65536):
            os.write(original, chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            decoded = [line.decode("utf-8", "replace") for line in lines]
            self._lines.extend(decoded)
            # A listener's failure must not stop the copying: the process would block on its
            # next write once the pipe is full.
            for listener in self._listeners:
                for line in decoded:
                    with contextlib.suppress(Exception):
                        listener(line)

    def recent_lines(self) -> list[str]:
        return list(self._lines)

    def listen(self, listener: Callable[[str], None]) -> None:
        """Call `listener` with each line from now on, on the copying thread: it must be quick
        and must not write to stdout or stderr (the tap would wait on itself)."""
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def unlisten(self, listener: Callable[[str], None]) -> None:
        with self._lock:
            self._listeners = tuple(known for known in self._listeners if known != listener)  # bound methods: ==


def root_cause(lines: list[str]) -> str | None:
    """The innermost error the engine's processes printed: the last `SomeError: message` line,
    preferring a specific error over the `RuntimeError`s that wrap it on its way up."""
    errors = []
    for line in lines:
        text = _PROCESS_TAGS.sub("", _ANSI.sub("", line).strip())
        text = _LOG_HEADER.sub("", text)
        if (match := _ERROR_LINE.match(text)) and "Engine core initialization failed" not in text:
            errors.append((match.group(1), f"{match.group(1)}: {match.group(2)}"))
    specific = [message for kind, message in errors if kind != "RuntimeError"]
    if specific:
        return specific[-1]
    return errors[-1][1] if errors else None


def explain(cause: str, engine_kwargs: Mapping[str, Any]) -> str:
    """Advice, in the names of our flags and config keys, for the failures users actually hit."""
    util = engine_kwargs.get("gpu_memory_utilization", "vLLM's default 0.92")
    if "No available memory for the cache blocks" in cause:
        return (
            f"{cause}\nThe model's weights left no memory for the KV cache at gpu_memory_utilization={util}. "
            "Raise --gpu-memory-utilization (config: gpu_memory_utilization), serve a smaller model, "
            "or spread it over more GPUs with --tensor-parallel-size."
        )
    if match := re.search(r"estimated maximum model length is (\d+)", cause):
        return (
            f"{cause}\nLower --max-model-len (config: max_model_len) to {match.group(1)} or less, "
            f"or raise --gpu-memory-utilization (now {util})."
        )
    if re.search(r"requested memory for kv \(-", cause):
        return (
            f"{cause}\nAt gpu_memory_utilization={util} the weights and activations already use more than the "
            "engine's share of memory, leaving nothing for the KV cache. Raise --gpu-memory-utilization "
            "(config: gpu_memory_utilization); on a CPU it is the share of host memory."
        )
    if "less than desired CPU memory utilization" in cause or "desired GPU memory utilization" in cause:
        return (
            f"{cause}\nLower --gpu-memory-utilization (now {util}): it is the fraction of the device's memory "
            "this engine takes, and other processes or engines already hold part of it. On a CPU it is the "
            "fraction of host memory; VLLM_CPU_KVCACHE_SPACE (GiB) sets the KV cache size directly."
        )
    return cause
