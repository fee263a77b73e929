"""`vllama`: one Typer application, one module per command."""

from __future__ import annotations

import typer

from vllama import __version__
from vllama.cli import bench, models, run, serve

app = typer.Typer(
    name="vllama",
    help="Serve open LLMs to many users at once: vLLM on Ray Serve, behind Ollama's API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.command("bench")(bench.bench)
# The `ollama` client commands, against a running server (OLLAMA_HOST).
app.command("create")(models.create)
app.command("show")(models.show)
app.command("run")(run.run)
app.command("pull")(models.pull)
app.command("list")(models.list_models)
app.command("ls", hidden=True)(models.list_models)
app.command("ps")(models.ps)
app.command("stop")(models.stop)
app.command("cp")(models.copy_model)
app.command("rm")(models.remove)


@app.command("version")
def version() -> None:
    """Print vllama's version."""
    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
