"""The official `ollama` JavaScript client (npm `ollama`, pinned in tests/js/package.json), unchanged,
against the session's application: tests/js/client.mjs runs one part per call and prints what
the client gave back, and each test here judges one part.

The chat model has random weights: the tests check shapes, types and the flow (streamed equals
whole, a grammar's output parses), never what the text says.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from tests.e2e.conftest import ALL_MODELS, EMBED, PRIMARY
from tests.e2e.test_structured_output import SCHEMA, Pet
from tests.e2e.test_tools import WEATHER
from tests.support import ServerProcess, replica_http_port

pytestmark = [
    pytest.mark.e2e,
    # Loaded first: `/api/ps` lists loaded models, and `/api/show` describes a model as its engine does.
    pytest.mark.usefixtures("loaded"),
    pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed"),
]

JS_DIR = Path(__file__).resolve().parents[1] / "js"
GIVEN = {"chat": PRIMARY, "embed": EMBED, "schema": SCHEMA, "tool": WEATHER}


def run_part(url: str, part: str) -> Any:
    assert (JS_DIR / "node_modules" / "ollama").is_dir(), "run `make test` (it installs tests/js)"
    run = subprocess.run(
        ["node", str(JS_DIR / "client.mjs"), url, part, json.dumps(GIVEN)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_list(base_url: str) -> None:
    models = run_part(base_url, "list")
    assert {m["name"] for m in models} == {m["model"] for m in models} == ALL_MODELS
    for model in models:
        assert model["size"] > 0 and model["digest"] and model["modified_at"]
        assert model["details"]["format"] and model["details"]["family"]


def test_show(base_url: str) -> None:
    shown = run_part(base_url, "show")
    assert shown["model_info"]["general.architecture"] == "qwen2"
    assert shown["capabilities"] == ["completion", "tools", "insert", "thinking"]
    assert shown["template"] and shown["modelfile"] and shown["details"]["family"] == "qwen2"


def test_ps(base_url: str) -> None:
    models = run_part(base_url, "ps")
    assert {m["model"] for m in models} == ALL_MODELS
    for model in models:
        assert model["expires_at"] and model["size_vram"] >= 0 and model["context_length"] > 0


def test_version(base_url: str) -> None:
    version = run_part(base_url, "version")["version"]
    assert all(part.isdigit() for part in version.split("."))


def test_generate_stream_and_not(base_url: str) -> None:
    answer = run_part(base_url, "generate")
    whole, parts = answer["whole"], answer["parts"]
    assert "".join(p["response"] for p in parts) == whole["response"]
    assert not any(p["done"] for p in parts[:-1]) and parts[-1]["done"]
    assert parts[-1]["eval_count"] == whole["eval_count"] == 10 and whole["done_reason"] == "length"
    assert parts[-1]["context"] == whole["context"]
    assert whole["prompt_eval_count"] > 0 and whole["eval_duration"] > 0 and whole["total_duration"] > 0


def test_chat_stream_and_not(base_url: str) -> None:
    answer = run_part(base_url, "chat")
    whole, parts = answer["whole"], answer["parts"]
    assert whole["message"]["role"] == "assistant" and whole["done_reason"] == "length"
    assert "".join(p["message"]["content"] for p in parts) == whole["message"]["content"]
    assert not any(p["done"] for p in parts[:-1]) and parts[-1]["done"]
    assert parts[-1]["eval_count"] == whole["eval_count"] == 10
    assert parts[-1]["prompt_eval_count"] == whole["prompt_eval_count"] > 0


@pytest.fixture(scope="module")
def replica_url(server: ServerProcess) -> str:
    """The ingress replica's own port. Through HAProxy an aborted stream is cut at the replica
    most of the time but not always (docs/ARCHITECTURE.md, "Client disconnects and HAProxy"),
    so what vllama guarantees is checked where it holds: where HAProxy delivers requests."""
    return f"http://127.0.0.1:{replica_http_port(server, 'ServeReplica:vllama:Ingress')}"


def engine_counts(http: httpx.Client) -> dict[str, int]:
    return http.get("/vllama/status", timeout=120).json()["models"][PRIMARY]


#: An attempt that ends with the request completed proves nothing when this machine starved the
#: client for seconds (tests/e2e/test_disconnect.py, LATE_S): it is run again; an abort that
#: never reaches the engine fails every attempt.
ATTEMPTS = 3


@pytest.mark.parametrize("part", ["abort_stream", "abort_client"])
def test_abort_frees_the_engine(http: httpx.Client, replica_url: str, part: str) -> None:
    attempts = []
    for _ in range(ATTEMPTS):
        before = engine_counts(http)
        assert before["unfinished_requests"] == 0
        seen = run_part(replica_url, part)
        # The client read what came before its abort, then its iteration ended in an AbortError.
        assert seen == {"read": 3, "ended": "AbortError"}
        deadline = time.monotonic() + 30
        after = engine_counts(http)
        while after["unfinished_requests"] and time.monotonic() < deadline:
            time.sleep(0.1)
            after = engine_counts(http)
        assert after["unfinished_requests"] == 0, "the engine kept a request for nobody"
        ended = {key: after[f"{key}_requests"] - before[f"{key}_requests"] for key in ("aborted", "completed")}
        if ended == {"aborted": 1, "completed": 0}:
            return
        attempts.append(ended)
    pytest.fail(f"the aborted request ran on in the engine: {attempts}")


def test_format(base_url: str) -> None:
    answer = run_part(base_url, "format")
    Pet.model_validate_json(answer["whole"]["message"]["content"])
    assert answer["whole"]["done_reason"] == "stop"
    assert answer["streamed"] == answer["whole"]["message"]["content"]
    assert isinstance(json.loads(answer["json"]["response"]), dict)
    jsonschema.validate(json.loads(answer["streamed"]), SCHEMA)


def test_embed(base_url: str) -> None:
    answer = run_part(base_url, "embed")
    many, one, legacy = answer["many"], answer["one"], answer["legacy"]
    assert many["model"] == EMBED and [len(v) for v in many["embeddings"]] == [384, 384]
    assert all(math.isclose(math.hypot(*v), 1.0, abs_tol=1e-5) for v in many["embeddings"])
    assert many["prompt_eval_count"] > 0
    # One string or a list of one: the same vector.
    assert len(one["embeddings"]) == 1
    assert math.dist(one["embeddings"][0], many["embeddings"][0]) < 1e-5
    assert len(legacy["embedding"]) == 384


def test_forced_tool_call(base_url: str) -> None:
    message = run_part(base_url, "tools")["message"]
    assert message["tool_calls"], message
    call = message["tool_calls"][0]["function"]
    # Ollama's shape: the arguments an object, which follows the tool's schema.
    assert call["name"] == "get_weather" and set(call["arguments"]) == {"city"}
    assert isinstance(call["arguments"]["city"], str)


def test_errors(base_url: str) -> None:
    errors = run_part(base_url, "errors")
    not_found = {"name": "ResponseError", "status": 404, "error": "model 'no-such-model' not found"}
    assert errors["chat"] == errors["stream"] == errors["show"] == not_found
    assert errors["embed"] == {**not_found, "error": 'model "no-such-model" not found, try pulling it first'}
    assert errors["bad_option"]["name"] == "ResponseError" and errors["bad_option"]["status"] == 400
    assert errors["bad_option"]["error"]
