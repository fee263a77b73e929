"""Models made with create and copy survive a restart of the application (and a delete does):
two servers one after the other on the same vllama home directory."""

from __future__ import annotations

import shutil

import httpx
import ollama
import pytest

from tests.support import ServerProcess, available_names, free_port, short_tmpdir, vllama_command


def _server(home: str) -> ServerProcess:
    port = free_port()
    return ServerProcess(
        vllama_command("serve", "--port", str(port), "--dashboard-port", "0", "--engine-arg", "enforce_eager=true"),
        short_tmpdir("vt-keep-"), port, env={"VLLAMA_HOME": home},
    )


def _ready(server: ServerProcess) -> bool:
    return httpx.get(f"{server.url}/vllama/status", timeout=3).status_code == 200


@pytest.mark.slow
def test_created_models_survive_a_restart() -> None:
    home = short_tmpdir("vt-home-")
    first = _server(str(home))
    try:
        first.start()
        first.wait_until(_ready, timeout_s=400)
        client = ollama.Client(host=first.url)
        client.create(model="keeper", from_="vllama-tiny", system="Remember me.", parameters={"temperature": 0})
        client.copy("keeper", "keeper-copy")
        client.create(model="goner", from_="vllama-tiny")
        client.delete("goner")
        before = client.chat(model="keeper", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 6})
    finally:
        first.stop()

    second = _server(str(home))
    try:
        second.start()
        second.wait_until(_ready, timeout_s=400)
        client = ollama.Client(host=second.url)
        listed = {m.model for m in client.list().models}
        assert listed == {"vllama-tiny:latest", "keeper:latest", "keeper-copy:latest"} | available_names(home)
        assert 'SYSTEM """Remember me."""' in client.show("keeper-copy").modelfile
        after = client.chat(model="keeper", messages=[{"role": "user", "content": "hi"}], options={"num_predict": 6})
        assert after.message.content == before.message.content  # same definition, same greedy answer
    finally:
        second.stop()
        shutil.rmtree(home, ignore_errors=True)
