"""Hand-picked hostile input on the session's server: each gets a clean answer (a 4xx in
Ollama's or OpenAI's error format, or a sane 200), never a 5xx, and leaves no engine request
running. The fuzzer (`bench/fuzz.py` and its short run in the tests) covers the rest."""

from __future__ import annotations

import base64
import concurrent.futures

import httpx
import pytest

from tests.e2e.conftest import ALL_MODELS, PRIMARY, VISION

JSON = {"content-type": "application/json"}
DEEP = 10_000


def _clean(response: httpx.Response, *allowed: int) -> None:
    assert response.status_code in allowed, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error if isinstance(error, str) else error["message"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/generate", b'{"model": "vllama-tiny", "prompt": "x", "options": ' + b"[" * DEEP + b"]" * DEEP + b"}"),
        ("/api/chat", b'{"model": "vllama-tiny", "messages": ' + b"[" * DEEP + b"]" * DEEP + b"}"),
        ("/v1/chat/completions", b'{"model": "vllama-tiny", "messages": ' + b"[" * DEEP + b"]" * DEEP + b"}"),
        ("/api/create", b'{"model": "deep", "parameters": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}"),
    ],
    ids=["options", "messages", "openai", "create"],
)
def test_json_nested_ten_thousand_deep(http: httpx.Client, path: str, body: bytes) -> None:
    _clean(http.post(path, content=body, headers=JSON), 400)


def test_nul_bytes_and_invalid_utf8(http: httpx.Client) -> None:
    nul = http.post("/api/generate", json={"model": PRIMARY, "prompt": "a\u0000b\u0000", "stream": False,
                                           "options": {"num_predict": 3}}, timeout=300)  # may be the first
    _clean(nul, 200)
    for path in ("/api/generate", "/api/chat", "/v1/completions", "/api/show", "/api/create"):
        _clean(http.post(path, content=b'{"model": "vllama-tiny", "prompt": "\xff\xfe\xc3"}', headers=JSON), 400)


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/completions", {"prompt": None}), ("/v1/completions", {"prompt": "", "prompt_embeds": None}),
     ("/v1/chat/completions", {"messages": []}), ("/v1/embeddings", {"input": None})],
    ids=["completion_prompt_null", "completion_prompt_empty", "chat_no_messages", "embedding_input_null"],
)
def test_what_vllms_own_validators_refuse(http: httpx.Client, path: str, body: dict) -> None:
    """vLLM's model validators raise its own errors, which pydantic lets through: the fuzzer found
    one answered as a 500. They are the client's mistakes, so 400."""
    _clean(http.post(path, json={"model": PRIMARY, **body}, timeout=120), 200, 400)


@pytest.mark.parametrize(
    "options",
    [{"num_ctx": 10**15}, {"num_ctx": -5}, {"num_ctx": 0}, {"num_predict": 10**15}, {"num_predict": -10**15},
     {"num_keep": 10**12}, {"top_k": -1}, {"seed": 10**30}, {"stop": ["x"] * 10_000}],
    ids=["num_ctx_huge", "num_ctx_negative", "num_ctx_zero", "num_predict_huge", "num_predict_negative",
         "num_keep_huge", "top_k_negative", "seed_huge", "stop_many"],
)
def test_absurd_options(http: httpx.Client, options: dict) -> None:
    body = {"model": PRIMARY, "prompt": "hi", "stream": False, "options": {"num_predict": 4, **options}}
    response = http.post("/api/generate", json=body, timeout=300)
    _clean(response, 200, 400)
    if response.status_code == 200:
        assert response.json()["done"] is True


@pytest.mark.parametrize("image", ["aGVsbG8", "aGVsbG8=", base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 40).decode(), "", "=" * 9])
def test_broken_images(http: httpx.Client, image: str) -> None:
    body = {"model": VISION, "stream": False, "messages": [{"role": "user", "content": "x", "images": [image]}],
            "options": {"num_predict": 2}}
    _clean(http.post("/api/chat", json=body, timeout=120), 400)


def test_ten_thousand_messages(http: httpx.Client) -> None:
    messages = [{"role": ("user", "assistant")[i % 2], "content": f"message {i}"} for i in range(10_000)]
    messages[-1] = {"role": "user", "content": "and the last"}
    response = http.post("/api/chat", json={"model": PRIMARY, "messages": messages, "stream": False,
                                            "options": {"num_predict": 3}}, timeout=300)
    _clean(response, 200, 400)  # Ollama keeps the latest messages that fit the context


@pytest.mark.parametrize("parameters", [{"type": "nonsense"}, {"type": "object", "properties": "not a dict"}, "text", 5])
def test_a_tool_with_an_invalid_schema(http: httpx.Client, parameters: object) -> None:
    tool = {"type": "function", "function": {"name": "f", "description": "d", "parameters": parameters}}
    body = {"model": PRIMARY, "messages": [{"role": "user", "content": "x"}], "tools": [tool], "stream": False,
            "options": {"num_predict": 3}}
    _clean(http.post("/api/chat", json=body, timeout=120), 200, 400)


def test_create_and_delete_of_one_name_racing(http: httpx.Client) -> None:
    def create() -> int:
        return http.post("/api/create", json={"model": "racer", "from": PRIMARY, "system": "s", "stream": False}).status_code

    def delete() -> int:
        return http.request("DELETE", "/api/delete", json={"model": "racer"}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: (create if i % 2 == 0 else delete)(), range(40)))
    assert set(statuses) <= {200, 404}, statuses
    listed = "racer:latest" in {m["name"] for m in http.get("/api/tags").json()["models"]}
    shown = http.post("/api/show", json={"model": "racer"}).status_code
    assert shown == (200 if listed else 404)  # the list and the lookups agree
    http.request("DELETE", "/api/delete", json={"model": "racer"})
    assert "racer:latest" not in {m["name"] for m in http.get("/api/tags").json()["models"]}


def test_nothing_left_running_after_all_that(http: httpx.Client) -> None:
    models = http.get("/vllama/status", timeout=60).json()["models"]
    assert set(models) >= ALL_MODELS - {"missing"}
    assert {name: m["unfinished_requests"] for name, m in models.items() if m["unfinished_requests"]} == {}
