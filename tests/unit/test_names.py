"""Ollama model names: parsing, validation, display forms and lookup keys."""

from __future__ import annotations

import pytest

from vllama.errors import InvalidRequest
from vllama.models.names import DEFAULT_HOST, DEFAULT_NAMESPACE, DEFAULT_TAG, ModelName, name_key


@pytest.mark.parametrize(
    ("text", "host", "namespace", "model", "tag"),
    [
        ("qwen2.5", DEFAULT_HOST, DEFAULT_NAMESPACE, "qwen2.5", DEFAULT_TAG),
        ("qwen2.5:1.5b", DEFAULT_HOST, DEFAULT_NAMESPACE, "qwen2.5", "1.5b"),
        ("qwen2.5:1.5b-instruct-q4_K_M", DEFAULT_HOST, DEFAULT_NAMESPACE, "qwen2.5", "1.5b-instruct-q4_K_M"),
        ("user/my-model", DEFAULT_HOST, "user", "my-model", DEFAULT_TAG),
        ("user/my-model:v1", DEFAULT_HOST, "user", "my-model", "v1"),
        ("example.com/ns/m:tag", "example.com", "ns", "m", "tag"),
        ("host:5000/ns/m:tag", "host:5000", "ns", "m", "tag"),
        ("host:5000/ns/m", "host:5000", "ns", "m", DEFAULT_TAG),
        ("_private/_m:_t", DEFAULT_HOST, "_private", "_m", "_t"),
        ("  padded:tag  ", DEFAULT_HOST, DEFAULT_NAMESPACE, "padded", "tag"),
        ("a" * 80 + ":" + "b" * 80, DEFAULT_HOST, DEFAULT_NAMESPACE, "a" * 80, "b" * 80),
        ("Qwen/Qwen2.5-0.5B-Instruct", DEFAULT_HOST, "Qwen", "Qwen2.5-0.5B-Instruct", DEFAULT_TAG),
    ],
)
def test_parse_valid(text: str, host: str, namespace: str, model: str, tag: str) -> None:
    assert ModelName.parse(text) == ModelName(host=host, namespace=namespace, model=model, tag=tag)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "a/b/c/d",
        "-x",
        ".x",
        "m:-tag",
        "m:",
        ":tag",
        "ns.x/m",
        "ns/m/",
        "/m",
        "m:t:u",
        "m with space",
        "m@sha",
        "a" * 81,
        "m:" + "t" * 81,
        "n" * 81 + "/m",
        "bad host/ns/m",
        "host:port/ns/m",
    ],
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(InvalidRequest, match="invalid model name"):
        ModelName.parse(text)


def test_invalid_name_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as info:
        ModelName.parse("a/b/c/d")
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    ("text", "display"),
    [
        ("m", "m:latest"),
        ("m:tag", "m:tag"),
        ("library/m:tag", "m:tag"),
        ("registry.ollama.ai/library/m:tag", "m:tag"),
        ("REGISTRY.OLLAMA.AI/Library/m:tag", "m:tag"),
        ("ns/m:tag", "ns/m:tag"),
        ("ns/m", "ns/m:latest"),
        ("registry.ollama.ai/ns/m:tag", "ns/m:tag"),
        ("host/ns/m:tag", "host/ns/m:tag"),
        ("host:5000/ns/m:tag", "host:5000/ns/m:tag"),
        ("host:5000/library/m", "host:5000/library/m:latest"),
    ],
)
def test_display(text: str, display: str) -> None:
    assert ModelName.parse(text).display == display


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("qwen2.5:1.5b", "QWEN2.5:1.5B"),
        ("m", "m:latest"),
        ("m", "library/m:latest"),
        ("m", "registry.ollama.ai/library/m:latest"),
        ("NS/M:T", "ns/m:t"),
        ("Host:5000/NS/m:T", "host:5000/ns/M:t"),
    ],
)
def test_same_key(a: str, b: str) -> None:
    assert name_key(a) == name_key(b)
    assert ModelName.parse(a).key == ModelName.parse(b).key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("m:1", "m:2"),
        ("m", "ns/m"),
        ("ns/m", "other/ns/m"),
        ("m:latest", "m:latest-instruct"),
    ],
)
def test_different_key(a: str, b: str) -> None:
    assert name_key(a) != name_key(b)


def test_key_is_full_lowercase_name() -> None:
    assert name_key("Qwen2.5:1.5B") == "registry.ollama.ai/library/qwen2.5:1.5b"


def test_name_key_raises_for_invalid() -> None:
    with pytest.raises(InvalidRequest):
        name_key("a/b/c/d")
