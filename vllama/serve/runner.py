"""Run the application in the foreground (`vllama serve`): start Ray, deploy, wait, stop cleanly.

Ray Serve's HAProxy mode is what lets each engine replica answer HTTP itself; its settings are
read once, when Ray's modules load in each process, so they are set here before `ray.init`
(for `serve run`, the serve config sets them through `controller_options`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from vllama.serve import load_progress, stopping
from vllama.serve.lifecycle import vllama_message
from vllama.serve.load_progress import LoadDisplay

APP_NAME = "vllama"
#: How often the start's progress is read while the application deploys.
LOAD_POLL_S = 0.5


def haproxy_environment(local_cluster: bool) -> dict[str, str]:
    env = {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        # Replicas wait this long for in-flight requests before stopping; 30 s by default,
        # which made every Ctrl-C take half a minute.
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
    }
    if local_cluster:
        # Ray starts its workers at nice 15 so that its own daemons stay responsive. Here the
        # workers are the service (the replica, vLLM's engine core and workers, HAProxy): niced,
        # any normal process preempts the engine mid-step. Measured on a 2-core machine at 32
        # concurrent streams: 62-68 req/s niced, 74 at nice 0 (docs/ARCHITECTURE.md).
        env["RAY_worker_niceness"] = "0"
        # HAProxy's stats and metrics listeners and Serve's fallback proxy default to fixed
        # ports (8404, 9101, 8500, 9500); a local server takes free ones, so that two can run
        # side by side (the tests, a benchmark next to a dev server).
        for name in (
            "RAY_SERVE_HAPROXY_STATS_PORT",
            "RAY_SERVE_HAPROXY_METRICS_PORT",
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
            "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
        ):
            env[name] = str(free_port())
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_foreground(
    args: dict[str, Any],
    *,
    host: str,
    port: int,
    ray_address: str | None,
    haproxy: bool,
    dashboard_port: int | None,
    display: LoadDisplay | None = None,
) -> int:
    """`display`: shown each model's load phases while the application starts."""
    from vllama.config import ServingConfig

    ServingConfig.model_validate(args)  # fail on a bad config before anything starts
    if haproxy:
        for key, value in haproxy_environment(local_cluster=ray_address is None).items():
            os.environ.setdefault(key, value)

    import ray
    from ray import serve

    from vllama.serve.app import build_app

    stop = threading.Event()
    on_signal = lambda *_: stop.set()  # noqa: E731
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    init_kwargs: dict[str, Any] = {"address": ray_address, "log_to_driver": True}
    if ray_address is None:
        init_kwargs.update(include_dashboard=dashboard_port != 0, dashboard_port=dashboard_port or None)
    context = ray.init(**init_kwargs)
    # ray.init installs its own SIGTERM handler in the driver, which logs a stack and ends the
    # process at once: the cluster then went down under the streams in flight. Ours again, so
    # that SIGTERM (containers, systemd) stops as gracefully as Ctrl-C: Serve drains first.
    signal.signal(signal.SIGTERM, on_signal)
    try:
        serve.start(http_options={"host": host, "port": port})
        stopping.clear(APP_NAME)
        load_progress.clear(APP_NAME)
        application = build_app(args)
        names = ", ".join(m["name"] for m in args["models"])
        _say(f"starting {names} (each engine takes from seconds to minutes to load)")
        deploy = threading.Thread(target=_deploy, args=(serve, application, stop), daemon=True)
        deploy.start()
        try:
            while deploy.is_alive() and not stop.is_set():
                deploy.join(LOAD_POLL_S)
                _show_loads(display)
            _show_loads(display)  # the last phases: ready, or failed
        finally:
            if display is not None:
                display.close()
        if stop.is_set():  # Ctrl-C while starting: a clean stop all the same
            return 0
        if getattr(deploy, "error", None):
            _say(f"failed to start: {failure_reason(serve) or deploy.error}")  # type: ignore[attr-defined]
            return 1
        dashboard = getattr(context, "dashboard_url", None)
        _say(f"serving {names} at http://{_display_host(host)}:{port}"
             + (f" (Ray dashboard: http://{dashboard})" if dashboard else ""))
        while not stop.wait(1.0):
            pass
        return 0
    finally:
        _say("stopping")
        try:
            # The application first, while the HTTP proxies (HAProxy) still run: its replicas
            # take no new requests and let those in flight finish (each deployment's graceful
            # shutdown timeout). serve.shutdown() alone stops the proxies at the same time,
            # cutting every stream in flight.
            # New requests get 503 from here on (`stopping.py`), then the application goes.
            with contextlib.suppress(Exception):
                stopping.announce(APP_NAME)
                time.sleep(2 * stopping.POLL_S)
            serve.delete(APP_NAME)
            # Then the models it deployed at their first use (`available.py`), each its own
            # application: no new request can reach them now.
            for name in serve.status().applications:
                if name.startswith(f"{APP_NAME}."):
                    serve.delete(name)
        except Exception as exc:  # a cluster already gone: shut down what is left
            _say(f"stopping the application: {exc}")
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def _show_loads(display: LoadDisplay | None) -> None:
    if display is None:
        return
    try:
        display.update(load_progress.read_all(APP_NAME))
    except Exception as exc:  # noqa: BLE001  # progress is for show: the start goes on without it
        logging.getLogger("vllama").debug("load progress not read: %s", exc)


def _deploy(serve: Any, application: Any, stop: threading.Event) -> None:
    try:
        serve.run(application, name=APP_NAME, route_prefix="/")
    except Exception as exc:  # shown to the user by run_foreground
        threading.current_thread().error = exc  # type: ignore[attr-defined]


def failure_reason(serve: Any) -> str | None:
    """Our own error from a replica that failed to start (Serve's message only says that the
    deployment failed; the replica's traceback is in the deployment's status)."""
    try:
        application = serve.status().applications.get(APP_NAME)
    except Exception:
        return None
    for deployment in (application.deployments.values() if application else ()):
        if message := vllama_message(deployment.message or ""):
            return message
    return None


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::") else host


def _say(message: str) -> None:
    print(f"vllama: {message}", file=sys.stderr, flush=True)
