"""The published schema (`vllama.serve.openapi`): every route's bodies, from the models the
handlers parse with, and vLLM's `/v1` models as the installed vLLM has them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from vllama.models.registry import Registry
from vllama.serve import openapi
from vllama.serve.directory import ModelDirectory
from vllama.serve.http import build_http_app


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    home = tmp_path_factory.mktemp("home")
    return build_http_app(ModelDirectory({}, Registry(home)), home).openapi()


def _validator(document: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": document["components"]})


def test_every_body_route_documents_its_request_and_answers(document: dict[str, Any]) -> None:
    operations = [(method, path, op) for path, ops in document["paths"].items() for method, op in ops.items()]
    assert len(operations) >= 26
    for method, path, operation in operations:
        assert "200" in operation["responses"] or "201" in operation["responses"], (method, path)
        assert "422" not in operation["responses"], (method, path)
        if method in ("post", "delete"):
            assert operation["requestBody"]["required"] is True, (method, path)
    ids = [op["operationId"] for _, _, op in operations]
    assert len(ids) == len(set(ids))


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    names = set(document["components"]["schemas"])
    referenced = {ref.split("/")[-1] for ref in __import__("re").findall(r'"#/components/schemas/([^"]+)"', text)}
    assert referenced <= names, referenced - names


def test_the_schemas_are_the_parsers(document: dict[str, Any]) -> None:
    body = document["paths"]["/api/chat"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    chat = _validator(document, body["$ref"].split("/")[-1])
    chat.validate({"model": "m", "messages": [{"role": "user", "content": "hi"}], "options": {"temperature": 0.5}})
    with pytest.raises(jsonschema.ValidationError):
        chat.validate({"model": "m", "messages": 5})
    with pytest.raises(jsonschema.ValidationError):
        chat.validate({"model": "m", "stream": "yes"})
    openai_body = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]
    openai_chat = _validator(document, openai_body["schema"]["$ref"].split("/")[-1])
    openai_chat.validate({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})
    with pytest.raises(jsonschema.ValidationError):
        openai_chat.validate({"model": "m"})  # messages are required
    streams = document["paths"]["/api/generate"]["post"]["responses"]["200"]["content"]
    assert set(streams) == {"application/json", "application/x-ndjson"}


def test_the_stored_openai_schemas_are_the_installed_vllms() -> None:
    pytest.importorskip("vllm")
    stored = json.loads(Path(openapi.OPENAI_SCHEMAS).read_text())
    assert stored == json.loads(json.dumps(openapi.generate_openai_schemas())), (
        "vLLM's /v1 models changed: run `python -m vllama.serve.openapi` and commit vllama/serve/openai_schemas.json")


def test_schemathesis_reads_it(document: dict[str, Any]) -> None:
    schemathesis = pytest.importorskip("schemathesis")
    schema = schemathesis.openapi.from_dict(document)
    assert len(list(schema.get_all_operations())) == 26
