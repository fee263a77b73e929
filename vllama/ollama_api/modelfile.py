"""Ollama's Modelfile: parse one, turn it into an `/api/create` body, and write one back.

Follows `parser/parser.go` of ollama/ollama (v0.32 line):
- commands (`FROM`, `PARAMETER`, `TEMPLATE`, ...) are case-insensitive; a `#` that starts a
  line opens a comment;
- a value runs to the end of its line, trimmed. When it opens a quote (`"` or `\"\"\"`), it goes
  on, across lines, until the text gathered so far ends with the same quote; the quotes are
  removed and what is inside is kept verbatim;
- `PARAMETER` values are typed as Ollama's `api.FormatParams` types them (int, float, bool, and
  `stop`, which accumulates into a list); an unknown name is an error, a deprecated one a warning.

Pure: no I/O, so the parser is tested on strings. Which FROM names a local path is for the CLI
to decide (it knows the Modelfile's directory).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Union, get_args, get_origin

from vllama.ollama_api.schema import Options

COMMANDS = ("from", "license", "template", "system", "adapter", "draft", "renderer", "parser", "parameter", "message",
            "requires")
MESSAGE_ROLES = ("system", "user", "assistant")
#: Ollama warns about these and drops them (`deprecatedParameters` in parser.go).
DEPRECATED_PARAMETERS = frozenset({
    "penalize_newline", "low_vram", "f16_kv", "logits_all", "vocab_only", "use_mlock", "mirostat", "mirostat_tau",
    "mirostat_eta",
})
#: Commands a vLLM server cannot honour yet: refused when the create request is built.
UNSUPPORTED = {
    "adapter": "ADAPTER is not supported yet: vllama cannot apply LoRA adapters from a Modelfile",
    "draft": "DRAFT is not supported yet: vllama cannot add a draft model from a Modelfile",
}
#: Ollama's own prompt renderers and output parsers, by Go name; vLLM uses the chat template instead.
IGNORED = ("renderer", "parser")

_COMMAND_ERROR = 'command must be one of "from", "license", "template", "system", "adapter", "draft", "renderer", ' \
                 '"parser", "parameter", "message", or "requires"'
_GO_BOOLS = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True,
             "0": False, "f": False, "F": False, "FALSE": False, "false": False, "False": False}
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_SEMVER = re.compile(r"v?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?)?)?")


class ModelfileError(ValueError):
    """A Modelfile Ollama would refuse; `line` is 1-based when the error has one."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"(line {line}): {message}" if line else message)
        self.message = message
        self.line = line


@dataclass
class Modelfile:
    base_model: str = ""
    """FROM: the model this one is made from (the last FROM wins, as in Ollama)."""
    parameters: dict[str, Any] = field(default_factory=dict)
    template: str | None = None
    system: str | None = None
    licenses: list[str] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    requires: str | None = None
    """REQUIRES: the minimum Ollama version, normalised to `0.14.0` (no `v`)."""
    unsupported: list[tuple[str, int]] = field(default_factory=list)
    """(command, line) of ADAPTER and DRAFT lines: parsed, then refused by `create_request`."""
    warnings: list[str] = field(default_factory=list, compare=False)


def parse_modelfile(text: str) -> Modelfile:
    """Parse Modelfile text; raise `ModelfileError` (with its line) on what Ollama would refuse."""
    modelfile = Modelfile()
    has_from = False
    for command, argument, value, line in _commands(text):
        if command == "from":
            modelfile.base_model, has_from = value, True
        elif command == "parameter":
            _add_parameter(modelfile, argument, value, line)
        elif command == "message":
            modelfile.messages.append({"role": argument, "content": value})
        elif command == "license":
            modelfile.licenses.append(value)
        elif command in ("template", "system"):
            setattr(modelfile, command, value)
        elif command == "requires":
            if not _SEMVER.fullmatch(value):
                raise ModelfileError("requires must be a valid semver (e.g. 0.14.0)", line)
            modelfile.requires = value.removeprefix("v")
        elif command in UNSUPPORTED:
            modelfile.unsupported.append((command.upper(), line))
        else:
            modelfile.warnings.append(f"{command.upper()} is ignored: vLLM formats prompts with the model's chat "
                                      f"template (line {line})")
    if not has_from:
        raise ModelfileError("no FROM line")
    return modelfile


def parse_parameter(name: str, values: list[str]) -> Any:
    """One parameter's typed value, from its text (Ollama's `api.FormatParams`).

    `stop` takes every value (a list); the other options take the first one. Raises
    `ModelfileError` for unknown names and values of the wrong type.
    """
    kind = _option_kind(name)
    if kind is None:
        raise ModelfileError(f"unknown parameter '{name}'")
    if kind is list:
        return list(values)
    text = values[0] if values else ""
    if kind is bool and text in _GO_BOOLS:
        return _GO_BOOLS[text]
    if kind is int and _INT.fullmatch(text):
        return int(text)
    if kind is float and _FLOAT.fullmatch(text):
        return float(text)
    raise ModelfileError(f'invalid {kind.__name__} value "{text}" for parameter {name}')


def create_request(modelfile: Modelfile, model: str) -> dict[str, Any]:
    """The new-style `POST /api/create` body; empty fields are left out, as Go's `omitempty` does."""
    if modelfile.unsupported:
        command, line = modelfile.unsupported[0]
        raise ModelfileError(UNSUPPORTED[command.lower()], line)
    body: dict[str, Any] = {"model": model, "from": modelfile.base_model}
    optional = {
        "system": modelfile.system,
        "template": modelfile.template,
        "license": modelfile.licenses,
        "parameters": modelfile.parameters,
        "messages": modelfile.messages,
        "requires": modelfile.requires,
    }
    body.update({key: value for key, value in optional.items() if value})
    body["stream"] = True
    return body


def render_modelfile(modelfile: Modelfile) -> str:
    """Modelfile text that `parse_modelfile` reads back to the same fields (ADAPTER, DRAFT and warnings aside)."""
    lines = [f"FROM {modelfile.base_model}"]
    if modelfile.template is not None:
        lines.append(f"TEMPLATE {quote(modelfile.template)}")
    if modelfile.system is not None:
        lines.append(f"SYSTEM {quote(modelfile.system)}")
    for name, value in modelfile.parameters.items():
        for item in value if isinstance(value, list) else [value]:
            text = ("true" if item else "false") if isinstance(item, bool) else str(item)
            lines.append(f"PARAMETER {name} {quote(text)}")
    lines += [f"MESSAGE {m['role']} {quote(m['content'])}" for m in modelfile.messages]
    lines += [f"LICENSE {quote(text)}" for text in modelfile.licenses]
    if modelfile.requires:
        lines.append(f"REQUIRES {modelfile.requires}")
    return "\n".join(lines) + "\n"


def quote(value: str) -> str:
    """Quote a value when the parser would otherwise change it (Ollama's `quote`, plus the cases it misses:
    an empty value, and one that starts with a quote)."""
    if value and "\n" not in value and value.strip() == value and not value.startswith('"'):
        return value
    return f'"""{value}"""' if '"' in value else f'"{value}"'


# --- scanning ----------------------------------------------------------------------------------------


def _commands(text: str) -> list[tuple[str, str, str, int]]:
    """(command, parameter name or message role, value, line) for each command in `text`."""
    lines = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    found = []
    index = 0
    while index < len(lines):
        line_number, rest = index + 1, lines[index].lstrip(" \t")
        index += 1
        if not rest or rest.startswith("#"):
            continue
        word = re.match(r"[A-Za-z]*", rest).group()  # type: ignore[union-attr]
        command = word.lower()
        if command not in COMMANDS:
            raise ModelfileError(_COMMAND_ERROR, line_number)
        rest = rest[len(word):]
        if not rest.startswith((" ", "\t")):
            raise ModelfileError(f"{word} needs a value", line_number)
        argument = ""
        if command in ("parameter", "message"):
            argument, rest = _argument(command, rest.lstrip(" \t"), line_number)
        value = rest
        while (unquoted := _unquote(value.strip())) is None:
            if index >= len(lines):
                raise ModelfileError(f"unterminated quoted value for {word}", line_number)
            value += "\n" + lines[index]
            index += 1
        found.append((command, argument, unquoted, line_number))
    return found


def _argument(command: str, rest: str, line: int) -> tuple[str, str]:
    """The word after PARAMETER (a name) or MESSAGE (a role), and what follows it."""
    pattern = r"[A-Za-z0-9_]+" if command == "parameter" else r"[A-Za-z]+"
    match = re.match(pattern, rest)
    if not match or not rest[match.end():].startswith((" ", "\t")):
        usage = "PARAMETER <name> <value>" if command == "parameter" else "MESSAGE <role> <message>"
        raise ModelfileError(f"expected {usage}", line)
    argument = match.group()
    if command == "message":
        argument = argument.lower()
        if argument not in MESSAGE_ROLES:
            raise ModelfileError('message role must be one of "system", "user", or "assistant"', line)
    return argument, rest[match.end():]


def _unquote(text: str) -> str | None:
    """The value inside its quotes, the text itself when unquoted, None while a quote is still open."""
    if text.startswith('"""'):
        return text[3:-3] if len(text) >= 6 and text.endswith('"""') else None
    if text.startswith('"'):
        return text[1:-1] if len(text) >= 2 and text.endswith('"') else None
    return text


def _add_parameter(modelfile: Modelfile, name: str, raw: str, line: int) -> None:
    if name in DEPRECATED_PARAMETERS:
        modelfile.warnings.append(f"parameter {name} is deprecated (line {line})")
        return
    try:
        value = parse_parameter(name, [raw])
    except ModelfileError as exc:
        raise ModelfileError(exc.message, line) from None
    if isinstance(value, list):
        modelfile.parameters.setdefault(name, []).extend(value)
    else:
        modelfile.parameters[name] = value


def _option_kind(name: str) -> type | None:
    """int, float, bool or list for an option of `Options`; None for a name Ollama does not know."""
    found = Options.model_fields.get(name)
    if found is None:
        return None
    annotation: Any = found.annotation
    while True:  # unwrap `Annotated[int, ...] | None` and `list[str] | None`
        origin = get_origin(annotation)
        if origin is list:
            return list
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin is Union or (origin is not None and type(None) in get_args(annotation)):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        else:
            return annotation if isinstance(annotation, type) else None
