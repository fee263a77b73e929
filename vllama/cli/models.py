"""`vllama list|ps|show|pull|create|cp|rm`: ollama's model commands, against a running server.

Names, flags and output follow ollama's `cmd/cmd.go` (tables as its tablewriter prints them,
sizes and times as its `format` package writes them: see `vllama.cli.format`), so scripts
written for `ollama` work.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vllama.cli.format import (
    go_number,
    go_value,
    human_bytes,
    human_number,
    human_time,
    is_number,
    parse_time,
    processor,
    short_digest,
    table,
)

if TYPE_CHECKING:
    from vllama.cli.client import OllamaClient

PATH_FROM_ERROR = ("vllama create takes FROM <model name>; to serve weights from a directory, start the server "
                   "with --model <dir>")


def list_models(
    prefix: Annotated[str | None, typer.Argument(help="Only models whose name starts with this.")] = None,
) -> None:
    """List models."""
    from vllama.cli.client import connect, exit_on_error

    with exit_on_error(), connect() as client:
        models = (client.call("GET", "/api/tags") or {}).get("models") or []
    rows = [
        [m["name"], short_digest(m["digest"]), human_bytes(m["size"]), human_time(m.get("modified_at"), "Never")]
        for m in models if prefix is None or m["name"].lower().startswith(prefix.lower())
    ]
    typer.echo(table(rows, header=["NAME", "ID", "SIZE", "MODIFIED"]), nl=False)


def ps(prefix: Annotated[str | None, typer.Argument(help="Only models whose name starts with this.")] = None) -> None:
    """List running models."""
    from vllama.cli.client import connect, exit_on_error

    with exit_on_error(), connect() as client:
        models = (client.call("GET", "/api/ps") or {}).get("models") or []
    now = datetime.datetime.now(datetime.UTC)
    rows = []
    for m in models:
        if prefix is not None and not m["name"].startswith(prefix):
            continue
        expires = parse_time(m.get("expires_at"))
        until = "Stopping..." if expires is not None and expires < now else human_time(m.get("expires_at"), "Never")
        rows.append([m["name"], short_digest(m["digest"]), human_bytes(m["size"]), processor(m["size"], m["size_vram"]),
                     str(m.get("context_length", 0)), until])
    typer.echo(table(rows, header=["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]), nl=False)


def stop(model: Annotated[str, typer.Argument(metavar="MODEL", help="Model name.")]) -> None:
    """Stop a running model (unload it: its engines stop, their memory goes back)."""
    from vllama.cli.client import connect, exit_on_error

    with exit_on_error(), connect() as client:
        client.call("POST", "/api/generate", {"model": model, "keep_alive": 0})


def show(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Model name.")],
    license_: Annotated[bool, typer.Option("--license", help="Show license of a model")] = False,
    modelfile: Annotated[bool, typer.Option("--modelfile", help="Show Modelfile of a model")] = False,
    parameters: Annotated[bool, typer.Option("--parameters", help="Show parameters of a model")] = False,
    template: Annotated[bool, typer.Option("--template", help="Show template of a model")] = False,
    system: Annotated[bool, typer.Option("--system", help="Show system message of a model")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show detailed model information")] = False,
) -> None:
    """Show information for a model."""
    from vllama.cli.client import connect, exit_on_error

    chosen = [name for name, on in [("license", license_), ("modelfile", modelfile), ("parameters", parameters),
                                    ("system", system), ("template", template)] if on]
    if len(chosen) > 1:
        typer.echo("Error: only one of '--license', '--modelfile', '--parameters', '--system', or '--template' can "
                   "be specified", err=True)
        raise typer.Exit(1)
    body: dict[str, Any] = {"model": model, **({"verbose": True} if verbose else {})}
    with exit_on_error(), connect() as client:
        info = client.call("POST", "/api/show", body) or {}
    if not chosen:
        typer.echo(show_info(info, verbose=verbose), nl=False)
        return
    field = chosen[0]
    # ollama prints the first three with Println, system and template with Print.
    typer.echo(info.get(field) or "", nl=field not in ("system", "template"))


def pull(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Model name.")],
    insecure: Annotated[bool, typer.Option("--insecure", help="Use an insecure registry")] = False,
) -> None:
    """Pull a model from a registry."""
    from vllama.cli.client import connect, exit_on_error

    with exit_on_error(), connect() as client:
        pull_with_progress(client, model, insecure=insecure)


def pull_with_progress(client: OllamaClient, model: str, *, insecure: bool = False) -> None:
    body = {"model": model, "insecure": insecure, "stream": True}
    follow_progress(client.stream("POST", "/api/pull", body))


def create(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Name of the new model.")],
    file: Annotated[Path | None, typer.Option("--file", "-f", help='Name of the Modelfile (default "Modelfile")')] = None,
) -> None:
    """Create a model from a Modelfile."""
    from vllama.cli.client import ClientError, connect, exit_on_error
    from vllama.errors import InvalidRequest
    from vllama.models.names import ModelName
    from vllama.ollama_api.modelfile import create_request, parse_modelfile

    with exit_on_error():
        try:
            ModelName.parse(model)
        except InvalidRequest:
            raise ClientError(f"invalid model name: {model}") from None
        path = (file or Path("Modelfile")).absolute()
        if file is not None and not path.is_file():
            raise ClientError("specified Modelfile wasn't found")
        # Without a Modelfile ollama builds from the current directory ("FROM ."): refused below.
        parsed = parse_modelfile(path.read_text(encoding="utf-8") if path.is_file() else "FROM .\n")
        for warning in parsed.warnings:
            typer.echo(f"warning: {warning}", err=True)
        if _names_local_path(parsed.base_model, path.parent):
            raise ClientError(PATH_FROM_ERROR)
        body = create_request(parsed, model)
        with connect() as client:
            follow_progress(client.stream("POST", "/api/create", body), first_status="gathering model components")


def copy_model(
    source: Annotated[str, typer.Argument(metavar="SOURCE", help="Model to copy.")],
    destination: Annotated[str, typer.Argument(metavar="DESTINATION", help="Name of the copy.")],
) -> None:
    """Copy a model."""
    from vllama.cli.client import connect, exit_on_error

    with exit_on_error(), connect() as client:
        client.call("POST", "/api/copy", {"source": source, "destination": destination})
    typer.echo(f"copied '{source}' to '{destination}'")


def remove(models: Annotated[list[str], typer.Argument(metavar="MODEL", help="Models to remove.", show_default=False)]) -> None:
    """Remove a model."""
    from vllama.cli.client import connect, exit_on_error

    with exit_on_error(), connect() as client:
        for model in models:
            client.call("DELETE", "/api/delete", {"model": model})
            typer.echo(f"deleted '{model}'")


def _names_local_path(base_model: str, modelfile_dir: Path) -> bool:
    # ollama's expandPath: `~` and absolute paths as they are, anything else relative to the Modelfile.
    path = Path(base_model).expanduser()
    return (path if path.is_absolute() else modelfile_dir / path).exists()


# --- progress (pull, create) --------------------------------------------------------------------------


def follow_progress(lines: Iterable[dict[str, Any]], *, first_status: str | None = None) -> None:
    """Show a progress stream on stderr, as ollama's spinners and bars; it must end on `success`.

    On a terminal, with rich; elsewhere (logs, CI, tests) one plain line per status and per layer done.
    """
    import sys

    from vllama.cli.client import ClientError

    last = first_status
    if sys.stderr.isatty():
        last = _rich_progress(lines, first_status)
    else:
        if first_status:
            typer.echo(first_status, err=True)
        done: set[str] = set()
        for item in lines:
            status, digest = item.get("status", ""), item.get("digest")
            if digest:
                total = item.get("total") or 0
                if total and item.get("completed", 0) >= total and digest not in done:
                    done.add(digest)
                    typer.echo(f"{_layer_label(item)} 100% {human_bytes(total)}", err=True)
            elif status != last:
                typer.echo(status, err=True)
            last = status
    if last != "success":
        raise ClientError("the server closed the progress stream before reporting success")


def _rich_progress(lines: Iterable[dict[str, Any]], first_status: str | None) -> str | None:
    from rich import progress as rp
    from rich.console import Console
    from rich.text import Text

    class BarsOnly(rp.ProgressColumn):
        """Spinner rows (a status) leave the byte columns blank; layer rows fill them."""

        def __init__(self, inner: rp.ProgressColumn) -> None:
            super().__init__()
            self.inner = inner

        def render(self, task: rp.Task) -> Any:
            return self.inner.render(task) if task.fields.get("layer") else Text("")

    columns = [rp.SpinnerColumn(finished_text=" "), rp.TextColumn("{task.description}")] + [
        BarsOnly(c) for c in (rp.BarColumn(), rp.TaskProgressColumn(), rp.DownloadColumn(), rp.TransferSpeedColumn())
    ]
    bars: dict[str, rp.TaskID] = {}
    spinner: rp.TaskID | None = None
    last = None
    with rp.Progress(*columns, console=Console(stderr=True)) as progress:
        def status(text: str) -> None:
            nonlocal spinner, last
            if spinner is not None:
                progress.update(spinner, total=1, completed=1)
            spinner, last = progress.add_task(text, total=None, layer=False), text

        if first_status:
            status(first_status)
        for item in lines:
            digest = item.get("digest")
            if digest and item.get("completed"):  # ollama skips the 0% announcement of each layer
                if digest not in bars:
                    bars[digest] = progress.add_task(_layer_label(item), total=item.get("total") or 0, layer=True)
                progress.update(bars[digest], completed=item["completed"])
            elif not digest and item.get("status", "") != last:
                status(item.get("status", ""))
        if spinner is not None:
            progress.update(spinner, total=1, completed=1)
    return last


def _layer_label(item: dict[str, Any]) -> str:
    digest = str(item["digest"]).removeprefix("sha256:").strip()
    return f"pulling {digest[:12]}:"


# --- show's sectioned view ------------------------------------------------------------------------------


def show_info(info: dict[str, Any], *, verbose: bool = False) -> str:
    """ollama's `showInfo`: Model, Capabilities, Parameters, [Metadata, Tensors,] System, License."""
    details = info.get("details") or {}
    model_info = info.get("model_info")
    rows: list[list[str]] = []
    if model_info is not None:
        arch = model_info.get("general.architecture")
        arch = arch if isinstance(arch, str) else ""
        if arch:
            rows.append(["", "architecture", arch])
        count = model_info.get("general.parameter_count")
        size = details.get("parameter_size") or (human_number(int(count)) if is_number(count) else "")
        if size:
            rows.append(["", "parameters", size])
        for key, label in (("context_length", "context length"), ("embedding_length", "embedding length")):
            if is_number(value := model_info.get(f"{arch}.{key}")):
                rows.append(["", label, go_number(value, exponent_from=21)])
    else:
        rows += [["", "architecture", details.get("family", "")], ["", "parameters", details.get("parameter_size", "")]]
    rows.append(["", "quantization", details.get("quantization_level", "")])
    if info.get("requires"):
        rows.append(["", "requires", info["requires"]])
    out = [_section("Model", rows)]
    if info.get("capabilities"):
        out.append(_section("Capabilities", [["", c] for c in info["capabilities"]]))
    if info.get("parameters"):
        out.append(_section("Parameters", [["", *line.split()] for line in info["parameters"].splitlines() if line]))
    if model_info is not None and verbose:
        out.append(_section("Metadata", [["", key, go_value(model_info[key], limit=10)] for key in sorted(model_info)]))
    if info.get("tensors") and verbose:
        tensors = info["tensors"]
        out.append(_section("Tensors", [["", t["name"], t["type"], go_value(t["shape"])] for t in tensors]))
    for title in ("System", "License"):
        if text := info.get(title.lower()):
            lines = [line.strip() for line in str(text).splitlines() if line.strip()]
            out.append(_section(title, [["", line] for line in lines[:2]] + ([["", "..."]] if len(lines) > 2 else []),
                                wrap=100))
    return "".join(out)


def _section(title: str, rows: list[list[str]], *, wrap: int = 30) -> str:
    return f"  {title}\n{table(rows, wrap=wrap)}\n"
