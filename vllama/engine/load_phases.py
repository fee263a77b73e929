"""Where an engine's start has got to, read from the lines vLLM logs while it starts.

vLLM says nothing to its caller until the engine is up, which takes from seconds to minutes; its
processes log each step meanwhile (the replica's `OutputTap` sees them, the engine core's and its
workers' included). `LoadProgress` turns those lines into a few phases, each with the time it
began, so that `vllama serve` can show where each model is (serve/load_progress.py carries them
there). Pure: no Ray, no vLLM.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

STARTING = "starting"
WEIGHTS = "loading weights"
COMPILING = "compiling"
#: The memory profile, the KV cache's allocation, CUDA graphs and the warm-up requests.
WARMING_UP = "warming up"
READY = "ready"
FAILED = "failed"
#: An engine's phases in the order they come: a phase only moves forward, as with several
#: workers (tensor parallelism) their lines interleave.
ORDER = (STARTING, WEIGHTS, COMPILING, WARMING_UP, READY)

#: The first words of each phase in vLLM 0.32's logs (its model runners, compilation monitor and
#: workers). A line not listed here leaves the phase as it is.
_MARKERS: tuple[tuple[str, str], ...] = (
    ("Starting to load model", WEIGHTS),  # the GPU and CPU model runners
    ("Starting torch.compile", COMPILING),  # compilation/monitor.py, unless enforce_eager
    ("Dynamo bytecode transform time", COMPILING),
    ("Warming up model for the compilation", COMPILING),  # the CPU model runner
    ("torch.compile took", WARMING_UP),
    ("Initial profiling/warmup run took", WARMING_UP),
    ("Memory profiling takes", WARMING_UP),
    ("Available KV cache memory", WARMING_UP),
    ("KV cache size:", WARMING_UP),
    ("Capturing CUDA graphs", WARMING_UP),
    ("init engine (profile, create kv cache, warmup model) took", WARMING_UP),
)


def phase_of(line: str) -> str | None:
    """The phase a line of vLLM's log starts, or None for any other line."""
    for marker, phase in _MARKERS:
        if marker in line:
            return phase
    return None


def later(a: str, b: str) -> bool:
    """Whether phase `a` comes after phase `b` (FAILED comes after every other)."""
    rank = {phase: i for i, phase in enumerate((*ORDER, FAILED))}
    return rank[a] > rank[b]


@dataclass(frozen=True)
class LoadRecord:
    """One engine replica's start, as published: its model, its phases with the seconds since its
    start at which each began, and when (wall clock) it started."""

    model: str
    replica: str
    started_at: float
    phases: tuple[tuple[str, float], ...]
    error: str | None = None

    @property
    def phase(self) -> str:
        return self.phases[-1][0] if self.phases else STARTING

    @property
    def finished(self) -> bool:
        return self.phase in (READY, FAILED)

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "replica": self.replica, "started_at": self.started_at,
                "phases": [list(p) for p in self.phases], "error": self.error}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoadRecord:
        return cls(str(data["model"]), str(data["replica"]), float(data["started_at"]),
                   tuple((str(phase), float(at)) for phase, at in data["phases"]), data.get("error"))


class LoadProgress:
    """Follows one engine's start: `feed` each log line (from any thread), `finish` at the end."""

    def __init__(self, model: str, replica: str, *, clock: Any = time.monotonic, wall: Any = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._start = clock()
        self._record = LoadRecord(model, replica, wall(), ((STARTING, 0.0),))
        #: Bumped at each change, so a publisher can tell a new state from one it sent.
        self.version = 0

    def feed(self, line: str) -> None:
        phase = phase_of(line)
        if phase is not None:
            self._advance(phase)

    def ready(self) -> None:
        self._advance(READY)

    def failed(self, error: str) -> None:
        self._advance(FAILED, error)

    def snapshot(self) -> LoadRecord:
        with self._lock:
            return self._record

    def _advance(self, phase: str, error: str | None = None) -> None:
        with self._lock:
            if self._record.finished or not later(phase, self._record.phase):
                return
            at = round(self._clock() - self._start, 2)
            record = self._record
            self._record = LoadRecord(record.model, record.replica, record.started_at,
                                      (*record.phases, (phase, at)), error)
            self.version += 1
