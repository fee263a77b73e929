"""A graceful stop that says so: once `vllama serve` is told to stop (Ctrl-C, SIGTERM), each
ingress replica answers new requests with 503 "server is shutting down" (and `Retry-After`), while
the requests in flight finish; then Serve deletes the application, whose replicas drain as Serve
stops any replica (each deployment's graceful shutdown timeout), and every process exits.

The word goes through Ray's key-value store, which every ingress replica (on any node) reads every
`POLL_S`; nothing is asked per request.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("vllama")

SHUTTING_DOWN = "server is shutting down"
#: How often an ingress replica looks for the word; the runner waits a little longer before it
#: deletes the application.
POLL_S = 0.5
NAMESPACE = "vllama"


def _key(app_name: str) -> bytes:
    return f"vllama/{app_name}/stopping".encode()


def announce(app_name: str) -> None:
    from ray.experimental.internal_kv import _internal_kv_put

    _internal_kv_put(_key(app_name), b"1", overwrite=True, namespace=NAMESPACE)


def clear(app_name: str) -> None:
    """At start: a word left by an earlier run on the same cluster is not for this one."""
    from ray.experimental.internal_kv import _internal_kv_del

    _internal_kv_del(_key(app_name), namespace=NAMESPACE)


def watch(app_name: str) -> threading.Event:
    """An event set once the stop is announced (a daemon thread polls the store)."""
    from ray.experimental.internal_kv import _internal_kv_get

    stopping = threading.Event()

    def poll() -> None:
        while not stopping.wait(POLL_S):
            try:
                if _internal_kv_get(_key(app_name), namespace=NAMESPACE):
                    stopping.set()
            except Exception as exc:  # noqa: BLE001  # the cluster going away: the stop is near anyway
                logger.debug("stop announcement not read: %s", exc)

    threading.Thread(target=poll, name="vllama-stop-watch", daemon=True).start()
    return stopping
