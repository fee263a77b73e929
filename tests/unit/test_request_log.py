"""The request log's pure parts: the request id, the route label, token counts read from an
answer's last chunk, and the engine's request id built from the HTTP one."""

from __future__ import annotations

import orjson
import pytest

from vllama.serve.inference import engine_request_id
from vllama.serve.request_log import MAX_REQUEST_ID, RequestLog, answer_counts, request_id_from, route_of


def test_request_id_is_the_headers_else_a_new_one() -> None:
    assert request_id_from([(b"X-Request-Id", b"abc-123")]) == "abc-123"
    assert request_id_from([(b"x-request-id", b"z" * 1000)]) == "z" * MAX_REQUEST_ID
    made = request_id_from([(b"host", b"x")])
    assert len(made) == 32 and made != request_id_from([])


def test_route_is_the_matched_template() -> None:
    class Route:
        path = "/api/blobs/{digest}"

    assert route_of({"route": Route()}) == "/api/blobs/{digest}"
    assert route_of({}) == "unmatched"  # whatever path a client tried: no new label value


@pytest.mark.parametrize(("chunk", "counts"), [
    (orjson.dumps({"done": True, "prompt_eval_count": 12, "eval_count": 7}) + b"\n", (12, 7)),
    (b'{"message":{"content":"a"},"done":false}\n{"done":true,"prompt_eval_count":3,"eval_count":1}\n', (3, 1)),
    (orjson.dumps({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 9}}), (5, 9)),
    (b'data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}\n\ndata: [DONE]\n\n', (4, 2)),
    (b'{"done":true,"eval_count":2}', (0, 2)),  # Go's omitempty: a zero count is left out
    (b'{"models":[]}', (None, None)),
    (b"not json eval_count", (None, None)),
    (b"", (None, None)),
])
def test_answer_counts(chunk: bytes, counts: tuple[int | None, int | None]) -> None:
    assert answer_counts(chunk) == counts


def test_engine_request_id_carries_the_http_one_and_stays_unique() -> None:
    first, second = engine_request_id("chat", "client-7"), engine_request_id("chat", "client-7")
    assert first.startswith("chat-client-7-") and second.startswith("chat-client-7-") and first != second
    assert engine_request_id("generate").startswith("generate-")


@pytest.mark.parametrize("started", [False, True])
def test_an_error_escaping_the_application_is_counted_as_a_500(started: bool) -> None:
    """Not as a 499 (a client gone away): the error is the server's."""
    import asyncio

    from prometheus_client import REGISTRY

    route = f"/test/failing/{started}"

    class Route:
        path = route

    async def failing_app(scope: dict, receive: object, send) -> None:
        if started:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"{}", "more_body": True})
        raise RuntimeError("boom")

    async def send(message: dict) -> None:
        pass

    scope = {"type": "http", "method": "POST", "path": route, "headers": [], "route": Route()}
    with pytest.raises(RuntimeError):
        asyncio.run(RequestLog(failing_app, log_requests=False)(scope, None, send))
    counted = {status: REGISTRY.get_sample_value("vllama_requests_total", {"route": route, "model": "", "status": status})
               for status in ("500", "499", "200")}
    assert counted == {"500": 1.0, "499": None, "200": None}
