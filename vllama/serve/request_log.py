"""One record per HTTP request on the ingress: its id, its metrics, its structured log line.

`RequestLog` is the ingress app's outermost ASGI middleware (a pure one: Starlette's
BaseHTTPMiddleware would wrap every streamed chunk in a task). For each request it
- takes the request id as Serve does: the client's `X-Request-Id`, else the one Serve's HAProxy
  made (Serve echoes it in the answer's `X-Request-Id`), and hands it (through `current()`) to
  the forwarding code, which sends it on to the engine replica: the engine's own request id
  contains it, so vLLM's log lines match (`inference.py`);
- times what the client sees: the first chunk after the headers (its time to first token), the
  gaps between chunks, the last byte;
- records vllama's request metrics (`telemetry.py`) by route, model and status;
- logs one line through Ray Serve's logger, which Serve's `logging_config` formats (JSON with
  `encoding: JSON`, vllama's default for the ingress) and writes to the replica's log file with
  Serve's own fields (replica, application, Serve's request id).

The model and the engine replica that answered are set by the code that resolves and forwards
the request (`note_model`, `note_replica`); token counts are read from the answer's last chunk
(`answer_counts`), where Ollama's and OpenAI's answers say them, so no answer is parsed twice on
its way.
"""

from __future__ import annotations

import contextvars
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from vllama.serve import telemetry

#: Serve's logger: its handlers (Serve's logging_config) format and file what goes through it.
logger = logging.getLogger("ray.serve")

REQUEST_ID_HEADER = b"x-request-id"
#: Longer ids are cut (for the log and the engine's id; the echo is Serve's, of the whole header).
MAX_REQUEST_ID = 200
#: An answer's last chunk is parsed for its token counts only up to this size.
MAX_COUNTED_BYTES = 1 << 20


@dataclass
class RequestRecord:
    request_id: str
    method: str
    path: str
    start_ns: int
    route: str = ""
    model: str = ""
    replica: str = ""
    status: int = 0
    first_chunk_ns: int = 0
    last_chunk_ns: int = 0
    chunks: int = 0
    completed: bool = False


_current: contextvars.ContextVar[RequestRecord | None] = contextvars.ContextVar("vllama_request", default=None)


def current() -> RequestRecord | None:
    """The request this task answers (None outside one)."""
    return _current.get()


def note_model(model: str) -> None:
    if (record := _current.get()) is not None:
        record.model = model


def note_replica(replica: str) -> None:
    if (record := _current.get()) is not None:
        record.replica = replica


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The request's `X-Request-Id`, as Serve takes it (and echoes it in the answer): the
    client's, else the one Serve's HAProxy made; a new one where neither is (no Serve in front)."""
    for name, value in headers:
        if name.lower() == REQUEST_ID_HEADER and value:
            return value[:MAX_REQUEST_ID].decode("latin-1")
    return uuid.uuid4().hex


def answer_counts(last_chunk: bytes) -> tuple[int | None, int | None]:
    """(prompt tokens, generated tokens) as the answer's last chunk states them: Ollama's final
    object (`prompt_eval_count`, `eval_count`, in JSON or as the last NDJSON line) or OpenAI's
    `usage` (in JSON, or in a stream's last `data:` event when the client asked for it)."""
    if not last_chunk or len(last_chunk) > MAX_COUNTED_BYTES:
        return None, None
    if b"eval_count" not in last_chunk and b"usage" not in last_chunk:
        return None, None
    for line in reversed(last_chunk.strip().splitlines()):
        line = line.strip()
        if line.startswith(b"data:"):
            line = line[5:].strip()
        if not line.startswith(b"{"):
            continue
        try:
            answer = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(answer, dict):
            continue
        if "eval_count" in answer or "prompt_eval_count" in answer:
            return _int(answer.get("prompt_eval_count", 0)), _int(answer.get("eval_count", 0))
        usage = answer.get("usage")
        if isinstance(usage, dict):
            return _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    return None, None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def route_of(scope: dict[str, Any]) -> str:
    """The matched route's path template (`/api/chat`, `/api/blobs/{digest}`): a label of bounded
    cardinality, whatever paths clients try."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestLog:
    def __init__(self, app: Any, log_requests: bool = True) -> None:
        self.app = app
        self.log_requests = log_requests
        self._in_flight = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord(
            request_id=request_id_from(scope.get("headers") or []), method=scope["method"], path=scope["path"],
            start_ns=time.monotonic_ns(),
        )
        token = _current.set(record)
        last_chunk = b""
        self._in_flight += 1
        telemetry.IN_FLIGHT.set(self._in_flight)

        async def send_recorded(message: dict[str, Any]) -> None:
            nonlocal last_chunk
            if message["type"] == "http.response.start":
                record.status = message["status"]
            elif message["type"] == "http.response.body":
                body = message.get("body") or b""
                if body:
                    now = time.monotonic_ns()
                    if record.chunks:
                        telemetry.INTER_CHUNK_SECONDS.observe((now - record.last_chunk_ns) * 1e-9,
                                                              route=route_of(scope), model=record.model)
                    else:
                        record.first_chunk_ns = now
                    record.last_chunk_ns = now
                    record.chunks += 1
                    last_chunk = body
                if not message.get("more_body", False):
                    record.completed = True
            await send(message)

        try:
            await self.app(scope, receive, send_recorded)
        except Exception:
            # An error that escaped the application is the server's, not a client gone away (a
            # CancelledError is not an Exception): Starlette's error middleware, outside this one,
            # answers it with a 500, or it cuts a stream already begun. Count it as a 500.
            record.status, record.completed = 500, True
            raise
        finally:
            _current.reset(token)
            self._in_flight -= 1
            telemetry.IN_FLIGHT.set(self._in_flight)
            _finish(record, route_of(scope), last_chunk, self.log_requests)


def _finish(record: RequestRecord, route: str, last_chunk: bytes, log: bool) -> None:
    end_ns = record.last_chunk_ns if record.completed and record.last_chunk_ns else time.monotonic_ns()
    duration_s = (end_ns - record.start_ns) * 1e-9
    # A client that went away before the answer ended: nginx's 499, as in access logs.
    status = str(record.status) if record.completed else "499"
    record.route = route
    telemetry.REQUESTS.inc(1, route=route, model=record.model, status=status)
    telemetry.REQUEST_SECONDS.observe(duration_s, route=route, model=record.model, status=status)
    ttft_s = None
    if record.chunks > 1:  # streamed: the first chunk is the first token's
        ttft_s = (record.first_chunk_ns - record.start_ns) * 1e-9
        telemetry.FIRST_CHUNK_SECONDS.observe(ttft_s, route=route, model=record.model)
    if not log:
        return
    prompt_tokens, generated_tokens = answer_counts(last_chunk) if record.model else (None, None)
    logger.info(
        "%s %s %s %.1fms", record.method, record.path, status, duration_s * 1000,
        extra={
            # Serve's access-log filter drops records marked as its own access log: this is not one.
            "serve_access_log": False,
            "vllama_request_id": record.request_id,
            "vllama_route": route,
            "vllama_model": record.model,
            "vllama_status": int(status),
            "vllama_prompt_tokens": prompt_tokens,
            "vllama_generated_tokens": generated_tokens,
            "vllama_ttft_ms": round(ttft_s * 1000, 3) if ttft_s is not None else None,
            "vllama_duration_ms": round(duration_s * 1000, 3),
            "vllama_engine_replica": record.replica,
        },
    )
