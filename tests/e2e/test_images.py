"""Images: Ollama's base64 `images` (and OpenAI's data-URI image parts) reach vLLM's multimodal
input of a vision model. The model is random (an Idefics3 made offline), so the proof is that
the image changes what it says, and what it reads: the prompt grows by the image's tokens."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import ollama
import openai
import pytest

from tests.e2e.conftest import PRIMARY, VISION

OPTIONS = {"temperature": 0, "num_predict": 12, "ignore_eos": True}


def png(color: str, size: int = 64) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def client(base_url: str) -> ollama.Client:
    return ollama.Client(host=base_url)


def _chat(client: ollama.Client, images: list[bytes | str | Path]) -> ollama.ChatResponse:
    message = {"role": "user", "content": "What is in this picture?", "images": images}
    return client.chat(model=VISION, messages=[message], options=OPTIONS)


def test_the_image_reaches_the_model(client: ollama.Client, tmp_path: Path) -> None:
    red, blue = _chat(client, [png("red")]), _chat(client, [png("blue")])
    assert red.message.content != blue.message.content  # greedy: only the image differs
    (tmp_path / "red.png").write_bytes(png("red"))
    assert _chat(client, [tmp_path / "red.png"]).message.content == red.message.content  # a path, as the CLI sends
    without = client.chat(model=VISION, messages=[{"role": "user", "content": "What is in this picture?"}], options=OPTIONS)
    assert red.prompt_eval_count > without.prompt_eval_count  # the image's tokens
    two = _chat(client, [png("red"), png("blue")])
    assert two.prompt_eval_count - red.prompt_eval_count == red.prompt_eval_count - without.prompt_eval_count


def test_generate_and_stream(client: ollama.Client) -> None:
    whole = client.generate(model=VISION, prompt="Describe it.", images=[png("green")], options=OPTIONS)
    parts = list(client.generate(model=VISION, prompt="Describe it.", images=[png("green")], options=OPTIONS, stream=True))
    assert "".join(p.response for p in parts) == whole.response and parts[-1].done
    other = client.generate(model=VISION, prompt="Describe it.", images=[png("yellow")], options=OPTIONS)
    assert other.response != whole.response


def test_openai_image_part(base_url: str, client: ollama.Client) -> None:
    api = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused")
    data_uri = "data:image/png;base64," + base64.b64encode(png("red")).decode()
    answer = api.chat.completions.create(
        model=VISION, temperature=0, max_tokens=12,
        messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": data_uri}}, {"type": "text", "text": "What is in this picture?"},
        ]}],
    )
    # The same message as Ollama's (image first, then the text): the same answer.
    assert answer.choices[0].message.content == _chat(client, [png("red")]).message.content


def test_images_on_a_text_model(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model=PRIMARY, messages=[{"role": "user", "content": "x", "images": [png("red")]}])
    assert refused.value.status_code == 400 and refused.value.error == f'"{PRIMARY}" does not support images'
    assert "vision" in client.show(VISION).capabilities and "vision" not in client.show(PRIMARY).capabilities
