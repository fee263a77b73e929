"""Prefix-affine routing against least-loaded: one model on two engine replicas with prefix
caching, many interleaved multi-turn conversations, the prefix-cache hit rate and TTFT by turn.

    .venv/bin/python bench/multiturn.py                   # 2 rounds, both policies (about 10 minutes on 2 cores)
    .venv/bin/python bench/multiturn.py --starts 1 --conversations 8 --turns 4   # a quick look
    .venv/bin/python bench/multiturn.py --write-docs      # also rewrite docs/PERFORMANCE.md's block

Each start is a fresh `vllama serve` (SERVE below, `--routing` the policy measured), waited for
until both replicas run, measured with `vllama bench --workload multiturn`'s load generator
(vllama.bench.multiturn: each turn re-sends the whole history, conversations share a system
prompt and nothing else) and stopped, whole process tree and private Ray directory, before the
next one starts. A fresh server each time: the caches start empty, so the policies are compared
on the same cold start. The policies alternate over --starts rounds (forwards, then backwards,
as the harness does), and each figure is the median over a policy's starts.

With two replicas, least-loaded routing sends a conversation's next turn to either replica, so
about half of the later turns land on one that holds the conversation only up to an earlier
turn, or not at all; prefix-affine routing keeps a conversation where its history is cached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from harness import round_order, versions  # noqa: E402

from tests.support import ServerProcess, free_port, short_tmpdir, vllama_command  # noqa: E402
from vllama.bench.multiturn import MultiTurnSpec, run_multiturn  # noqa: E402
from vllama.bench.report import hardware  # noqa: E402

MODEL = "vllama-tiny:latest"
REPLICAS = 2
ROUTINGS = ("prefix", "least_loaded")
#: The server measured, but for --port and --routing. No torch.compile (enforce_eager): a start
#: takes half as long, and both policies run the same engine.
SERVE = ("serve", "--model", "vllama-tiny", "--num-replicas", str(REPLICAS), "--enable-prefix-caching",
         "--gpu-memory-utilization", "0.1", "--max-model-len", "2048", "--engine-arg", "enforce_eager=true")
BEGIN, END = "<!-- multiturn:begin -->", "<!-- multiturn:end -->"
HEADING = "## Prefix-affine routing"


def serve_command(port: int, routing: str) -> list[str]:
    return vllama_command(*SERVE, "--routing", routing, "--port", str(port), "--dashboard-port", "0")


def _ready(server: ServerProcess) -> bool:
    """Both replicas running as the ingress sees them (else the first conversations would all
    go to the one it knows), and the model able to generate."""
    response = httpx.get(f"{server.url}/vllama/status", timeout=5)
    if response.status_code != 200:  # HAProxy's answer while the application deploys
        return False
    replicas = (response.json().get("models") or {}).get(MODEL, {}).get("replicas") or []
    if sum(1 for r in replicas if r.get("state") == "RUNNING") < REPLICAS:
        return False
    body = {"model": MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 1}}
    return httpx.post(f"{server.url}/api/generate", json=body, timeout=30).status_code == 200


def measure(routing: str, round_: int, args: argparse.Namespace) -> dict[str, Any]:
    """One start of the server with this policy: ready time, then one multi-turn run."""
    port = free_port()
    server = ServerProcess(serve_command(port, routing), short_tmpdir("vmt-"), port)
    print(f"== --routing {routing}: starting (round {round_ + 1} of {args.starts})", flush=True)
    try:
        started = time.monotonic()
        server.start()
        server.wait_until(_ready, timeout_s=900)
        startup_s = time.monotonic() - started
        spec = MultiTurnSpec(base_url=server.url, api="ollama", model=MODEL, conversations=args.conversations,
                             turns=args.turns, concurrency=args.concurrency, system_words=args.system_words,
                             input_words=args.input_words, output_tokens=args.output_tokens, seed=round_)
        summary = asyncio.run(run_multiturn(spec))
    finally:
        server.stop()  # SIGINT, the process group, then whatever runs with its Ray directory
    cache = summary["prefix_cache"]
    print(f"   ready in {startup_s:.0f} s; hit rate {_percent(cache['hit_rate'])}, TTFT p50 turn 1 "
          f"{_ms(summary['first_turn']['ttft_ms']['p50'])}, later {_ms(summary['later_turns']['ttft_ms']['p50'])}, "
          f"{summary['requests_per_s']:.2f} req/s, split {split(summary)}, failed {summary['failed']}"
          + (f" ({summary['first_error']})" if summary["first_error"] else ""), flush=True)
    return {"routing": routing, "round": round_, "startup_s": startup_s, "summary": summary}


def split(summary: dict[str, Any]) -> str:
    """The run's requests per replica, most first ("n/a" without the server's counts)."""
    cache = summary["prefix_cache"]
    if not cache.get("available"):
        return "n/a"
    counts = sorted((r["completed_requests"] or 0 for r in cache["replicas"]), reverse=True)
    return "/".join(str(c) for c in counts)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.1f} ms"


def _row(label: str, runs: list[dict[str, Any]]) -> str:
    """One table row: each figure the median over the runs, the split of each run."""
    summaries = [run["summary"] for run in runs]
    hit = _median([s["prefix_cache"]["hit_rate"] for s in summaries])
    first = _median([s["first_turn"]["ttft_ms"]["p50"] for s in summaries])
    later = _median([s["later_turns"]["ttft_ms"]["p50"] for s in summaries])
    rate = _median([s["requests_per_s"] for s in summaries])
    return (f"| {label} | {_percent(hit)} | {_ms(first)} | {_ms(later)} | {rate:.2f} "
            f"| {', '.join(split(s) for s in summaries)} | {sum(s['failed'] for s in summaries)} |")


TABLE_HEAD = [
    "| routing | prefix-cache hit rate | TTFT p50, turn 1 | TTFT p50, turns 2+ | req/s "
    "| requests per replica | failed |",
    "|---|---|---|---|---|---|---|",
]


def table(results: list[dict[str, Any]]) -> list[str]:
    """Per policy, the medians over its starts; then every start, in the order of the run."""
    lines = list(TABLE_HEAD)
    for routing in ROUTINGS:
        runs = [r for r in results if r["routing"] == routing]
        if runs:
            lines.append(_row(f"`{routing}`", runs))
    if len({r["round"] for r in results}) > 1:
        lines += ["", "Each start, in the order of the run:", "", *TABLE_HEAD]
        lines += [_row(f"`{r['routing']}`, round {r['round'] + 1}", [r]) for r in results]
    return lines


def render(doc: dict[str, Any]) -> str:
    hw, w = doc["hardware"], doc["workload"]
    system = f"a system prompt of {w['system_words']} words that all share" if w["system_words"] else "no system prompt"
    lines = [
        BEGIN,
        f"Measured {doc['created_at']} by `{doc['command']}`.",
        "",
        f"- Hardware: {hw['cpu']}, {hw['cores']} cores, {hw['memory_gib']} GiB"
        + (f", GPUs: {', '.join(hw['gpus'])}" if hw["gpus"] else ", no GPU"),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()),
        f"- Server: `vllama {' '.join(SERVE)} --routing R`, started afresh for each run.",
        (f"- Workload: {w['conversations']} conversations of {w['turns']} turns, at most {w['concurrency']} requests "
         f"in flight (one per conversation; next, one of those furthest behind, at random), {system}, "
         f"{w['input_words']} words per user message, {w['output_tokens']} output tokens per answer (exact: "
         f"`ignore_eos`); each turn re-sends the whole history with the answers as streamed. Each figure is the "
         f"median over {w['starts']} "
         f"start(s) of each policy (rounds alternating their order)."),
        ("- Hit rate: prompt tokens found in an engine's prefix cache over prompt tokens looked up, summed "
         "over the replicas, over the run (vLLM's counters in `/vllama/status`, before and after)."),
        "",
        *table(doc["results"]),
        END,
    ]
    return "\n".join(lines)


def write_docs(block: str, path: Path) -> None:
    """Replace what lies between the markers; without them, append a section holding them. The
    rest of the file is left as it is."""
    text = path.read_text() if path.exists() else "# Performance\n"
    if BEGIN in text and END in text.split(BEGIN, 1)[1]:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        path.write_text(head + block + tail)
        return
    intro = ("A model on two engine replicas with prefix caching, many multi-turn conversations at once:\n"
             "what `--routing prefix` (the replica caching the conversation) gains over `--routing least_loaded`,\n"
             "measured by `bench/multiturn.py`.")
    path.write_text(text.rstrip("\n") + f"\n\n{HEADING}\n\n{intro}\n\n{block}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=2, help="rounds: how many times each policy's server is started")
    parser.add_argument("--routings", default=",".join(ROUTINGS), help="the policies, in the order of the first round")
    parser.add_argument("--conversations", type=int, default=16)
    parser.add_argument("--turns", type=int, default=6, help="turns per conversation")
    parser.add_argument("-c", "--concurrency", type=int, default=8, help="requests in flight at most")
    parser.add_argument("--system-words", type=int, default=200, help="the shared system prompt's length")
    parser.add_argument("--input-words", type=int, default=40, help="each user message's length")
    parser.add_argument("--output-tokens", type=int, default=50, help="exact length of every answer")
    parser.add_argument("--output", type=Path, help="also write every run's results here, as JSON")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/PERFORMANCE.md")
    args = parser.parse_args()
    routings = [r for r in args.routings.split(",") if r]
    if not routings or set(routings) - set(ROUTINGS):
        parser.error(f"--routings: some of {', '.join(ROUTINGS)}")

    results = []
    for round_ in range(args.starts):
        for routing in round_order(routings, round_):
            results.append(measure(routing, round_, args))
    doc = {
        "schema": "vllama-multiturn/1",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join([Path(sys.executable).name, "bench/multiturn.py", *sys.argv[1:]]),
        "hardware": hardware(),
        "versions": versions(),
        "workload": {"model": MODEL, "conversations": args.conversations, "turns": args.turns,
                     "concurrency": args.concurrency, "system_words": args.system_words,
                     "input_words": args.input_words, "output_tokens": args.output_tokens, "starts": args.starts},
        "results": results,
    }
    if args.output:
        args.output.write_text(json.dumps(doc, indent=1))
    block = render(doc)
    print(block)
    if args.write_docs:
        write_docs(block, ROOT / "docs" / "PERFORMANCE.md")


if __name__ == "__main__":
    main()
