"""Ollama's wire format, checked byte by byte over raw HTTP."""

from __future__ import annotations

import re

import httpx
import orjson
import pytest

from tests.e2e.conftest import ALL_MODELS, EMBED, PRIMARY, SECOND, VISION

RFC3339_NANO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
METRICS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration")


def ndjson_lines(response: httpx.Response) -> list[dict]:
    raw = response.content
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    assert all(line.strip() for line in lines), "a blank line breaks ollama-python"
    return [orjson.loads(line) for line in lines]


def test_root_and_version(http: httpx.Client) -> None:
    for method in ("GET", "HEAD"):
        root = http.request(method, "/")
        assert root.status_code == 200
        assert root.headers["content-type"].startswith("text/plain")
        version = http.request(method, "/api/version")
        assert version.status_code == 200
    assert http.get("/").text == "Ollama is running"
    numbers = tuple(int(p) for p in http.get("/api/version").json()["version"].split("."))
    assert numbers >= (0, 6, 4)  # GitHub Copilot refuses older versions


@pytest.mark.parametrize("model", [PRIMARY, SECOND])
def test_generate_stream_is_ndjson_with_final_metrics(http: httpx.Client, model: str) -> None:
    response = http.post(
        "/api/generate",
        json={"model": model, "prompt": "Why is the sky blue?", "options": {"num_predict": 12, "ignore_eos": True}},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = ndjson_lines(response)
    *chunks, final = lines
    assert chunks and all(c["done"] is False and c["model"] == model for c in chunks)
    assert all(RFC3339_NANO_UTC.match(line["created_at"]) for line in lines)
    assert all(set(c) == {"model", "created_at", "response", "done"} for c in chunks)
    assert final["done"] is True and final["done_reason"] == "length" and final["response"] == ""
    for key in METRICS:
        assert isinstance(final[key], int) and final[key] > 0, key
    assert final["eval_count"] == 12
    assert final["total_duration"] >= final["prompt_eval_duration"] + final["eval_duration"]
    assert final["context"][-12:] and len(final["context"]) == final["prompt_eval_count"] + 12


def test_chat_nonstream_is_one_json_object(http: httpx.Client) -> None:
    response = http.post(
        "/api/chat",
        json={"model": PRIMARY, "messages": [{"role": "user", "content": "hi"}], "stream": False,
              "options": {"num_predict": 5, "ignore_eos": True}},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert body["message"]["role"] == "assistant" and body["done"] is True
    assert body["eval_count"] == 5 and "context" not in body


def test_chat_stream_chunks_carry_assistant_messages(http: httpx.Client) -> None:
    response = http.post(
        "/api/chat",
        json={"model": PRIMARY, "messages": [{"role": "USER", "content": "hi"}], "options": {"num_predict": 6}},
    )
    *chunks, final = ndjson_lines(response)
    assert all(c["message"]["role"] == "assistant" for c in chunks)
    assert final["message"] == {"role": "assistant", "content": ""}
    assert final["done_reason"] in ("stop", "length")


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/generate", b"", 400, "missing request body"),
        ("/api/generate", b'{"model": ', 400, "invalid JSON"),
        ("/api/chat", b"[1, 2]", 400, "JSON object"),
        ("/api/generate", b'{"prompt": "hi"}', 400, "model is required"),
        ("/api/generate", b'{"model": "vllama-tiny", "stream": "yes"}', 400, "stream"),
        ("/api/generate", b'{"model": "vllama-tiny", "prompt": "x", "options": {"temperature": "hot"}}', 400, "temperature"),
        ("/api/generate", b'{"model": "vllama-tiny", "prompt": "x", "options": {"temperature": 5}}', 400, "temperature"),
        ("/api/generate", b'{"model": "vllama-tiny", "keep_alive": "5"}', 400, "missing unit"),
        ("/api/chat", b'{"model": "nope:7b", "messages": []}', 404, "model 'nope:7b' not found"),
        ("/api/show", b'{"model": "nope"}', 404, "model 'nope' not found"),
        ("/api/generate", b'{"model": "vllama-tiny:vision", "prompt": "x", "think": true}', 400, "does not support thinking"),
        ("/api/generate", b'{"model": "vllama-tiny", "prompt": "x", "raw": true, "system": "s"}', 400, "raw mode"),
        ("/api/chat", b'{"model": "vllama-tiny:vision", "messages": [{"role": "user", "content": "x"}], '
                      b'"tools": [{"type": "function", "function": {"name": "f"}}]}', 400, "does not support tools"),
        ("/api/generate", b'{"model": "all-minilm", "prompt": "x", "suffix": "y"}', 400, "does not support"),
        ("/api/generate", b'{"model": "vllama-tiny", "prompt": "x", "template": "{{ if .Prompt }}"}', 400, "template"),
        ("/api/chat", b'{"model": "vllama-tiny:vision", "messages": [{"role": "user", "content": "x", '
                      b'"images": ["not base64!"]}]}', 400, "invalid image input"),
    ],
)
def test_bad_input_gets_ollama_error(http: httpx.Client, path: str, body: bytes, status: int, message: str) -> None:
    response = http.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()
    assert set(error) == {"error"} and message in error["error"]


def test_unknown_path_and_method_are_plain_text(http: httpx.Client) -> None:
    missing = http.get("/api/nothing-here")
    assert (missing.status_code, missing.text) == (404, "404 page not found")
    wrong = http.get("/api/chat")
    assert (wrong.status_code, wrong.text) == (405, "405 method not allowed")


def test_empty_prompt_loads_or_unloads(http: httpx.Client) -> None:
    """Ollama's load and unload calls (no prompt, or no messages; keep_alive 0 unloads), for
    real: the model leaves /api/ps and comes back. It ends loaded, as the session's tests need."""

    def call(path: str, body: dict, reason: str) -> None:
        response = http.post(path, json=body, timeout=400)  # a load starts an engine
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["done"] is True and answer["done_reason"] == reason and answer["model"] == PRIMARY

    def listed() -> set[str]:
        return {m["name"] for m in http.get("/api/ps").json()["models"]}

    call("/api/generate", {"model": PRIMARY}, "load")
    call("/api/chat", {"model": PRIMARY, "messages": []}, "load")
    call("/api/generate", {"model": PRIMARY, "prompt": "", "keep_alive": 0}, "unload")
    assert PRIMARY not in listed()
    call("/api/chat", {"model": PRIMARY, "messages": []}, "load")
    assert PRIMARY in listed()


def test_tags_show_ps(http: httpx.Client) -> None:
    models = http.get("/api/tags").json()["models"]
    assert {m["name"] for m in models} == ALL_MODELS
    for m in models:
        assert m["model"] == m["name"]  # Open WebUI keys models on `model`, with the tag
        assert m["size"] > 0 and re.fullmatch(r"[0-9a-f]{64}", m["digest"])
        family = {EMBED: "bert", VISION: "idefics3"}.get(m["name"], "qwen2")
        assert m["details"]["family"] == family and m["details"]["quantization_level"] == "F32"
    show = http.post("/api/show", json={"name": "VLLAMA-TINY"}).json()  # `name` and any case work
    assert show["capabilities"] == ["completion", "tools", "insert", "thinking"]
    assert show["model_info"]["general.architecture"] == "qwen2"
    assert show["model_info"]["qwen2.block_count"] == 2
    assert "<|im_start|>" in show["template"] and show["details"]["parameter_size"].endswith("M")
    ps = http.get("/api/ps").json()["models"]
    assert {p["name"] for p in ps} == ALL_MODELS
    assert all(p["size_vram"] == 0 for p in ps)  # CPU: nothing in VRAM
    assert {p["name"]: p["context_length"] for p in ps} == {PRIMARY: 2048, SECOND: 2048, EMBED: 256, VISION: 2048}


def test_raw_prompt_skips_the_template_and_context(http: httpx.Client) -> None:
    body = {"model": PRIMARY, "prompt": "Why is the sky blue?", "stream": False, "options": {"num_predict": 3}}
    templated = http.post("/api/generate", json=body).json()
    raw = http.post("/api/generate", json={**body, "raw": True}).json()
    assert raw["prompt_eval_count"] < templated["prompt_eval_count"]  # no <|im_start|>user ... wrapping
    assert "context" not in raw and "context" in templated


def test_context_continues_the_conversation(http: httpx.Client) -> None:
    first = http.post("/api/generate", json={"model": PRIMARY, "prompt": "Hello", "stream": False,
                                             "options": {"num_predict": 4, "ignore_eos": True}}).json()
    alone = http.post("/api/generate", json={"model": PRIMARY, "prompt": "And then?", "stream": False,
                                             "options": {"num_predict": 1}}).json()
    follow = http.post("/api/generate", json={"model": PRIMARY, "prompt": "And then?", "stream": False,
                                              "context": first["context"], "options": {"num_predict": 1}}).json()
    assert follow["prompt_eval_count"] == len(first["context"]) + alone["prompt_eval_count"]
    assert follow["context"][: len(first["context"])] == first["context"]


@pytest.mark.parametrize("model", [PRIMARY, SECOND])
def test_streams_are_paced_without_changing_the_text(http: httpx.Client, model: str) -> None:
    # `stream_interval_ms` (40 by default): after the first token, a stream goes out at most every
    # 40 ms with all the tokens made meanwhile, so the tiny model's ~5 ms steps share chunks. The
    # text and the counts are those of the same greedy answer given whole.
    body = {"model": model, "prompt": "Why is the sky blue?", "options": {"num_predict": 64, "ignore_eos": True, "temperature": 0}}
    *chunks, final = ndjson_lines(http.post("/api/generate", json=body))
    whole = http.post("/api/generate", json={**body, "stream": False}).json()
    assert "".join(c["response"] for c in chunks) == whole["response"]
    assert final["eval_count"] == whole["eval_count"] == 64
    assert len(chunks) <= 32, f"{len(chunks)} chunks for 64 tokens: not paced"


def test_openai_streams_are_paced_too(http: httpx.Client) -> None:
    body = {"model": PRIMARY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64,
            "ignore_eos": True, "temperature": 0, "stream": True}
    events = [line for line in http.post("/v1/chat/completions", json=body).text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    deltas = [orjson.loads(e.removeprefix("data: "))["choices"] for e in events[:-1]]
    text = "".join(c[0]["delta"].get("content") or "" for c in deltas if c)
    whole = http.post("/v1/chat/completions", json={**body, "stream": False}).json()
    assert text == whole["choices"][0]["message"]["content"]
    assert whole["usage"]["completion_tokens"] == 64
    assert len(deltas) <= 32, f"{len(deltas)} SSE events for 64 tokens: not paced"
