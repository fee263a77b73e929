"""`vllama run`'s slash commands in the interactive chat: `/set`, `/show`, `/clear`, `/bye`
and `/?`, with ollama's usage texts and messages (cmd/interactive.go).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from vllama.cli.format import go_value

if TYPE_CHECKING:
    from vllama.cli.client import OllamaClient
    from vllama.cli.run import Session

USAGE = """Available Commands:
  /set            Set session variables
  /show           Show model information
  /clear          Clear session context
  /bye            Exit
  /?, /help       Help for a command

Use \"\"\" to begin a multi-line message.
"""
USAGE_SET = """Available Commands:
  /set parameter ...     Set a parameter
  /set system <string>   Set system message
  /set format json       Enable JSON mode
  /set noformat          Disable formatting
  /set verbose           Show LLM stats
  /set quiet             Disable LLM stats
  /set think             Enable thinking
  /set nothink           Disable thinking
"""
USAGE_SHOW = """Available Commands:
  /show info         Show details for this model
  /show license      Show model license
  /show modelfile    Show Modelfile for this model
  /show parameters   Show parameters for this model
  /show system       Show system message
  /show template     Show prompt template
"""
USAGE_PARAMETERS = """Available Parameters:
  /set parameter seed <int>             Random number seed
  /set parameter num_predict <int>      Max number of tokens to predict
  /set parameter top_k <int>            Pick from top k num of tokens
  /set parameter top_p <float>          Pick token based on sum of probabilities
  /set parameter min_p <float>          Pick token based on top token probability * min_p
  /set parameter num_ctx <int>          Set the context size
  /set parameter temperature <float>    Set creativity level
  /set parameter repeat_penalty <float> How strongly to penalize repetitions
  /set parameter repeat_last_n <int>    Set how far back to look for repetitions
  /set parameter stop <string> <string> ...   Set the stop parameters
"""


def slash_command(client: OllamaClient, session: Session, line: str) -> str:
    """Run one `/...` command: "bye" to leave, "system:<text>" when a multi-line system message opens."""
    args = line.split()
    name = args[0]
    if name in ("/bye", "/exit"):
        return "bye"
    if name == "/clear":
        session.messages = [{"role": "system", "content": session.system}] if session.system else []
        typer.echo("Cleared session context")
    elif name == "/set":
        return set_command(session, line, args)
    elif name == "/show":
        show_command(client, session, args)
    elif name in ("/?", "/help"):
        usage = {"set": USAGE_SET, "/set": USAGE_SET, "show": USAGE_SHOW, "/show": USAGE_SHOW}
        typer.echo(usage.get(args[1], "") if len(args) > 1 else USAGE, err=True)
    else:
        typer.echo(f"Unknown command '{name}'. Type /? for help")
    return ""


def set_command(session: Session, line: str, args: list[str]) -> str:
    setting = args[1] if len(args) > 1 else ""
    if setting in ("verbose", "quiet"):
        session.verbose = setting == "verbose"
        typer.echo(f"Set '{setting}' mode.")
    elif setting in ("think", "nothink"):
        level = args[2] if setting == "think" and len(args) > 2 else None
        session.think = level or setting == "think"
        if "thinking" not in session.capabilities:
            typer.echo(f'warning: model "{session.model}" does not support thinking output', err=True)
        typer.echo(f"Set 'think' mode to '{level}'." if level else f"Set '{setting}' mode.")
    elif setting == "format":
        if len(args) < 3 or args[2] != "json":
            typer.echo("Invalid or missing format. For 'json' mode use '/set format json'")
        else:
            session.format = "json"
            typer.echo("Set format to 'json' mode.")
    elif setting == "noformat":
        session.format = ""
        typer.echo("Disabled format.")
    elif setting == "parameter":
        set_parameter(session, args[2:])
    elif setting == "system" and len(args) < 3:
        typer.echo(USAGE_SET, err=True)
    elif setting == "system":
        text = " ".join(args[2:])
        if text.startswith('"""'):
            text, closed = cut_suffix(text[3:], '"""')
            if not closed:
                return f"system:{text}\n"
        set_system(session, text)
    elif setting:
        typer.echo(f"Unknown command '/set {setting}'. Type /? for help")
    else:
        typer.echo(USAGE_SET, err=True)
    return ""


def set_parameter(session: Session, args: list[str]) -> None:
    from vllama.ollama_api.modelfile import ModelfileError, parse_parameter

    if len(args) < 2:
        typer.echo(USAGE_PARAMETERS, err=True)
        return
    name, values = args[0], args[1:]
    try:
        session.options[name] = parse_parameter(name, values)
    except ModelfileError as exc:
        typer.echo(f"Couldn't set parameter: {json.dumps(exc.message)}")
        return
    typer.echo(f"Set parameter '{name}' to '{', '.join(values)}'")


def set_system(session: Session, text: str) -> None:
    session.system = text
    message = {"role": "system", "content": text}
    if session.messages and session.messages[-1]["role"] == "system":
        session.messages[-1] = message
    else:
        session.messages.append(message)
    typer.echo("Set system message.")


def show_command(client: OllamaClient, session: Session, args: list[str]) -> None:
    from vllama.cli.models import show_info

    topic = args[1] if len(args) > 1 else ""
    if not topic:
        typer.echo(USAGE_SHOW, err=True)
        return
    if topic not in ("info", "license", "modelfile", "parameters", "system", "template"):
        typer.echo(f"Unknown command '/show {topic}'. Type /? for help")
        return
    body = {"model": session.model, **({"system": session.system} if session.system else {}),
            **({"options": session.options} if session.options else {})}
    info = client.call("POST", "/api/show", body) or {}
    if topic == "info":
        typer.echo(show_info(info), err=True, nl=False)
    elif topic == "modelfile":
        typer.echo(info.get("modelfile", ""))
    elif topic == "parameters":
        typer.echo("Model defined parameters:")
        defined = info.get("parameters") or ""
        typer.echo("".join(f"  {line}\n" for line in defined.split("\n")) if defined
                   else "  No additional parameters were specified for this model.\n")
        if session.options:
            typer.echo("User defined parameters:")
            typer.echo("".join(f"  {k:<30} {go_value(v)}\n" for k, v in session.options.items()))
    else:
        text = session.system if topic == "system" else ""
        text = text or info.get(topic) or ""
        missing = {"license": "No license was specified for this model.",
                   "system": "No system message was specified for this model.",
                   "template": "No prompt template was specified for this model."}
        typer.echo((text + "\n" if topic == "system" else text) if text else missing[topic])


def cut_suffix(text: str, suffix: str) -> tuple[str, bool]:
    return (text[: -len(suffix)], True) if text.endswith(suffix) else (text, False)
