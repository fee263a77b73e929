"""Model management through the official client: create (a Modelfile's parts on a served model),
copy, delete, pull (no model hub here: a clear error and nothing written), push (refused) and
blobs; `/api/tags` and `/api/show` reflect all of it. Persistence across a restart is in
test_persistence.py (it needs its own server)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from tests.e2e.conftest import PRIMARY, SECOND
from tests.support import ServerProcess

SYSTEM = "You are a pirate. Answer in one sentence."
OPTIONS = {"num_predict": 8, "ignore_eos": True}


@pytest.fixture(scope="module")
def client(base_url: str) -> ollama.Client:
    return ollama.Client(host=base_url)


@pytest.fixture
def cleanup(client: ollama.Client) -> Iterator[list[str]]:
    """Names a test creates; deleted afterwards, so that other tests see only the served models."""
    names: list[str] = []
    yield names
    for name in names:
        try:
            client.delete(name)
        except ollama.ResponseError:
            pass


def system_of(http: httpx.Client, name: str) -> str | None:
    # ollama-python's ShowResponse has no `system`; Ollama's (and our) /api/show answers it.
    return http.post("/api/show", json={"model": name}).json().get("system")


def test_create_show_list_and_use(client: ollama.Client, http: httpx.Client, cleanup: list[str]) -> None:
    cleanup.append("pirate:v1")
    statuses = [s.status for s in client.create(
        model="pirate:v1", from_=PRIMARY, system=SYSTEM, license="MIT",
        parameters={"temperature": 0, "stop": ["<|im_end|>"]},
        messages=[{"role": "user", "content": "Ahoy?"}, {"role": "assistant", "content": "Arr."}], stream=True,
    )]
    assert statuses[0].startswith("using existing layer sha256:") and statuses[-2:] == ["writing manifest", "success"]

    listed = {m.model: m for m in client.list().models}
    assert "pirate:v1" in listed and listed["pirate:v1"].details.parent_model == PRIMARY
    shown = client.show("pirate:v1")
    assert system_of(http, "pirate:v1") == SYSTEM and shown.license == "MIT"
    assert 'stop                           "<|im_end|>"' in shown.parameters
    assert f"FROM {PRIMARY}" in shown.modelfile and "MESSAGE user Ahoy?" in shown.modelfile
    assert shown.capabilities == client.show(PRIMARY).capabilities

    # The created model answers as its base would with its system message, examples and
    # parameters written into the request: the same greedy tokens.
    created = client.chat(model="pirate:v1", messages=[{"role": "user", "content": "Where is the gold?"}], options=OPTIONS)
    spelled_out = client.chat(model=PRIMARY, options={**OPTIONS, "temperature": 0}, messages=[
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": "Ahoy?"}, {"role": "assistant", "content": "Arr."},
        {"role": "user", "content": "Where is the gold?"},
    ])
    assert created.model == "pirate:v1"
    assert (created.message.content, created.prompt_eval_count) == (spelled_out.message.content, spelled_out.prompt_eval_count)


def test_created_model_on_openai_and_on_a_forwarded_base(client: ollama.Client, base_url: str, cleanup: list[str]) -> None:
    cleanup.append("second-pirate")
    client.create(model="second-pirate", from_=SECOND, system=SYSTEM, parameters={"temperature": 0})
    ask = [{"role": "user", "content": "Hello"}]
    through_ollama = client.chat(model="second-pirate", messages=ask, options={"num_predict": 8})
    api = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused")
    through_openai = api.chat.completions.create(model="second-pirate", messages=ask, max_tokens=8)
    assert through_openai.usage.prompt_tokens == through_ollama.prompt_eval_count  # the system message, both ways
    assert through_openai.choices[0].message.content == through_ollama.message.content  # temperature 0, both ways


def test_create_from_a_created_model_and_copy(client: ollama.Client, http: httpx.Client, cleanup: list[str]) -> None:
    cleanup += ["base-pirate", "cheery-pirate", "pirate-copy", "tiny-alias"]
    client.create(model="base-pirate", from_=PRIMARY, system=SYSTEM, parameters={"temperature": 0.5, "top_k": 5})
    client.create(model="cheery-pirate", from_="base-pirate", parameters={"temperature": 0.1})
    shown = client.show("cheery-pirate")
    assert system_of(http, "cheery-pirate") == SYSTEM and shown.details.parent_model == PRIMARY  # flattened
    assert "temperature                    0.1" in shown.parameters and "top_k                          5" in shown.parameters

    client.copy("cheery-pirate", "pirate-copy")
    assert system_of(http, "pirate-copy") == SYSTEM
    client.copy(PRIMARY, "tiny-alias")  # a served model can be copied too: another name for it
    assert client.chat(model="tiny-alias", messages=[{"role": "user", "content": "hi"}], options=OPTIONS).done


def test_delete(client: ollama.Client, cleanup: list[str]) -> None:
    cleanup.append("short-lived")
    client.create(model="short-lived", from_=PRIMARY)
    client.delete("short-lived")
    assert "short-lived:latest" not in {m.model for m in client.list().models}
    with pytest.raises(ollama.ResponseError) as gone:
        client.chat(model="short-lived", messages=[{"role": "user", "content": "hi"}])
    assert gone.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as again:
        client.delete("short-lived")
    assert again.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as served:
        client.delete(PRIMARY)
    assert served.value.status_code == 400 and "configuration" in served.value.error


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "x", "from": "nope:1b"}, 404, "base model 'nope:1b' not found"),
        ({"model": "x"}, 400, "neither 'from' or 'files' was specified"),
        ({"model": PRIMARY, "from": PRIMARY}, 400, "cannot be replaced"),
        ({"model": "x", "from": PRIMARY, "parameters": {"temperature": "hot"}}, 400, "temperature"),
        ({"model": "x", "from": PRIMARY, "template": "{{ if }}"}, 400, "invalid template"),
        ({"model": "x", "from": PRIMARY, "quantize": "q4_K_M"}, 400, "quantize"),
        ({"model": "x", "files": {"model.gguf": "sha256:" + "0" * 64}}, 400, "not supported"),
        ({"model": "bad name!", "from": PRIMARY}, 400, "invalid model name"),
    ],
)
def test_create_errors_write_nothing(http: httpx.Client, body: dict, status: int, message: str, client: ollama.Client) -> None:
    before = {m.model for m in client.list().models}
    response = http.post("/api/create", json={**body, "stream": False})
    assert response.status_code == status and message in response.json()["error"]
    assert {m.model for m in client.list().models} == before


def test_create_from_modelfile_text(http: httpx.Client, client: ollama.Client, cleanup: list[str]) -> None:
    cleanup.append("old-client")
    modelfile = f'FROM {PRIMARY}\nSYSTEM """Be brief."""\nPARAMETER temperature 0\nPARAMETER stop END\n'
    response = http.post("/api/create", json={"name": "old-client", "modelfile": modelfile, "stream": False})
    assert response.json() == {"status": "success"}
    assert system_of(http, "old-client") == "Be brief."


def test_pull(client: ollama.Client, server: ServerProcess) -> None:
    assert [s.status for s in client.pull(PRIMARY, stream=True)] == ["pulling manifest", "success"]  # served: nothing to get
    with pytest.raises(ollama.ResponseError) as failed:
        list(client.pull("qwen2.5:0.5b", stream=True))  # in the catalog, not served, and no hub here
    assert "pull model manifest: cannot reach the model hub for 'Qwen/Qwen2.5-0.5B-Instruct'" in failed.value.error
    with pytest.raises(ollama.ResponseError) as whole:
        client.pull("qwen2.5:0.5b")
    assert whole.value.status_code == 500
    hub = server.workdir / "home" / "models" / "hub"
    assert not hub.exists() or list(hub.iterdir()) == []  # nothing half-written
    with pytest.raises(ollama.ResponseError) as unknown:
        client.pull("no-such-model")
    assert unknown.value.status_code == 400 and "not in vllama's catalog" in unknown.value.error


def test_push_is_refused(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        client.push(PRIMARY)
    assert refused.value.status_code == 501 and "push is not supported" in refused.value.error


def test_blobs(client: ollama.Client, http: httpx.Client, tmp_path: Path, server: ServerProcess) -> None:
    data = b"some weights, say"
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert http.head(f"/api/blobs/{digest}").status_code == 404
    assert client.create_blob(path) == digest
    assert http.head(f"/api/blobs/{digest}").status_code == 200
    assert http.post(f"/api/blobs/{digest}", content=data).status_code == 200  # already there
    wrong = http.post(f"/api/blobs/sha256:{'0' * 64}", content=data)
    assert wrong.status_code == 400 and wrong.json()["error"].startswith('digest mismatch, expected "sha256:000')
    assert http.post("/api/blobs/md5:abc", content=data).status_code == 400
    stored = sorted(p.name for p in (server.workdir / "home" / "blobs").iterdir())
    assert stored == ["sha256-" + hashlib.sha256(data).hexdigest()]  # no partial upload left
