"""Fuzzing, measured: schemathesis against a running vllama from its published schema, all phases,
valid and invalid data. Bars (issue 14): at least 5,000 cases, no answer >= 500, no hang (each
request has a timeout, and a timeout is an error), no engine request left running, the server
answering after.

    .venv/bin/python bench/fuzz.py                  # about 15 minutes on 2 cores
    .venv/bin/python bench/fuzz.py --max-examples 50 --seed 1

The server: `vllama serve` with the embedded model and the real embedding model (so both kinds of
engine are fuzzed), an API key (the fuzzer sends it), a short context (an absurd num_predict then
ends within 256 tokens). Results: docs/perf/fuzz.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import MODEL, PYTHON, ROOT, Server, free_port, hardware, stop

from vllama.bench.fuzz import run_schemathesis, server_state

RESULTS = ROOT / "docs" / "perf" / "fuzz.json"
KEY = "sk-fuzz-bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-examples", type=int, default=40, help="schemathesis's examples per operation and phase")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    flags = ["--model", "vllama-tiny", "--model", "all-minilm", "--api-key", KEY, "--max-model-len", "256",
             "--gpu-memory-utilization", "0.1", "--engine-arg", "enforce_eager=true", "--only-configured",
             "--dashboard-port", "0"]
    server = Server("vllama", "vllama", "ollama", MODEL,
                    [PYTHON, "-m", "vllama", "serve", "--port", "{port}", *flags], ready_path="/")
    server._answers = lambda port: True  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="vb-fuzz-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        proc, _ = server.start(port, workdir)
        url = f"http://127.0.0.1:{port}"
        try:
            server_state(url, KEY)  # up, and both engines listed
            fuzz = run_schemathesis(url, max_examples=args.max_examples, api_key=KEY, seed=args.seed)
            after = server_state(url, KEY)
            alive = proc.poll() is None
        finally:
            stop(proc, workdir)
    result = {
        "command": f"python bench/fuzz.py --max-examples {args.max_examples}" + (f" --seed {args.seed}" if args.seed is not None else ""),
        "hardware": hardware(),
        **{k: v for k, v in fuzz.items() if k != "output_tail"},
        "after": {**after, "server_process_alive": alive},
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    if fuzz["output_tail"]:
        print(fuzz["output_tail"])


if __name__ == "__main__":
    main()
