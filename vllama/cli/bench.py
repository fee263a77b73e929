"""`vllama bench`: measure a server (vllama, Ollama, vLLM's own, Ray Serve LLM...) under load."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
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
    workload_kind: Annotated[
        str,
        typer.Option("--workload", help="single (distinct one-message prompts) or multiturn (conversations, each "
                     "turn re-sending the history; reports TTFT by turn and a vllama server's prefix-cache hit rate; "
                     "no --iterations, --warmup, --request-rate)."),
    ] = "single",
    conversations: Annotated[int, typer.Option(help="multiturn: conversations, interleaved.")] = 16,
    turns: Annotated[int, typer.Option(help="multiturn: turns per conversation (requests: conversations x turns).")] = 6,
    system_words: Annotated[
        int, typer.Option(help="multiturn: words of the system prompt all conversations share (0: none).")
    ] = 0,
) -> None:
    """Measure TTFT, inter-token latency, time per output token, end-to-end latency and throughput."""
    # --workload multiturn (vllama.bench.multiturn): each turn's chat carries the whole history;
    # the report adds TTFT by turn and, from a vllama server's /vllama/status, the prefix-cache
    # hit rate over the run and each replica's share of the requests.
    from vllama.bench import report

    levels = [int(c) for c in concurrency.split(",") if c.strip()]
    if not levels or min(levels) < 1 or iterations < 1 or repeat < 1:
        raise typer.BadParameter("concurrency levels, iterations and repeat must be positive")
    for value in (api, compare_api or api):
        if value not in ("ollama", "openai"):
            raise typer.BadParameter(f"--api must be ollama or openai, not {value}")
    if workload_kind not in ("single", "multiturn"):
        raise typer.BadParameter(f"--workload must be single or multiturn, not {workload_kind}")
    if workload_kind == "multiturn":
        if conversations < 1 or turns < 1 or system_words < 0:
            raise typer.BadParameter("--conversations and --turns must be positive, --system-words not negative")
        if endpoint != "chat" or request_rate is not None or warmup is not None:
            # No warm-up: its requests would be in the server's prefix-cache counts of the run.
            raise typer.BadParameter("--workload multiturn is closed-loop chat: no --endpoint generate, "
                                     "--request-rate or --warmup")
    targets = [{"name": name, "url": (url or default_url()).rstrip("/"), "api": api, "model": model}]
    if compare:
        targets.append({"name": compare_name, "url": compare.rstrip("/"), "api": compare_api or api,
                        "model": compare_model or model})
    workload: dict[str, Any] = {
        "kind": workload_kind, "api": api, "endpoint": endpoint, "model": model, "iterations": iterations,
        "warmup": warmup, "output_tokens": output_tokens, "input_words": input_words, "request_rate": request_rate,
        "repeat": repeat,
    }
    if workload_kind == "multiturn":
        # The conversations' words come from this seed (and the run's index): a new one each
        # invocation, as a second run against the same server must not find the first's cached.
        workload.update(iterations=conversations * turns, warmup=0, conversations=conversations, turns=turns,
                        system_words=system_words, seed=random.randrange(2**31))
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

    from vllama.bench.multiturn import MultiTurnSpec, run_multiturn
    from vllama.bench.runner import LoadSpec, run_load
    from vllama.bench.stats import median_run, summarize

    points = []
    with Progress(disable=quiet, transient=True) as progress:
        for level, c in enumerate(levels):
            repeats = []
            for attempt in range(workload["repeat"]):
                task = progress.add_task(f"{target['name']} C={c} run {attempt + 1}", total=workload["iterations"])
                advance = functools.partial(progress.advance, task)
                if workload["kind"] == "multiturn":
                    # Each run its own conversations: a run must not find an earlier one's cached.
                    turns_spec = MultiTurnSpec(
                        base_url=target["url"], api=target["api"], model=target["model"],
                        conversations=workload["conversations"], turns=workload["turns"], concurrency=c,
                        system_words=workload["system_words"], input_words=workload["input_words"],
                        output_tokens=workload["output_tokens"],
                        seed=workload["seed"] + level * workload["repeat"] + attempt,
                    )
                    repeats.append(asyncio.run(run_multiturn(turns_spec, advance)))
                else:
                    spec = LoadSpec(
                        base_url=target["url"], api=target["api"], model=target["model"],
                        requests=workload["iterations"], concurrency=c, output_tokens=workload["output_tokens"],
                        input_words=workload["input_words"], endpoint=workload["endpoint"], warmup=workload["warmup"],
                        request_rate=workload["request_rate"], seed=attempt,
                    )
                    repeats.append(summarize(asyncio.run(run_load(spec, advance))))
                progress.remove_task(task)
            points.append({"concurrency": c, "summary": median_run(repeats), "repeats": repeats})
    return points
