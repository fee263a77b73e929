"""The `ollama`-style client commands, run through Typer against an `httpx.MockTransport` server:
the exact requests they send, the exact output they print, their errors and exit codes."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from vllama.cli import client, run
from vllama.cli.client import ClientError, OllamaClient, resolve_host
from vllama.cli.main import app

BASE = "http://127.0.0.1:11434"
DIGEST = "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72"
Answer = httpx.Response | Callable[[Any], httpx.Response]


def ndjson(*items: dict[str, Any], status: int = 200) -> httpx.Response:
    body = "".join(json.dumps(item) + "\n" for item in items)
    return httpx.Response(status, content=body.encode(), headers={"Content-Type": "application/x-ndjson"})


def reply(data: Any = None, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=data) if data is not None else httpx.Response(status)


class FakeServer:
    """Answers each (method, path) from a table (a list answers successive calls) and records requests."""

    def __init__(self, routes: dict[tuple[str, str], Answer | list[Answer]]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, str(request.url), body))
        answer = self.routes[(request.method, request.url.path)]
        if isinstance(answer, list):
            answer = answer.pop(0)
        return answer(body) if callable(answer) else answer


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeServer]:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)

    def install(routes: dict[tuple[str, str], Any]) -> FakeServer:
        fake = FakeServer(routes)
        monkeypatch.setattr(client, "TRANSPORT", httpx.MockTransport(fake))
        return fake

    return install


def invoke(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin, env=env)


def ago(**delta: float) -> str:
    return (datetime.datetime.now(datetime.UTC) - datetime.timedelta(**delta)).isoformat()


# --- OLLAMA_HOST ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("", "http://127.0.0.1:11434"),
        ("1.2.3.4", "http://1.2.3.4:11434"),
        (":1234", "http://127.0.0.1:1234"),
        ("1.2.3.4:1234", "http://1.2.3.4:1234"),
        ("example.com", "http://example.com:11434"),
        ("example.com:1234", "http://example.com:1234"),
        (":66000", "http://127.0.0.1:11434"),
        (":-1", "http://127.0.0.1:11434"),
        ("0.0.0.0", "http://127.0.0.1:11434"),
        ("0.0.0.0:1234", "http://127.0.0.1:1234"),
        ("[::1]", "http://[::1]:11434"),
        ("::1", "http://[::1]:11434"),
        ("[::]", "http://[::1]:11434"),
        ("[::1]:1337", "http://[::1]:1337"),
        (" 1.2.3.4 ", "http://1.2.3.4:11434"),
        ('" 1.2.3.4 "', "http://1.2.3.4:11434"),
        ("'1.2.3.4'", "http://1.2.3.4:11434"),
        ("http://1.2.3.4", "http://1.2.3.4:80"),
        ("http://1.2.3.4:4321", "http://1.2.3.4:4321"),
        ("https://1.2.3.4", "https://1.2.3.4:443"),
        ("https://0.0.0.0:4321", "https://127.0.0.1:4321"),
        ("https://example.com/ollama", "https://example.com:443/ollama"),
        ("localhost:8080", "http://localhost:8080"),
    ],
)
def test_resolve_host(value: str, url: str) -> None:
    assert resolve_host(value) == url


def test_host_from_environment(server: Callable[..., FakeServer]) -> None:
    fake = server({("GET", "/prefix/api/tags"): reply({"models": []})})
    result = invoke("list", env={"OLLAMA_HOST": "https://gpu.example.com/prefix"})
    assert result.exit_code == 0, result.output
    assert fake.requests == [("GET", "https://gpu.example.com/prefix/api/tags", None)]  # httpx drops :443


# --- the client --------------------------------------------------------------------------------------------


def test_stream_raises_on_error_line() -> None:
    transport = httpx.MockTransport(lambda r: ndjson({"status": "pulling manifest"}, {"error": "boom"}))
    seen: list[dict[str, Any]] = []
    with OllamaClient(BASE, transport=transport) as ollama, pytest.raises(ClientError, match="boom") as caught:
        seen.extend(ollama.stream("POST", "/api/pull", {"model": "m"}))
    assert seen == [{"status": "pulling manifest"}]
    assert caught.value.status_code == 200


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (reply({"error": "model 'x' not found"}, 404), "model 'x' not found"),
        (httpx.Response(404, text="404 page not found"), "404 page not found"),
        (httpx.Response(502), "502 Bad Gateway"),
    ],
)
def test_error_messages(response: httpx.Response, message: str) -> None:
    with OllamaClient(BASE, transport=httpx.MockTransport(lambda r: response)) as ollama:
        with pytest.raises(ClientError) as caught:
            ollama.call("POST", "/api/show", {"model": "x"})
        assert (caught.value.message, caught.value.status_code) == (message, response.status_code)
        with pytest.raises(ClientError, match=message):
            list(ollama.stream("POST", "/api/chat", {}))


def test_connection_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    monkeypatch.setattr(client, "TRANSPORT", httpx.MockTransport(refuse))
    result = invoke("ps", env={"OLLAMA_HOST": "0.0.0.0:9999"})
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == ("Error: could not connect to vllama server at http://127.0.0.1:9999; is it running? "
                             "(start one with: vllama serve)\n")


# --- list, ps ---------------------------------------------------------------------------------------------


def test_list(server: Callable[..., FakeServer]) -> None:
    models = [
        {"name": "qwen2.5:1.5b", "model": "qwen2.5:1.5b", "size": 1_543_714_304, "digest": DIGEST,
         "modified_at": ago(minutes=2, seconds=5), "details": {}},
        {"name": "all-minilm:latest", "model": "all-minilm:latest", "size": 45_960_996, "digest": "sha256:" + DIGEST,
         "modified_at": ago(days=3), "details": {}},
    ]
    fake = server({("GET", "/api/tags"): reply({"models": models})})
    result = invoke("list")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "NAME                 ID              SIZE      MODIFIED      \n"
        "qwen2.5:1.5b         a80c4f17acd5    1.5 GB    2 minutes ago    \n"
        "all-minilm:latest    a80c4f17acd5    45 MB     3 days ago       \n"
    )
    assert fake.requests == [("GET", f"{BASE}/api/tags", None)]
    filtered = invoke("ls", "QWEN")
    assert filtered.stdout == (
        "NAME            ID              SIZE      MODIFIED      \n"
        "qwen2.5:1.5b    a80c4f17acd5    1.5 GB    2 minutes ago    \n"
    )


def test_list_empty(server: Callable[..., FakeServer]) -> None:
    server({("GET", "/api/tags"): reply({"models": []})})
    assert invoke("list").stdout == "NAME    ID    SIZE    MODIFIED \n"


def test_ps(server: Callable[..., FakeServer]) -> None:
    def entry(name: str, size: int, vram: int, expires: str) -> dict[str, Any]:
        return {"name": name, "model": name, "size": size, "digest": DIGEST, "details": {}, "expires_at": expires,
                "size_vram": vram, "context_length": 4096}

    future = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=4, seconds=30)).isoformat()
    server({("GET", "/api/ps"): reply({"models": [
        entry("a:latest", 2_000_000_000, 2_000_000_000, "2318-08-19T00:00:00Z"),
        entry("b:latest", 1_000_000_000, 0, future),
        entry("c:latest", 1_000_000_000, 300_000_000, ago(seconds=5)),
    ]})})
    result = invoke("ps")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "NAME        ID              SIZE    PROCESSOR          CONTEXT    UNTIL              \n"
        "a:latest    a80c4f17acd5    2 GB    100% GPU           4096       Forever               \n"
        "b:latest    a80c4f17acd5    1 GB    100% CPU           4096       4 minutes from now    \n"
        "c:latest    a80c4f17acd5    1 GB    70%/30% CPU/GPU    4096       Stopping...           \n"
    )


def test_stop_is_the_unload_call(server: Callable[..., FakeServer]) -> None:
    """`ollama stop MODEL`: generate with keep_alive 0 and no prompt."""
    fake = server({("POST", "/api/generate"): reply({"model": "m", "done": True, "done_reason": "unload"})})
    result = invoke("stop", "m")
    assert result.exit_code == 0, result.output
    assert fake.requests == [("POST", f"{BASE}/api/generate", {"model": "m", "keep_alive": 0})]


# --- show ---------------------------------------------------------------------------------------------------

SHOW = {
    "modelfile": "FROM Qwen/Qwen2.5-0.5B-Instruct\n",
    "parameters": 'stop                           "<|im_end|>"\ntemperature                    0.7',
    "template": "{{ .Prompt }}",
    "system": "You are Qwen.\nYou are helpful.\n\nBe brief.",
    "license": "Apache License\nVersion 2.0",
    "details": {"format": "safetensors", "family": "qwen2", "parameter_size": "494.03M", "quantization_level": "BF16"},
    "model_info": {"general.architecture": "qwen2", "general.parameter_count": 494_032_768,
                   "qwen2.context_length": 32768, "qwen2.embedding_length": 896, "tokenizer.merges": []},
    "capabilities": ["completion", "tools"],
    "modified_at": "2025-05-04T17:37:44.706015-07:00",
}


def test_show(server: Callable[..., FakeServer]) -> None:
    fake = server({("POST", "/api/show"): reply(SHOW)})
    result = invoke("show", "qwen2.5:0.5b")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "  Model\n"
        "    architecture        qwen2      \n"
        "    parameters          494.03M    \n"
        "    context length      32768      \n"
        "    embedding length    896        \n"
        "    quantization        BF16       \n"
        "\n"
        "  Capabilities\n"
        "    completion    \n"
        "    tools         \n"
        "\n"
        "  Parameters\n"
        '    stop           "<|im_end|>"    \n'
        "    temperature    0.7             \n"
        "\n"
        "  System\n"
        "    You are Qwen.       \n"
        "    You are helpful.    \n"
        "    ...                 \n"
        "\n"
        "  License\n"
        "    Apache License    \n"
        "    Version 2.0       \n"
        "\n"
    )
    assert fake.requests == [("POST", f"{BASE}/api/show", {"model": "qwen2.5:0.5b"})]


def test_show_verbose_metadata(server: Callable[..., FakeServer]) -> None:
    fake = server({("POST", "/api/show"): reply({**SHOW, "model_info": {
        **SHOW["model_info"], "tokenizer.merges": ["Ġ Ġ", "ĠĠ ĠĠ", "i n"], "general.file_type": 8e9}})})
    result = invoke("show", "m", "-v")
    assert fake.requests[0][2] == {"model": "m", "verbose": True}
    metadata = result.stdout.split("  Metadata\n")[1].split("\n\n")[0].splitlines()
    assert metadata == [
        "    general.architecture       qwen2               ",
        "    general.file_type          8e+09               ",
        "    general.parameter_count    4.94032768e+08      ",
        "    qwen2.context_length       32768               ",
        "    qwen2.embedding_length     896                 ",
        "    tokenizer.merges           [Ġ Ġ ...+2 more]    ",
    ]


@pytest.mark.parametrize(
    ("flag", "output"),
    [
        ("--modelfile", SHOW["modelfile"] + "\n"),
        ("--parameters", SHOW["parameters"] + "\n"),
        ("--license", SHOW["license"] + "\n"),
        ("--template", SHOW["template"]),
        ("--system", SHOW["system"]),
    ],
)
def test_show_one_field(server: Callable[..., FakeServer], flag: str, output: str) -> None:
    server({("POST", "/api/show"): reply(SHOW)})
    result = invoke("show", "m", flag)
    assert (result.exit_code, result.stdout) == (0, output)


def test_show_errors(server: Callable[..., FakeServer]) -> None:
    server({("POST", "/api/show"): reply({"error": "model 'nope' not found"}, 404)})
    result = invoke("show", "nope")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "", "Error: model 'nope' not found\n")
    both = invoke("show", "m", "--system", "--template")
    assert both.exit_code == 1
    assert both.stderr == ("Error: only one of '--license', '--modelfile', '--parameters', '--system', or "
                           "'--template' can be specified\n")


# --- pull, create, cp, rm -------------------------------------------------------------------------------------

PULL = [
    {"status": "pulling manifest"},
    {"status": f"pulling {DIGEST[:12]}", "digest": f"sha256:{DIGEST}", "total": 2_000_000_000},
    {"status": f"pulling {DIGEST[:12]}", "digest": f"sha256:{DIGEST}", "total": 2_000_000_000, "completed": 10**9},
    {"status": f"pulling {DIGEST[:12]}", "digest": f"sha256:{DIGEST}", "total": 2_000_000_000,
     "completed": 2_000_000_000},
    {"status": "verifying sha256 digest"},
    {"status": "writing manifest"},
    {"status": "success"},
]


def test_pull(server: Callable[..., FakeServer]) -> None:
    fake = server({("POST", "/api/pull"): ndjson(*PULL)})
    result = invoke("pull", "qwen2.5:0.5b", "--insecure")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == (
        "pulling manifest\npulling a80c4f17acd5: 100% 2 GB\nverifying sha256 digest\nwriting manifest\nsuccess\n"
    )
    assert fake.requests == [("POST", f"{BASE}/api/pull", {"model": "qwen2.5:0.5b", "insecure": True, "stream": True})]


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (ndjson({"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}),
         "Error: pull model manifest: file does not exist\n"),
        (reply({"error": "invalid model name"}, 400), "Error: invalid model name\n"),
        (ndjson({"status": "pulling manifest"}),
         "Error: the server closed the progress stream before reporting success\n"),
    ],
)
def test_pull_errors(server: Callable[..., FakeServer], response: httpx.Response, error: str) -> None:
    server({("POST", "/api/pull"): response})
    result = invoke("pull", "nope")
    assert result.exit_code == 1
    assert result.stderr.endswith(error)


CREATE_STATUS = [{"status": "using existing layer sha256:abc"}, {"status": "writing manifest"}, {"status": "success"}]


def test_create(server: Callable[..., FakeServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = server({("POST", "/api/create"): ndjson(*CREATE_STATUS)})
    (tmp_path / "Modelfile").write_text('FROM qwen2.5:0.5b\nPARAMETER temperature 0.2\nSYSTEM """Be\nbrief."""\n')
    monkeypatch.chdir(tmp_path)
    result = invoke("create", "brief")
    assert result.exit_code == 0, result.output
    assert result.stderr == "gathering model components\nusing existing layer sha256:abc\nwriting manifest\nsuccess\n"
    assert fake.requests == [("POST", f"{BASE}/api/create", {
        "model": "brief", "from": "qwen2.5:0.5b", "system": "Be\nbrief.", "parameters": {"temperature": 0.2},
        "stream": True,
    })]


def test_create_with_file_flag_and_warnings(server: Callable[..., FakeServer], tmp_path: Path) -> None:
    fake = server({("POST", "/api/create"): ndjson(*CREATE_STATUS)})
    path = tmp_path / "Other.modelfile"
    path.write_text("FROM m\nPARAMETER mirostat 2\nMESSAGE user hi\n")
    result = invoke("create", "n", "-f", str(path))
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("warning: parameter mirostat is deprecated (line 2)\ngathering model components\n")
    assert fake.requests[0][2] == {"model": "n", "from": "m", "messages": [{"role": "user", "content": "hi"}],
                                   "stream": True}


PATH_ERROR = ("Error: vllama create takes FROM <model name>; to serve weights from a directory, start the server "
              "with --model <dir>\n")


@pytest.mark.parametrize(
    ("modelfile", "error"),
    [
        (None, PATH_ERROR),  # no Modelfile: ollama builds FROM the current directory
        ("FROM .\n", PATH_ERROR),
        ("FROM ./weights\n", PATH_ERROR),
        ("FROM weights/model.safetensors\n", PATH_ERROR),
        ("FROM m\nADAPTER ./lora\n",
         "Error: (line 2): ADAPTER is not supported yet: vllama cannot apply LoRA adapters from a Modelfile\n"),
        ("FROM m\nPARAMETER nope 1\n", "Error: (line 2): unknown parameter 'nope'\n"),
        ("SYSTEM hi\n", "Error: no FROM line\n"),
    ],
)
def test_create_errors(
    server: Callable[..., FakeServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, modelfile: str | None,
    error: str,
) -> None:
    fake = server({})
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model.safetensors").write_bytes(b"")
    if modelfile is not None:
        (tmp_path / "Modelfile").write_text(modelfile)
    monkeypatch.chdir(tmp_path)
    result = invoke("create", "n")
    assert (result.exit_code, result.stderr) == (1, error)
    assert fake.requests == []


def test_create_missing_file_and_bad_name(server: Callable[..., FakeServer], tmp_path: Path) -> None:
    server({})
    missing = invoke("create", "n", "-f", str(tmp_path / "nope"))
    assert (missing.exit_code, missing.stderr) == (1, "Error: specified Modelfile wasn't found\n")
    bad = invoke("create", "a/b/c/d")
    assert (bad.exit_code, bad.stderr) == (1, "Error: invalid model name: a/b/c/d\n")


def test_create_server_error(server: Callable[..., FakeServer], tmp_path: Path) -> None:
    server({("POST", "/api/create"): reply({"error": "model 'nope' not found"}, 404)})
    (tmp_path / "Modelfile").write_text("FROM nope")
    result = invoke("create", "n", "-f", str(tmp_path / "Modelfile"))
    assert (result.exit_code, result.stderr) == (1, "gathering model components\nError: model 'nope' not found\n")


def test_cp_and_rm(server: Callable[..., FakeServer]) -> None:
    fake = server({("POST", "/api/copy"): reply(), ("DELETE", "/api/delete"): [reply(), reply()]})
    assert invoke("cp", "a", "b:v2").stdout == "copied 'a' to 'b:v2'\n"
    assert invoke("rm", "a", "b:v2").stdout == "deleted 'a'\ndeleted 'b:v2'\n"
    assert fake.requests == [
        ("POST", f"{BASE}/api/copy", {"source": "a", "destination": "b:v2"}),
        ("DELETE", f"{BASE}/api/delete", {"model": "a"}),
        ("DELETE", f"{BASE}/api/delete", {"model": "b:v2"}),
    ]


def test_rm_stops_at_first_error(server: Callable[..., FakeServer]) -> None:
    server({("DELETE", "/api/delete"): [reply(), reply({"error": "model 'x' not found"}, 404)]})
    result = invoke("rm", "a", "x", "b")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "deleted 'a'\n", "Error: model 'x' not found\n")


# --- run: one prompt ----------------------------------------------------------------------------------------


def generate_chunks(*pieces: str, thinking: tuple[str, ...] = ()) -> httpx.Response:
    chunks = [{"model": "m", "response": "", "thinking": t, "done": False} for t in thinking]
    chunks += [{"model": "m", "response": p, "done": False} for p in pieces]
    chunks.append({"model": "m", "response": "", "done": True, "done_reason": "stop", "total_duration": 1_500_000_000,
                   "load_duration": 1_000_000, "prompt_eval_count": 12, "prompt_eval_duration": 40_000_000,
                   "eval_count": 20, "eval_duration": 400_000_000})
    return ndjson(*chunks)


def show_reply(*capabilities: str, **extra: Any) -> httpx.Response:
    return reply({**SHOW, "capabilities": list(capabilities or ["completion"]), **extra})


def test_run_prompt(server: Callable[..., FakeServer]) -> None:
    fake = server({("POST", "/api/show"): show_reply(), ("POST", "/api/generate"): generate_chunks("Hel", "lo!")})
    result = invoke("run", "m", "Say", "hello", "--verbose", "--format", "json", "--keepalive", "5m")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello!\n\n"
    assert result.stderr == (
        "total duration:       1.5s\n"
        "load duration:        1ms\n"
        "prompt eval count:    12 token(s)\n"
        "prompt eval duration: 40ms\n"
        "prompt eval rate:     300.00 tokens/s\n"
        "eval count:           20 token(s)\n"
        "eval duration:        400ms\n"
        "eval rate:            50.00 tokens/s\n"
    )
    assert fake.requests == [
        ("POST", f"{BASE}/api/show", {"model": "m"}),
        ("POST", f"{BASE}/api/generate",
         {"model": "m", "prompt": "Say hello", "format": "json", "keep_alive": "5m0s", "stream": True}),
    ]


def test_run_stdin_and_thinking(server: Callable[..., FakeServer]) -> None:
    fake = server({
        ("POST", "/api/show"): show_reply("completion", "thinking"),
        ("POST", "/api/generate"): generate_chunks("42", thinking=("Let me ", "think.")),
    })
    result = invoke("run", "m", "Answer:", stdin="What is 6*7?\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Thinking...\nLet me think.\n...done thinking.\n\n42\n\n"
    # `think` is left to the server's default for the model (shown all the same when it thinks).
    assert fake.requests[1][2] == {"model": "m", "prompt": "What is 6*7?\n Answer:", "stream": True}


def test_run_nothink_hidethinking_and_keepalive_forever(server: Callable[..., FakeServer]) -> None:
    fake = server({
        ("POST", "/api/show"): show_reply("completion", "thinking"),
        ("POST", "/api/generate"): generate_chunks("ok", thinking=("hidden",)),
    })
    result = invoke("run", "m", "hi", "--nothink", "--hidethinking", "--keepalive", "-1s")
    assert result.stdout == "ok\n\n"
    assert fake.requests[1][2] == {"model": "m", "prompt": "hi", "think": False, "keep_alive": -1, "stream": True}


def test_run_format_schema(server: Callable[..., FakeServer]) -> None:
    fake = server({("POST", "/api/show"): show_reply(), ("POST", "/api/generate"): generate_chunks("{}")})
    result = invoke("run", "m", "hi", "--format", '{"type": "object"}')
    assert result.exit_code == 0, result.output
    assert fake.requests[1][2]["format"] == {"type": "object"}
    bad = invoke("run", "m", "hi", "--format", "xml")
    assert (bad.exit_code, bad.stderr) == (1, "Error: invalid format: xml (use json or a JSON schema)\n")


def test_run_pulls_a_missing_model(server: Callable[..., FakeServer]) -> None:
    fake = server({
        ("POST", "/api/show"): [reply({"error": "model 'm' not found"}, 404), show_reply()],
        ("POST", "/api/pull"): ndjson({"status": "pulling manifest"}, {"status": "success"}),
        ("POST", "/api/generate"): generate_chunks("hi"),
    })
    result = invoke("run", "m", "hello")
    assert result.exit_code == 0, result.output
    assert [path.removeprefix(BASE) for _, path, _ in fake.requests] == [
        "/api/show", "/api/pull", "/api/show", "/api/generate"]
    assert result.stdout == "hi\n\n"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--keepalive", "5"], 'Error: time: missing unit in duration "5"\n'),
        (["--keepalive", "soon"], 'Error: time: invalid duration "soon"\n'),
    ],
)
def test_run_bad_keepalive(server: Callable[..., FakeServer], args: list[str], error: str) -> None:
    fake = server({})
    result = invoke("run", "m", "hi", *args)
    assert (result.exit_code, result.stderr) == (1, error)
    assert fake.requests == []


def test_run_error_mid_stream(server: Callable[..., FakeServer]) -> None:
    server({("POST", "/api/show"): show_reply(),
            ("POST", "/api/generate"): ndjson({"model": "m", "response": "par", "done": False},
                                              {"error": "engine died"})})
    result = invoke("run", "m", "hi")
    assert (result.exit_code, result.stdout, result.stderr) == (1, "par", "Error: engine died\n")


def test_run_embedding_model(server: Callable[..., FakeServer]) -> None:
    fake = server({("POST", "/api/show"): show_reply("embedding"),
                   ("POST", "/api/embed"): reply({"model": "e", "embeddings": [[0.5, -0.25]]})})
    result = invoke("run", "e", "some text")
    assert (result.exit_code, result.stdout) == (0, "[0.5,-0.25]\n")
    assert fake.requests[1][2] == {"model": "e", "input": "some text"}


# --- run: the interactive chat ---------------------------------------------------------------------------------


class Script:
    """Typed lines for `read_line`: a string, or an exception class (EOFError: Ctrl-D, KeyboardInterrupt: Ctrl-C)."""

    def __init__(self, *lines: str | type[BaseException]) -> None:
        self.lines = list(lines)
        self.prompts: list[str] = []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.lines:
            raise EOFError
        line = self.lines.pop(0)
        if isinstance(line, type):
            raise line()
        return line


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Script]:
    monkeypatch.setattr(run, "is_terminal", lambda stream: True)

    def script(*lines: str | type[BaseException]) -> Script:
        typed = Script(*lines)
        monkeypatch.setattr(run, "read_line", typed)
        return typed

    return script


def chat_reply(text: str) -> Callable[[Any], httpx.Response]:
    def answer(body: Any) -> httpx.Response:
        return ndjson({"model": "m", "message": {"role": "assistant", "content": text}, "done": False},
                      {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True,
                       "eval_count": 3, "eval_duration": 1_000_000_000})

    return answer


def test_chat_keeps_history(server: Callable[..., FakeServer], terminal: Callable[..., Script]) -> None:
    fake = server({("POST", "/api/show"): show_reply(),
                   ("POST", "/api/chat"): [chat_reply("Hi!"), chat_reply("Paris.")]})
    typed = terminal("hello", "capital of France?", "/bye")
    result = invoke("run", "m")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hi!\n\nParis.\n\n"
    assert typed.prompts == [">>> ", ">>> ", ">>> "]
    chats = [body for _, url, body in fake.requests if url.endswith("/api/chat")]
    assert chats[1] == {"model": "m", "stream": True, "messages": [
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "capital of France?"}]}


def test_chat_commands(server: Callable[..., FakeServer], terminal: Callable[..., Script]) -> None:
    fake = server({("POST", "/api/show"): show_reply(messages=[{"role": "user", "content": "earlier"},
                                                                {"role": "assistant", "content": "reply"}]),
                   ("POST", "/api/chat"): [chat_reply("A"), chat_reply("B")]})
    terminal(
        "/set system be terse", "/set parameter temperature 0.1", "/set parameter stop a b",
        "/set parameter nope 1", "/set format json", "/set verbose", "one", "/clear", '"""two', "lines", 'done"""',
        "/unknown", "/set bogus", KeyboardInterrupt, "/exit",
    )
    result = invoke("run", "m")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        ">>> earlier\nreply\n\n"
        "Set system message.\n"
        "Set parameter 'temperature' to '0.1'\n"
        "Set parameter 'stop' to 'a, b'\n"
        "Couldn't set parameter: \"unknown parameter 'nope'\"\n"
        "Set format to 'json' mode.\n"
        "Set 'verbose' mode.\n"
        "A\n\n"
        "Cleared session context\n"
        "B\n\n"
        "Unknown command '/unknown'. Type /? for help\n"
        "Unknown command '/set bogus'. Type /? for help\n"
        "\nUse Ctrl + d or /bye to exit.\n"
    )
    assert result.stderr == "eval count:           3 token(s)\neval duration:        1s\neval rate:            3.00 tokens/s\n" * 2
    chats = [body for _, url, body in fake.requests if url.endswith("/api/chat")]
    options = {"temperature": 0.1, "stop": ["a", "b"]}
    system = {"role": "system", "content": "be terse"}
    assert chats == [
        {"model": "m", "format": "json", "options": options, "stream": True,
         "messages": [system, {"role": "user", "content": "one"}]},
        {"model": "m", "format": "json", "options": options, "stream": True,  # /clear kept the system message
         "messages": [system, {"role": "user", "content": "two\nlines\ndone"}]},
    ]


def test_chat_multiline_system_and_show(server: Callable[..., FakeServer], terminal: Callable[..., Script]) -> None:
    fake = server({("POST", "/api/show"): [show_reply() for _ in range(5)]})
    typed = terminal('/set system """You are', 'a pirate."""', "/show system", "/show template", "/show parameters",
                     "/show info", "/show", "/?", "/set think", "/set nothink")
    result = invoke("run", "m")
    assert result.exit_code == 0, result.output
    assert typed.prompts == [">>> ", "... "] + [">>> "] * 9
    assert result.stdout == (
        "Set system message.\n"
        "You are\na pirate.\n\n"
        "{{ .Prompt }}\n"
        "Model defined parameters:\n"
        '  stop                           "<|im_end|>"\n'
        "  temperature                    0.7\n\n"
        "Set 'think' mode.\n"
        "Set 'nothink' mode.\n"
        "\n"  # Ctrl-D
    )
    assert result.stderr.startswith("  Model\n    architecture        qwen2      \n")
    assert "Available Commands:\n  /show info         Show details for this model\n" in result.stderr
    assert "Use \"\"\" to begin a multi-line message.\n" in result.stderr
    assert result.stderr.endswith('warning: model "m" does not support thinking output\n' * 2)
    assert fake.requests[1][2] == {"model": "m", "system": "You are\na pirate."}


def test_chat_interrupted_answer_is_dropped(
    server: Callable[..., FakeServer], terminal: Callable[..., Script]
) -> None:
    def interrupted(body: Any) -> httpx.Response:
        def chunks() -> Iterator[bytes]:
            yield json.dumps({"model": "m", "message": {"role": "assistant", "content": "Once upon"},
                              "done": False}).encode() + b"\n"
            raise KeyboardInterrupt

        return httpx.Response(200, content=chunks())

    fake = server({("POST", "/api/show"): show_reply(),
                   ("POST", "/api/chat"): [interrupted, reply({"error": "prompt too long"}, 400), chat_reply("Hi")]})
    terminal("tell a story", "x" * 10, "hi")
    result = invoke("run", "m")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Once upon\nerror: prompt too long\nHi\n\n\n"
    last = [body for _, url, body in fake.requests if url.endswith("/api/chat")][-1]
    assert last["messages"] == [{"role": "user", "content": "hi"}]


def test_chat_thinking_kept_in_history(server: Callable[..., FakeServer], terminal: Callable[..., Script]) -> None:
    def thinking(body: Any) -> httpx.Response:
        return ndjson({"message": {"role": "assistant", "content": "", "thinking": "hmm\n"}, "done": False},
                      {"message": {"role": "assistant", "content": "yes"}, "done": False},
                      {"message": {"role": "assistant", "content": ""}, "done": True})

    fake = server({("POST", "/api/show"): show_reply("completion", "thinking"),
                   ("POST", "/api/chat"): [thinking, chat_reply("ok")]})
    terminal("q1", "q2")
    result = invoke("run", "m")
    assert result.stdout == ("\x1b[38;5;245m\x1b[1mThinking...\n\x1b[0m\x1b[38;5;245mhmm\n"
                             "\x1b[38;5;245m\x1b[1m...done thinking.\n\n\x1b[0myes\n\nok\n\n\n")
    last = [body for _, url, body in fake.requests if url.endswith("/api/chat")][-1]
    assert "think" not in last
    assert last["messages"][1] == {"role": "assistant", "content": "yes", "thinking": "hmm\n"}


def test_chat_connection_lost_exits(server: Callable[..., FakeServer], terminal: Callable[..., Script]) -> None:
    def gone(body: Any) -> httpx.Response:
        raise httpx.ReadError("connection reset")

    server({("POST", "/api/show"): show_reply(), ("POST", "/api/chat"): gone})
    terminal("hi")
    result = invoke("run", "m")
    assert (result.exit_code, result.stderr) == (1, "Error: connection reset\n")


def test_help_lists_client_commands() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    for command in ("list", "ps", "show", "pull", "create", "cp", "rm", "run", "serve", "bench", "version"):
        assert f" {command} " in result.output
    assert " ls " not in result.output  # the alias is hidden, as in ollama
