"""`vllama run`: one prompt through `/api/generate`, or an interactive chat through `/api/chat`.

Follows `ollama run` (`RunHandler`, `generate`, `chat` in cmd/cmd.go, `generateInteractive` in
cmd/interactive.go): a prompt argument or piped stdin answers once; a terminal gets the `>>> `
loop with its `/set`, `/show`, `/clear`, `/bye` commands (in `vllama.cli.slash`) and `\"\"\"`
multi-line input.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vllama.cli.format import go_duration
from vllama.cli.slash import cut_suffix, set_system, slash_command

if TYPE_CHECKING:
    from collections.abc import Callable

    from vllama.cli.client import OllamaClient

GREY, BOLD, RESET = "\x1b[38;5;245m", "\x1b[1m", "\x1b[0m"


def read_line(prompt: str) -> str:
    """One line typed at `prompt`; Ctrl-D raises EOFError, Ctrl-C KeyboardInterrupt. Tests replace it."""
    try:
        import readline  # noqa: F401  (gives input() line editing and history)
    except ImportError:
        pass
    return input(prompt)


def is_terminal(stream: Any) -> bool:
    """Whether `stream` is a terminal (a seam: tests pretend to be one)."""
    return bool(getattr(stream, "isatty", lambda: False)())


@dataclass
class Session:
    model: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    system: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    format: str | dict[str, Any] = ""
    think: bool | str | None = None
    keep_alive: str | int | None = None
    verbose: bool = False
    hide_thinking: bool = False
    capabilities: list[str] = field(default_factory=list)

    def request(self, **fields: Any) -> dict[str, Any]:
        body = {"model": self.model, **fields}
        optional = {"format": self.format, "options": self.options, "think": self.think, "keep_alive": self.keep_alive}
        body.update({k: v for k, v in optional.items() if v is not None and v != "" and v != {}})
        return {**body, "stream": True}


def run(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Model name.")],
    prompt: Annotated[list[str] | None, typer.Argument(metavar="PROMPT", help="Prompt; without one, an interactive chat.")] = None,
    format: Annotated[str, typer.Option("--format", help="Response format (e.g. json)")] = "",
    think: Annotated[
        bool | None, typer.Option("--think/--nothink", help="Enable or disable thinking, for supported models")
    ] = None,
    hidethinking: Annotated[bool, typer.Option("--hidethinking", help="Hide thinking output (if provided)")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show timings for response")] = False,
    keepalive: Annotated[str, typer.Option("--keepalive", help="Duration to keep a model loaded (e.g. 5m)")] = "",
    insecure: Annotated[bool, typer.Option("--insecure", help="Use an insecure registry")] = False,
) -> None:
    """Run a model."""
    from vllama.cli.client import ClientError, connect, exit_on_error
    from vllama.cli.models import pull_with_progress

    session = Session(model=model, format=format, think=think, verbose=verbose, hide_thinking=hidethinking)
    prompts = list(prompt or [])
    interactive = not prompts
    if not is_terminal(sys.stdin):
        piped = sys.stdin.read()
        prompts = ([piped] if piped else []) + prompts
        interactive = False
    if not is_terminal(sys.stdout):  # quiet when writing to a pipe or a file
        interactive = False
    with exit_on_error(), connect() as client:
        session.keep_alive = keep_alive_value(keepalive) if keepalive else None
        if format not in ("", "json"):  # ollama passes anything else through as raw JSON: a schema
            try:
                session.format = json.loads(format)
            except ValueError:
                raise ClientError(f"invalid format: {format} (use json or a JSON schema)") from None
        try:
            info = client.call("POST", "/api/show", {"model": model}) or {}
        except ClientError as exc:
            if exc.status_code != 404:
                raise
            pull_with_progress(client, model, insecure=insecure)
            info = client.call("POST", "/api/show", {"model": model}) or {}
        # Unlike ollama's CLI, `think` stays unset unless asked for: the server then applies
        # the model's own default (Ollama's rule, thinking for thinking models), which a model's
        # configuration can change (the random test model thinks only when asked).
        session.capabilities = list(info.get("capabilities") or [])
        text = " ".join(prompts)
        if "embedding" in session.capabilities:
            embed(client, session, text)
        elif interactive:
            show_loaded_messages(info)
            chat_loop(client, session, read_line)
        else:
            generate_once(client, session, text)


def keep_alive_value(text: str) -> str | int:
    """`--keepalive` as ollama sends it: -1 for a negative duration, else Go's form ("5m0s")."""
    from vllama.ollama_api.schema import parse_duration

    try:
        seconds = parse_duration(text) or 0.0
    except ValueError as exc:
        from vllama.cli.client import ClientError

        raise ClientError(str(exc)) from None
    return -1 if seconds < 0 else go_duration(round(seconds * 1e9))


def embed(client: OllamaClient, session: Session, text: str) -> None:
    from vllama.cli.client import ClientError

    if not text:
        raise ClientError(f'embedding models require input text. Usage: vllama run {session.model} "your text here"')
    body: dict[str, Any] = {"model": session.model, "input": text}
    if session.keep_alive is not None:
        body["keep_alive"] = session.keep_alive
    embeddings = (client.call("POST", "/api/embed", body) or {}).get("embeddings") or []
    if not embeddings:
        raise ClientError("no embeddings returned")
    typer.echo(json.dumps(embeddings[0], separators=(",", ":")))


def generate_once(client: OllamaClient, session: Session, prompt: str) -> None:
    final = stream_answer(client, "/api/generate", session.request(prompt=prompt), session)
    if final is None:
        return
    if prompt:
        typer.echo("\n")  # ollama ends an answer with two Println: a newline, then a blank line
    if session.verbose and final.get("done"):
        typer.echo(summary(final), err=True, nl=False)


def stream_answer(
    client: OllamaClient, path: str, body: dict[str, Any], session: Session
) -> dict[str, Any] | None:
    """Print an answer as it streams, thinking first as ollama shows it. Returns the last chunk plus the
    whole answer (`text`, `thinking_text`), or None when Ctrl-C stopped it."""
    color = is_terminal(sys.stdout)
    thinking_open = thinking_done = False
    content, thinking, last = [], [], {}
    try:
        for chunk in client.stream("POST", path, body):
            last = chunk
            message = (chunk.get("message") or {}) if path == "/api/chat" else chunk
            piece = message.get("content" if path == "/api/chat" else "response") or ""
            thought = message.get("thinking") or ""
            tool_calls = message.get("tool_calls") or []
            if thought and not session.hide_thinking:
                if not thinking_open:
                    typer.echo(f"{GREY}{BOLD}Thinking...\n{RESET}{GREY}" if color else "Thinking...\n", nl=False,
                               color=color)
                    thinking_open = True
                thinking.append(thought)
                typer.echo(thought, nl=False)
            if thinking_open and not thinking_done and (piece or tool_calls):
                if not "".join(thinking).endswith("\n"):
                    typer.echo("")
                typer.echo(f"{GREY}{BOLD}...done thinking.\n\n{RESET}" if color else "...done thinking.\n\n", nl=False,
                           color=color)
                thinking_done = True
            content.append(piece)
            typer.echo(piece, nl=False)
            for call in tool_calls:  # the CLI registers no tools: any call is unexpected
                function = call.get("function") or {}
                arguments = json.dumps(function.get("arguments"), separators=(",", ":"))
                typer.echo(f"  Model called a non-existent function '{function.get('name')}()' with arguments: "
                           f"{arguments}", nl=False)
    except KeyboardInterrupt:
        typer.echo("")
        return None
    return {**last, "text": "".join(content), "thinking_text": "".join(thinking)}


def summary(final: dict[str, Any]) -> str:
    """ollama's `--verbose` statistics (`Metrics.Summary`), from a final chunk's nanosecond timings."""
    lines = []
    if total := final.get("total_duration"):
        lines.append(f"total duration:       {go_duration(total)}")
    if load := final.get("load_duration"):
        lines.append(f"load duration:        {go_duration(load)}")
    for prefix, count_key, duration_key in (("prompt eval", "prompt_eval_count", "prompt_eval_duration"),
                                            ("eval", "eval_count", "eval_duration")):
        count, duration = final.get(count_key) or 0, final.get(duration_key) or 0
        if count:
            lines.append(f"{prefix + ' count:':<22}{count} token(s)")
        if duration:
            lines.append(f"{prefix + ' duration:':<22}{go_duration(duration)}")
            lines.append(f"{prefix + ' rate:':<22}{count / (duration / 1e9):.2f} tokens/s")
    return "".join(line + "\n" for line in lines)


# --- the interactive chat ------------------------------------------------------------------------------


def show_loaded_messages(info: dict[str, Any]) -> None:
    """The model's own MESSAGE history, shown before the first prompt as ollama shows it."""
    for message in info.get("messages") or []:
        if message.get("role") == "user":
            typer.echo(f">>> {message.get('content', '')}")
        elif message.get("role") == "assistant":
            typer.echo(f"{message.get('content', '')}\n")


def chat_loop(client: OllamaClient, session: Session, read: Callable[[str], str]) -> None:
    """The `>>> ` loop: history kept across turns; `/bye` or Ctrl-D leaves, Ctrl-C stops an answer."""
    text, multiline = "", ""  # multiline: "" (none), "prompt" or "system", while a \"\"\" block is open
    while True:
        try:
            line = read("... " if multiline else ">>> ")
        except EOFError:
            typer.echo("")
            return
        except KeyboardInterrupt:
            typer.echo("\nUse Ctrl + d or /bye to exit.")
            text, multiline = "", ""
            continue
        if multiline:
            before, closed = cut_suffix(line, '"""')
            text += before
            if not closed:
                text += "\n"
                continue
            if multiline == "system":
                set_system(session, text)
                text = ""
            multiline = ""
        elif line.startswith('"""'):
            body, closed = cut_suffix(line[3:], '"""')
            text += body
            if not closed:
                text, multiline = text + "\n", "prompt"
        elif line.startswith("/"):
            outcome = slash_command(client, session, line)
            if outcome == "bye":
                return
            if outcome.startswith("system:"):  # `/set system \"\"\"...` opened a block
                text, multiline = outcome.removeprefix("system:"), "system"
            continue
        else:
            text += line
        if text and not multiline:
            answer_turn(client, session, text)
            text = ""


def answer_turn(client: OllamaClient, session: Session, text: str) -> None:
    """Send one user turn; keep it in the history only when the model answered it."""
    from vllama.cli.client import ClientError

    session.messages.append({"role": "user", "content": text})
    try:
        final = stream_answer(client, "/api/chat", session.request(messages=session.messages), session)
    except ClientError as exc:
        if exc.status_code is None:  # the server is gone: leave, as ollama does
            raise
        final = None
        typer.echo(f"error: {exc.message}")
    if final is None:
        # Dropped so that the history keeps alternating user/assistant: strict chat templates
        # (Gemma's, Mistral's) refuse two user turns in a row.
        session.messages.pop()
        return
    reply: dict[str, Any] = {"role": "assistant", "content": final["text"]}
    if final["thinking_text"]:
        reply["thinking"] = final["thinking_text"]
    session.messages.append(reply)
    typer.echo("\n")
    if session.verbose:
        typer.echo(summary(final), err=True, nl=False)
