"""How `vllama serve` learns where each model's engine is while it loads.

Serve reports a replica only as starting until its constructor returns, and the engine's own
lines go to the replica's log. So each engine replica follows its engine's start from the lines
its `OutputTap` copies (`engine/load_phases.py`) and publishes the phases in Ray's key-value
store, the way the stop is announced (`stopping.py`); the CLI reads them there while it waits for
the application, and shows them (`cli/load_display.py`). A replica's entry goes when it stops.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Protocol

from vllama.engine.load_phases import FAILED, LoadProgress, LoadRecord
from vllama.engine.startup import OutputTap
from vllama.serve.stopping import NAMESPACE

logger = logging.getLogger("vllama")

#: How often a loading replica looks for a new phase to publish.
PUBLISH_S = 0.25


class LoadDisplay(Protocol):
    """Shows the loads to the user (`cli/load_display.py`): given every replica's record at each look."""

    def update(self, records: list[LoadRecord]) -> None: ...

    def close(self) -> None: ...


def _prefix(app_name: str) -> bytes:
    return f"vllama/{app_name}/loading/".encode()


def _key(app_name: str, replica: str) -> bytes:
    return _prefix(app_name) + replica.encode()


class LoadReporter:
    """Publishes one replica's load phases until `close`. The tap's thread only feeds
    `LoadProgress`; a thread of this reporter's own talks to the store, so a slow store never
    holds up the process's output."""

    def __init__(self, app_name: str, model: str, replica: str) -> None:
        self.progress = LoadProgress(model, replica)
        self._key = _key(app_name, replica)
        self._closed = threading.Event()
        self._tap = OutputTap.install()
        self._tap.listen(self.progress.feed)
        self._thread = threading.Thread(target=self._publish_changes, name="vllama-load-progress", daemon=True)
        self._thread.start()

    def ready(self) -> None:
        self.progress.ready()
        self._finish()

    def failed(self, error: str) -> None:
        self.progress.failed(error)
        self._finish()

    def close(self) -> None:
        """The replica stops: its entry goes with it, unless its load failed. Serve stops a
        replica whose constructor failed at once, and `vllama serve` reads the entries only
        after Serve has given up on the deployment: the failure, with its cause, must still be
        there to be told. The next start's `clear` removes it."""
        self._finish()
        if self.progress.snapshot().phase == FAILED:
            return
        try:
            from ray.experimental.internal_kv import _internal_kv_del

            _internal_kv_del(self._key, namespace=NAMESPACE)
        except Exception as exc:  # noqa: BLE001  # a cluster going away takes the store with it
            logger.debug("load progress not removed: %s", exc)

    def _finish(self) -> None:
        """No more lines to follow; the last phase is published before this returns."""
        self._tap.unlisten(self.progress.feed)
        self._closed.set()
        self._thread.join(timeout=5)

    def _publish_changes(self) -> None:
        sent = -1
        while True:
            closing = self._closed.wait(PUBLISH_S)
            if self.progress.version != sent:
                sent = self.progress.version
                self._put(self.progress.snapshot())
            if closing:
                return

    def _put(self, record: LoadRecord) -> None:
        try:
            from ray.experimental.internal_kv import _internal_kv_put

            _internal_kv_put(self._key, json.dumps(record.to_json()).encode(), overwrite=True, namespace=NAMESPACE)
        except Exception as exc:  # noqa: BLE001  # progress is for show: the load goes on without it
            logger.debug("load progress not published: %s", exc)


def read_all(app_name: str) -> list[LoadRecord]:
    """Every replica's load of the application's models (the driver's side)."""
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_list

    records = []
    for key in _internal_kv_list(_prefix(app_name), namespace=NAMESPACE):
        value = _internal_kv_get(key, namespace=NAMESPACE)
        if value:  # gone meanwhile: its replica stopped
            records.append(LoadRecord.from_json(json.loads(value)))
    return records


def clear(app_name: str) -> None:
    """At start: entries left by an earlier run on the same cluster are not for this one."""
    from ray.experimental.internal_kv import _internal_kv_del

    _internal_kv_del(_prefix(app_name), del_by_prefix=True, namespace=NAMESPACE)
