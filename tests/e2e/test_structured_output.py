"""`format` (Ollama) and `response_format` (OpenAI) constrain the output to JSON.

The model has random weights, so whatever it "wants" to say is noise: output that parses and
validates against the schema can only come from the grammar the request asked for.
"""

from __future__ import annotations

import json
from typing import Literal

import httpx
import jsonschema
import ollama
import openai
import pytest
from pydantic import BaseModel, Field

from tests.e2e.conftest import PRIMARY


class Pet(BaseModel):
    kind: Literal["cat", "dog", "fish"]
    name: str = Field(max_length=8)
    age: int = Field(ge=0, le=30)
    vaccinated: bool


SCHEMA = Pet.model_json_schema()
GREEDY = {"temperature": 0, "num_predict": 200}
MESSAGES = [{"role": "user", "content": "Describe a pet as JSON."}]


@pytest.fixture(scope="module")
def client(base_url: str) -> ollama.Client:
    return ollama.Client(host=base_url)


def test_chat_schema(client: ollama.Client) -> None:
    answer = client.chat(model=PRIMARY, messages=MESSAGES, format=SCHEMA, options=GREEDY)
    assert answer.done_reason == "stop"
    Pet.model_validate_json(answer.message.content)


def test_chat_schema_streaming_equals_whole(client: ollama.Client) -> None:
    whole = client.chat(model=PRIMARY, messages=MESSAGES, format=SCHEMA, options=GREEDY).message.content
    parts = client.chat(model=PRIMARY, messages=MESSAGES, format=SCHEMA, options=GREEDY, stream=True)
    assert "".join(p.message.content for p in parts) == whole


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generate_schema_while_sampling(client: ollama.Client, seed: int) -> None:
    options = {"temperature": 1.0, "seed": seed, "num_predict": 300}
    answer = client.generate(model=PRIMARY, prompt="A pet:", format=SCHEMA, options=options)
    jsonschema.validate(json.loads(answer.response), SCHEMA)


def test_generate_json(client: ollama.Client) -> None:
    answer = client.generate(model=PRIMARY, prompt="Some JSON:", format="json", options=GREEDY)
    assert answer.done_reason == "stop"
    assert isinstance(json.loads(answer.response), dict)


def test_unconstrained_output_is_not_json(client: ollama.Client) -> None:
    # The control: the same request without `format` gives noise, so the tests above are not
    # passing by luck of the weights.
    answer = client.chat(model=PRIMARY, messages=MESSAGES, options=GREEDY)
    with pytest.raises(ValueError):
        Pet.model_validate_json(answer.message.content)


def test_openai_json_schema(base_url: str) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused")
    answer = client.chat.completions.create(
        model=PRIMARY, messages=MESSAGES, max_tokens=200, temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "pet", "schema": SCHEMA}},
    )
    Pet.model_validate_json(answer.choices[0].message.content)


@pytest.mark.parametrize(
    ("format", "needle"),
    [("xml", 'expected "json" or a valid JSON Schema object'), ({"type": "no-such-type"}, "")],
)
def test_bad_format_is_a_400(http: httpx.Client, format: object, needle: str) -> None:
    response = http.post("/api/chat", json={"model": PRIMARY, "messages": MESSAGES, "format": format})
    assert response.status_code == 400, response.text
    assert needle in response.json()["error"]
