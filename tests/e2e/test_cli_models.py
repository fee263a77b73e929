"""The `ollama`-style commands of the vllama CLI, run as a user runs them, against the running
application (found through OLLAMA_HOST, as the `ollama` CLI finds its server)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import PRIMARY, VISION
from tests.support import ServerProcess, vllama_command

# `ps` lists loaded models, and a first load can outlast a command's timeout: whatever ran before.
pytestmark = pytest.mark.usefixtures("loaded")


def vllama(server: ServerProcess, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OLLAMA_HOST": f"127.0.0.1:{server.port}", "NO_COLOR": "1"}
    return subprocess.run(vllama_command(*args), env=env, input=stdin, capture_output=True, text=True, timeout=120)


def test_list_ps_show(server: ServerProcess) -> None:
    listed = vllama(server, "list")
    assert listed.returncode == 0
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    assert {row.split()[0] for row in rows} >= {PRIMARY, VISION}
    ps = vllama(server, "ps").stdout.splitlines()
    assert ps[0].split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    assert any(line.startswith(PRIMARY) and "100% CPU" in line and "Forever" in line for line in ps)
    shown = vllama(server, "show", "vllama-tiny").stdout
    # The model's own context (as Ollama's show: the weights' trained length), not the engine's.
    assert "architecture        qwen2" in shown and "context length      32768" in shown
    assert "num_predict    2048" in shown.split("Parameters")[1]  # the random model's bound on an answer
    assert [line.strip() for line in shown.split("Capabilities")[1].splitlines()[1:5]] == ["completion", "tools", "insert", "thinking"]
    assert "<|im_start|>" in vllama(server, "show", "vllama-tiny", "--template").stdout


def test_create_cp_run_rm(server: ServerProcess, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f'FROM {PRIMARY}\nSYSTEM """You are terse."""\nPARAMETER temperature 0\nPARAMETER num_predict 6\n')
    try:
        created = vllama(server, "create", "terse", "-f", str(modelfile))
        assert created.returncode == 0, created.stderr
        assert created.stderr.splitlines()[-1] == "success"  # progress goes to stderr, as ollama's
        assert vllama(server, "cp", "terse", "terse-two").stdout.strip() == "copied 'terse' to 'terse-two'"
        assert vllama(server, "show", "terse-two", "--system").stdout.strip() == "You are terse."
        assert "PARAMETER temperature 0" in vllama(server, "show", "terse-two", "--modelfile").stdout

        one = vllama(server, "run", "terse", "Hello there")
        again = vllama(server, "run", "terse", stdin="Hello there")  # the prompt from a pipe
        assert one.returncode == 0 and one.stdout.strip() and one.stdout == again.stdout  # temperature 0
        verbose = vllama(server, "run", "terse", "Hello there", "--verbose")
        assert "eval count:           6 token(s)" in verbose.stderr
    finally:
        removed = vllama(server, "rm", "terse", "terse-two")
    assert removed.stdout.splitlines() == ["deleted 'terse'", "deleted 'terse-two'"]
    assert "terse" not in vllama(server, "list").stdout


def test_interactive_run(server: ServerProcess) -> None:
    # Not a terminal here, so `run` reads its prompt from stdin; the chat loop itself is covered
    # by the unit tests with a scripted terminal. One more turn through the real server:
    answer = vllama(server, "run", PRIMARY, "--format", "json", stdin="Give me JSON")
    assert answer.returncode == 0 and answer.stdout.strip().startswith("{")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "no-such-model"), "Error: model 'no-such-model' not found"),
        (("pull", "qwen2.5:0.5b"), "Error: pull model manifest: cannot reach the model hub"),
        (("rm", PRIMARY), "Error: model 'vllama-tiny:latest' is served from the application's configuration"),
    ],
)
def test_errors(server: ServerProcess, args: tuple[str, ...], message: str) -> None:
    result = vllama(server, *args)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith(message), result.stderr


def test_no_server() -> None:
    env = {**os.environ, "OLLAMA_HOST": "127.0.0.1:9"}
    result = subprocess.run(vllama_command("list"), env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "could not connect to vllama server at http://127.0.0.1:9" in result.stderr
