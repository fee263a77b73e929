"""The Modelfile parser: ollama's `parser/parser.go` rules, typed parameters, the create body, round trips."""

from __future__ import annotations

from typing import Any

import pytest

from vllama.models.describe import ModelDescription
from vllama.ollama_api.modelfile import (
    Modelfile,
    ModelfileError,
    create_request,
    parse_modelfile,
    parse_parameter,
    quote,
    render_modelfile,
)
from vllama.translate.models import modelfile as describe_modelfile

COMMAND_ERROR = (
    'command must be one of "from", "license", "template", "system", "adapter", "draft", "renderer", "parser", '
    '"parameter", "message", or "requires"'
)
FULL = '''# a comment, then a blank line

FROM qwen2.5:0.5b
PARAMETER temperature 0.7
PARAMETER stop "<|im_end|>"
PARAMETER stop <|endoftext|>
PARAMETER num_ctx 4096
PARAMETER use_mmap false
TEMPLATE """{{ if .System }}<|im_start|>system
{{ .System }}<|im_end|>{{ end }}"""
SYSTEM You are Mario from Super Mario Bros.
MESSAGE user Is Toronto in Canada?
MESSAGE assistant yes
LICENSE MIT
LICENSE """Apache
2.0"""
REQUIRES 0.14.0
'''


def test_full_modelfile() -> None:
    assert parse_modelfile(FULL) == Modelfile(
        base_model="qwen2.5:0.5b",
        parameters={"temperature": 0.7, "stop": ["<|im_end|>", "<|endoftext|>"], "num_ctx": 4096, "use_mmap": False},
        template="{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>{{ end }}",
        system="You are Mario from Super Mario Bros.",
        licenses=["MIT", "Apache\n2.0"],
        messages=[{"role": "user", "content": "Is Toronto in Canada?"}, {"role": "assistant", "content": "yes"}],
        requires="0.14.0",
    )


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("from m", "base_model", "m"),
        ("  FrOm   m  ", "base_model", "m"),  # case-insensitive, surrounding blanks trimmed
        ("FROM a\nFROM b", "base_model", "b"),  # the last FROM wins, as in ollama
        ("\ufeffFROM m", "base_model", "m"),  # a UTF-8 byte order mark
        ("FROM m\r\nSYSTEM hi\r\n", "system", "hi"),
        ("FROM m\nSYSTEM\tspaced  out  words ", "system", "spaced  out  words"),
        ("FROM m\nSYSTEM \"\"\"\n  keep\n  indents\n\"\"\"", "system", "\n  keep\n  indents\n"),
        ('FROM m\nSYSTEM "two\nlines"', "system", "two\nlines"),
        ('FROM m\nSYSTEM """say "hi" please"""', "system", 'say "hi" please'),
        ('FROM m\nSYSTEM ""', "system", ""),
        ("FROM m\nSYSTEM a # not a comment", "system", "a # not a comment"),
        ("FROM m\n  # indented comment\nSYSTEM x", "system", "x"),
        ('FROM m\ntemplate """{{ .Prompt }}"""', "template", "{{ .Prompt }}"),
        ("FROM m\nMESSAGE USER hello there", "messages", [{"role": "user", "content": "hello there"}]),
        ("FROM m\nMESSAGE system be brief", "messages", [{"role": "system", "content": "be brief"}]),
        ("FROM m\nLICENSE a\nlicense b", "licenses", ["a", "b"]),
        ("FROM m\nREQUIRES v0.9", "requires", "0.9"),
        ("FROM m\nADAPTER ./lora", "unsupported", [("ADAPTER", 2)]),
        ("FROM m\n\nDRAFT small", "unsupported", [("DRAFT", 3)]),
    ],
)
def test_parse_fields(text: str, field: str, value: Any) -> None:
    assert getattr(parse_modelfile(text), field) == value


@pytest.mark.parametrize(
    ("line", "parameters"),
    [
        ("PARAMETER num_ctx 8192", {"num_ctx": 8192}),
        ("PARAMETER seed -1", {"seed": -1}),
        ("PARAMETER temperature 1", {"temperature": 1.0}),
        ("PARAMETER top_p .9", {"top_p": 0.9}),
        ("PARAMETER repeat_penalty 1e0", {"repeat_penalty": 1.0}),
        ("PARAMETER use_mmap T", {"use_mmap": True}),
        ("PARAMETER use_mmap 0", {"use_mmap": False}),
        ("PARAMETER ignore_eos True", {"ignore_eos": True}),
        ("PARAMETER stop <|im_end|>", {"stop": ["<|im_end|>"]}),
        ('PARAMETER stop "User:"', {"stop": ["User:"]}),
        ('PARAMETER stop " spaced "', {"stop": [" spaced "]}),
        ("PARAMETER min_tokens 5", {"min_tokens": 5}),
    ],
)
def test_parameter_types(line: str, parameters: dict[str, Any]) -> None:
    parsed = parse_modelfile(f"FROM m\n{line}\n")
    assert parsed.parameters == parameters
    assert {k: type(v) for k, v in parsed.parameters.items()} == {k: type(v) for k, v in parameters.items()}


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("", "no FROM line", None),
        ("# only a comment\nSYSTEM x", "no FROM line", None),
        ("FROM", "FROM needs a value", 1),
        ("FROM m\nSYSTEM", "SYSTEM needs a value", 2),
        ("FROM m\nINSTRUCTION x", COMMAND_ERROR, 2),
        ("1FROM m", "command must be one of", 1),
        ("FROM m\nPARAMETER tfs_z 1", "unknown parameter 'tfs_z'", 2),
        ("FROM m\nPARAMETER Temperature 1", "unknown parameter 'Temperature'", 2),
        ("FROM m\nPARAMETER num_ctx 4k", 'invalid int value "4k" for parameter num_ctx', 2),
        ("FROM m\nPARAMETER num_ctx 1.5", 'invalid int value "1.5" for parameter num_ctx', 2),
        ("FROM m\nPARAMETER temperature hot", 'invalid float value "hot" for parameter temperature', 2),
        ("FROM m\nPARAMETER use_mmap yes", 'invalid bool value "yes" for parameter use_mmap', 2),
        ("FROM m\nPARAMETER temperature", "expected PARAMETER <name> <value>", 2),
        ("FROM m\nPARAMETER temp-erature 1", "expected PARAMETER <name> <value>", 2),
        ("FROM m\nMESSAGE tool {}", 'message role must be one of "system", "user", or "assistant"', 2),
        ("FROM m\nMESSAGE user", "expected MESSAGE <role> <message>", 2),
        ('FROM m\n\nSYSTEM """never\nclosed', "unterminated quoted value for SYSTEM", 3),
        ('FROM m\nSYSTEM "open', "unterminated quoted value for SYSTEM", 2),
        ("FROM m\nREQUIRES banana", "requires must be a valid semver (e.g. 0.14.0)", 2),
    ],
)
def test_errors(text: str, message: str, line: int | None) -> None:
    with pytest.raises(ModelfileError) as caught:
        parse_modelfile(text)
    assert caught.value.message.startswith(message)
    assert caught.value.line == line
    assert str(caught.value) == (f"(line {line}): {caught.value.message}" if line else caught.value.message)


def test_warnings_for_deprecated_and_ignored_commands() -> None:
    parsed = parse_modelfile("FROM m\nPARAMETER mirostat 1\nRENDERER qwen3\nPARSER qwen3\n")
    assert parsed.parameters == {}
    assert parsed.warnings == [
        "parameter mirostat is deprecated (line 2)",
        "RENDERER is ignored: vLLM formats prompts with the model's chat template (line 3)",
        "PARSER is ignored: vLLM formats prompts with the model's chat template (line 4)",
    ]


@pytest.mark.parametrize(
    ("name", "values", "value"),
    [
        ("stop", ["a", "b"], ["a", "b"]),
        ("temperature", ["0.2", "ignored"], 0.2),
        ("num_predict", ["-1"], -1),
        ("use_mmap", ["FALSE"], False),
    ],
)
def test_parse_parameter(name: str, values: list[str], value: Any) -> None:
    assert parse_parameter(name, values) == value


def test_parse_parameter_unknown() -> None:
    with pytest.raises(ModelfileError, match="unknown parameter 'mirostat_x'"):
        parse_parameter("mirostat_x", ["1"])


# --- the /api/create body ---------------------------------------------------------------------------------


def test_create_request_full() -> None:
    assert create_request(parse_modelfile(FULL), "mario") == {
        "model": "mario",
        "from": "qwen2.5:0.5b",
        "system": "You are Mario from Super Mario Bros.",
        "template": "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>{{ end }}",
        "license": ["MIT", "Apache\n2.0"],
        "parameters": {"temperature": 0.7, "stop": ["<|im_end|>", "<|endoftext|>"], "num_ctx": 4096,
                       "use_mmap": False},
        "messages": [{"role": "user", "content": "Is Toronto in Canada?"}, {"role": "assistant", "content": "yes"}],
        "requires": "0.14.0",
        "stream": True,
    }


def test_create_request_leaves_out_empty_fields() -> None:
    # Go's omitempty: an empty SYSTEM is not sent (the base model's stays).
    assert create_request(parse_modelfile('FROM m\nSYSTEM ""'), "n") == {"model": "n", "from": "m", "stream": True}


@pytest.mark.parametrize(("text", "line"), [("FROM m\nADAPTER ./lora.gguf", 2), ("DRAFT d\nFROM m", 1)])
def test_create_request_refuses_adapters(text: str, line: int) -> None:
    with pytest.raises(ModelfileError, match="not supported yet") as caught:
        create_request(parse_modelfile(text), "n")
    assert caught.value.line == line


# --- writing Modelfiles back -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", "plain"),
        ("two words", "two words"),
        ("", '""'),
        (" lead", '" lead"'),
        ("multi\nline", '"multi\nline"'),
        ('say "hi"\nnow', '"""say "hi"\nnow"""'),
        ('"quoted"', '""""quoted""""'),
    ],
)
def test_quote(value: str, quoted: str) -> None:
    assert quote(value) == quoted
    assert parse_modelfile(f"FROM m\nSYSTEM {quoted}").system == value


@pytest.mark.parametrize(
    "text",
    [
        FULL,
        "FROM m",
        'FROM m\nSYSTEM " padded "\nPARAMETER stop "\\n\\n"\nPARAMETER stop <s>\nMESSAGE user """a "quoted"\nturn"""',
        'FROM /abs/path\nTEMPLATE ""\nLICENSE """\n"""\nPARAMETER ignore_eos 1\nPARAMETER top_k 40',
    ],
)
def test_render_round_trip(text: str) -> None:
    parsed = parse_modelfile(text)
    assert parse_modelfile(render_modelfile(parsed)) == parsed


def describe(**overrides: Any) -> ModelDescription:
    fields: dict[str, Any] = {
        "name": "qwen2.5:0.5b",
        "source": "Qwen/Qwen2.5-0.5B-Instruct",
        "size": 988_097_824,
        "digest": "a" * 64,
        "modified_at": "2025-05-04T17:37:44.706015-07:00",
        "family": "qwen2",
        "parameter_size": "494.03M",
        "quantization_level": "BF16",
        "context_length": 32768,
        "model_info": {},
        "template": "{%- for message in messages %}\n{{- '<|im_start|>' + message['role'] + '\\n' }}{%- endfor %}",
        "system": "You are Qwen, created by Alibaba Cloud.\nYou are a helpful assistant.",
        "parameters": {"stop": ["<|im_end|>", "<|endoftext|>"], "temperature": 0.7, "top_k": 20,
                       "repeat_penalty": 1.05, "ignore_eos": True},
        "capabilities": ["completion", "tools"],
        "on_gpu": True,
    }
    fields.update(overrides)
    return ModelDescription(**fields)


@pytest.mark.parametrize(
    "desc",
    [describe(), describe(system=None, template="", parameters={}), describe(source="/models/my model dir")],
    ids=["full", "bare", "path-with-space"],
)
def test_reads_what_show_writes(desc: ModelDescription) -> None:
    # `vllama show --modelfile` output (vllama.translate.models.modelfile) parses back to the model's fields.
    parsed = parse_modelfile(describe_modelfile(desc))
    assert parsed.base_model == desc.source  # a served model's description: FROM its source
    assert parsed.system == desc.system
    assert parsed.template == (desc.template or None)
    assert parsed.parameters == desc.parameters
    assert parsed.warnings == []


def test_reads_messages_and_licenses_show_writes() -> None:
    # A created model's MESSAGE and LICENSE lines.
    messages = ({"role": "user", "content": "two\nlines"}, {"role": "assistant", "content": '"quoted" reply'})
    desc = describe(messages=messages, license=("MIT", "Apache\n2.0"))
    parsed = parse_modelfile(describe_modelfile(desc))
    assert parsed.messages == list(messages)
    assert parsed.licenses == ["MIT", "Apache\n2.0"]
