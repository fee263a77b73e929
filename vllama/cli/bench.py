"""`vllama bench`: measure a server (vllama, Ollama, vLLM's own, Ray Serve LLM...) under load."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer


def default_url() -> str:
    host = os.environ.get("OLLAMA_HOST", "127.0.0.1:11434")
    return host if host.startswith("http") else f"http://{host}"


def bench(
    model: Annotated[str, typer.Argument(help="Model name as the server knows it.")],
    iterations: Annotated[int, typer.Option("--iterations", "-i", help="Measured requests per concurrency level.")] = 100,
    concurrency: Annotated[str, typer.Option("--concurrency", "-c", help="Requests in flight; a list sweeps: 1,8,32.")] = "1",
    url: Annotated[str | None, typer.Option(help="Server to measure (default: OLLAMA_HOST or http://127.0.0.1:11434).")] = None,
    api: Annotated[str, typer.Option(help="ollama (NDJSON) or openai (/v1, SSE).")] = "ollama",
    endpoint: Annotated[str, typer.Option(help="chat or generate (completions on /v1).")] = "chat",
    output_tokens: Annotated[int, typer.Option(help="Exact output length of every request.")] = 50,
    input_words: Annotated[int, typer.Option(help="Prompt length in words (distinct prompts).")] = 32,
    warmup: Annotated[int | None, typer.Option(help="Requests sent first and left out (default: max(2, C)).")] = None,
    request_rate: Annotated[float | None, typer.Option(help="Open loop: Poisson arrivals at this rate (req/s).")] = None,
    repeat: Annotated[int, typer.Option(help="Runs per point: the table shows the median run, --compare ratios the medians over all runs.")] = 1,
    name: Annotated[str, typer.Option(help="Label of the measured server.")] = "target",
    compare: Annotated[str | None, typer.Option(help="A second server to run the same sweep against.")] = None,
    compare_api: Annotated[str | None, typer.Option(help="Its API (default: --api).")] = None,
    compare_model: Annotated[str | None, typer.Option(help="Its model name (default: MODEL).")] = None,
    compare_name: Annotated[str, typer.Option(help="Its label.")] = "compare",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON (schema vllama-bench/1).")] = False,
    output: Annotated[Path | None, typer.Option(help="Also write the JSON document here.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of throughput and latency against concurrency.")] = None,
) -> None:
    """Measure TTFT, inter-token latency, time per output token, end-to-end latency and throughput."""
    from vllama.bench import report

    levels = [int(c) for c in concurrency.split(",") if c.strip()]
    if not levels or min(levels) < 1 or iterations < 1 or repeat < 1:
        raise typer.BadParameter("concurrency levels, iterations and repeat must be positive")
    for value in (api, compare_api or api):
        if value not in ("ollama", "openai"):
            raise typer.BadParameter(f"--api must be ollama or openai, not {value}")
    targets = [{"name": name, "url": (url or default_url()).rstrip("/"), "api": api, "model": model}]
    if compare:
        targets.append({"name": compare_name, "url": compare.rstrip("/"), "api": compare_api or api,
                        "model": compare_model or model})
    workload = {"api": api, "endpoint": endpoint, "model": model, "iterations": iterations, "warmup": warmup,
                "output_tokens": output_tokens, "input_words": input_words, "request_rate": request_rate,
                "repeat": repeat}
    results = [
        {**t, "points": sweep(t, levels, workload, quiet=as_json)} for t in targets
    ]
    doc = report.document(workload, results)
    if output:
        output.write_text(json.dumps(doc, indent=2))
    if plot:
        report.plot(doc, plot)
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
    else:
        report.print_tables(doc)
    if any(p["summary"]["failed"] for t in results for p in t["points"]):
        raise typer.Exit(1)


def sweep(target: dict[str, Any], levels: list[int], workload: dict[str, Any], *, quiet: bool) -> list[dict[str, Any]]:
    from rich.progress import Progress

    from vllama.bench.runner import LoadSpec, run_load
    from vllama.bench.stats import median_run, summarize

    points = []
    with Progress(disable=quiet, transient=True) as progress:
        for c in levels:
            repeats = []
            for attempt in range(workload["repeat"]):
                task = progress.add_task(f"{target['name']} C={c} run {attempt + 1}", total=workload["iterations"])
                spec = LoadSpec(
                    base_url=target["url"], api=target["api"], model=target["model"], requests=workload["iterations"],
                    concurrency=c, output_tokens=workload["output_tokens"], input_words=workload["input_words"],
                    endpoint=workload["endpoint"], warmup=workload["warmup"], request_rate=workload["request_rate"],
                    seed=attempt,
                )
                records = asyncio.run(run_load(spec, lambda n, task=task: progress.advance(task, n)))
                repeats.append(summarize(records))
                progress.remove_task(task)
            points.append({"concurrency": c, "summary": median_run(repeats), "repeats": repeats})
    return points
