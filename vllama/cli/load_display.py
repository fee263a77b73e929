"""`vllama serve` shows where each model's engine is while it loads: weights, compilation,
warm-up, ready (the phases `engine/load_phases.py` reads from vLLM's log).

On a terminal, a live table with rich (one row per model: its phase and the time so far); else
(logs, CI, tests) one plain line per model and phase, such as `vllama-tiny:latest: compiling` and
`vllama-tiny:latest: ready in 21.3 s`. Everything but the drawing is pure and unit-tested.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from vllama.engine.load_phases import FAILED, ORDER, READY, STARTING, LoadRecord

if TYPE_CHECKING:  # the protocol these classes follow, beside the code that feeds them
    from vllama.serve.load_progress import LoadDisplay


@dataclass(frozen=True)
class ModelLoad:
    """One model's load over its replicas: the phase of the one furthest behind (or `failed`)."""

    model: str
    phase: str
    #: Seconds since its first replica started; once ready, until its last replica was.
    elapsed_s: float
    replicas: int
    ready: int
    error: str | None = None


def current(records: list[LoadRecord]) -> list[LoadRecord]:
    """The records that still tell a model's load: a failed replica's record stays published
    (so that a start that fails can say why), but once Serve has started another replica of the
    same model after it, the load goes on there and the failure is history."""
    return [record for record in records
            if record.phase != FAILED
            or not any(other.model == record.model and other.started_at > record.started_at for other in records)]


def model_loads(records: list[LoadRecord], now: float) -> list[ModelLoad]:
    """One row per model, in the order its first replica started."""
    by_model: dict[str, list[LoadRecord]] = {}
    for record in sorted(current(records), key=lambda r: r.started_at):
        by_model.setdefault(record.model, []).append(record)
    rows = []
    for model, replicas in by_model.items():
        failed = [r for r in replicas if r.phase == FAILED]
        behind = min((r.phase for r in replicas), key=ORDER.index) if not failed else FAILED
        first_start = min(r.started_at for r in replicas)
        ready_at = [r.started_at + r.phases[-1][1] for r in replicas if r.phase == READY]
        elapsed = max(ready_at) - first_start if behind == READY else now - first_start
        rows.append(ModelLoad(model, behind, max(elapsed, 0.0), len(replicas), len(ready_at),
                              failed[0].error if failed else None))
    return rows


def reached(records: list[LoadRecord]) -> list[str]:
    """The phases every one of a model's replicas has been through, in order. From the replicas'
    histories, so that a phase passed between two looks is still told."""
    histories = [{phase for phase, _ in record.phases} for record in records]
    if any(FAILED in history for history in histories):
        return [FAILED]
    return [phase for phase in ORDER if phase != STARTING and all(phase in history for history in histories)]


class PlainLines:
    """A line per model and phase, each once: for a log or a pipe."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._told: dict[str, set[str]] = {}

    def update(self, records: list[LoadRecord]) -> None:
        for line in self.new_lines(records):
            self._write(line)

    def new_lines(self, records: list[LoadRecord]) -> list[str]:
        lines = []
        records = current(records)
        loads = {load.model: load for load in model_loads(records, time.time())}
        for model, load in loads.items():
            told = self._told.setdefault(model, set())
            for phase in reached([r for r in records if r.model == model]):
                if phase not in told:
                    told.add(phase)
                    lines.append(f"{model}: {describe(load, phase)}")
        return lines

    def close(self) -> None:
        pass


def describe(load: ModelLoad, phase: str) -> str:
    """What a plain line says of `phase` of `load`."""
    if phase == READY:
        replicas = f" ({load.replicas} replicas)" if load.replicas > 1 else ""
        return f"ready in {load.elapsed_s:.1f} s{replicas}"
    if phase == FAILED:
        return f"failed: {load.error}" if load.error else "failed"
    return phase


def phase_cell(load: ModelLoad) -> str:
    """The live table's phase column: the phase, and how many replicas are ready when several."""
    text = describe(load, load.phase) if load.phase == FAILED else load.phase
    if load.replicas > 1 and load.phase != FAILED:
        text += f" ({load.ready}/{load.replicas} replicas ready)"
    return text


def table(loads: list[ModelLoad]) -> Any:
    """The live table: model, phase, seconds."""
    from rich.spinner import Spinner
    from rich.table import Table
    from rich.text import Text

    grid = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
    grid.add_column("")
    grid.add_column("model")
    grid.add_column("phase")
    grid.add_column("time", justify="right")
    for load in loads:
        if load.phase == READY:
            mark: Any = Text("✓", style="green")
        elif load.phase == FAILED:
            mark = Text("✗", style="red")
        else:
            mark = Spinner("dots")
        style = "red" if load.phase == FAILED else "green" if load.phase == READY else ""
        grid.add_row(mark, load.model, Text(phase_cell(load), style=style), f"{load.elapsed_s:.1f} s")
    return grid


class LiveTable:
    """A rich Live table, redrawn a few times a second (the times tick on their own)."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self._records: list[LoadRecord] = []
        self._lock = threading.Lock()
        self._stream = stream
        self._live = Live(console=Console(file=stream), refresh_per_second=4, get_renderable=self._render,
                          transient=False)
        self._started = False
        self._handlers: list[tuple[logging.StreamHandler[Any], Any]] = []

    def update(self, records: list[LoadRecord]) -> None:
        with self._lock:
            self._records = records
        if records and not self._started:  # nothing to draw before the first replica reports
            self._started = True
            self._live.start()
            # Live redirects sys.stderr above the table; the log handlers (Ray's and Serve's in
            # this process) hold the stream they were made with, and a line they wrote straight
            # under the table would be drawn over.
            self._handlers = redirect_log_handlers(self._stream, sys.stderr)

    def close(self) -> None:
        if self._started:
            self._live.stop()
            for handler, stream in self._handlers:
                handler.setStream(stream)

    def _render(self) -> Any:
        with self._lock:
            records = self._records
        return table(model_loads(records, time.time()))


def redirect_log_handlers(old: Any, new: Any) -> list[tuple[logging.StreamHandler[Any], Any]]:
    """Points every logging handler that writes to `old` (not to a file) at `new`; returns what to
    restore."""
    if new is old:
        return []
    loggers = [logging.getLogger(), *(logger for logger in logging.Logger.manager.loggerDict.values()
                                      if isinstance(logger, logging.Logger))]
    moved = []
    for logger in loggers:
        for handler in logger.handlers:
            is_console = isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            if is_console and handler.stream is old:  # Ray's PlainRayHandler is one too
                moved.append((handler, handler.setStream(new)))
    return moved


def wants_live(stream: TextIO, environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """A live table only on a terminal that can redraw (not TERM=dumb, as in Emacs' shell)."""
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False
    return terminal and environ.get("TERM", "") != "dumb"


def open_display(stream: TextIO | None = None) -> LoadDisplay:
    """Where `vllama serve` says everything else: stderr."""
    stream = stream or sys.stderr
    if wants_live(stream):
        return LiveTable(stream)
    return PlainLines(lambda line: print(f"vllama: {line}", file=stream, flush=True))
