"""Fuzzing a running server from its published schema (`/vllama/openapi.json`) with schemathesis:
all its phases (examples, coverage, fuzzing, stateful where links exist), valid and invalid
data (`--mode all`), checking that no answer is a server error, and that statuses and content
types are the documented ones. Then the server must still answer, with no engine request left.

Left out: `/api/push` (vllama has no registry: it answers 501 Not Implemented by design) and
`/api/pull` (it would download from the Hugging Face hub). Used by `bench/fuzz.py` and the tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance"
PHASES = "examples,coverage,fuzzing,stateful"
EXCLUDED = ("/api/push", "/api/pull")


def run_schemathesis(
    base_url: str, *, max_examples: int, api_key: str | None = None, seed: int | None = None,
    request_timeout_s: float = 120.0, max_time_s: int | None = None,
) -> dict[str, Any]:
    """One `st run`; its JSON report's counts, and its output's end when it failed."""
    st = Path(sys.executable).with_name("st")
    with tempfile.TemporaryDirectory(prefix="vllama-fuzz-") as tmp:
        report = Path(tmp) / "report.json"
        command = [str(st), "run", f"{base_url}/vllama/openapi.json", "--checks", CHECKS, "--phases", PHASES,
                   "--mode", "all", "--max-examples", str(max_examples), "--request-timeout", str(request_timeout_s),
                   "--report", "json", "--report-json-path", str(report), "--no-color", "--workers", "1"]
        for path in EXCLUDED:
            command += ["--exclude-path", path]
        if api_key:
            command += ["--header", f"Authorization: Bearer {api_key}"]
        if seed is not None:
            command += ["--seed", str(seed)]
        if max_time_s is not None:
            command += ["--max-time", str(max_time_s)]
        done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=tmp)
        if not report.exists():
            raise RuntimeError(f"schemathesis wrote no report (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-2000:]}")
        data = json.loads(report.read_text())
    cases = data["test_cases"]
    return {
        "exit_code": data["exit_code"],
        "seed": data["seed"],
        "running_time_s": round(data["running_time"], 1),
        "operations_tested": data["operations"]["tested"],
        "cases": cases["generated"],
        "cases_with_failures": cases["with_failures"],
        "errored": cases["errored"],
        "failures": data["failures"],
        "errors": data["errors"],
        "phases": {name: phase["status"] for name, phase in data["phases"].items()},
        "output_tail": done.stdout[-4000:] if data["exit_code"] else "",
    }


def server_state(base_url: str, api_key: str | None = None) -> dict[str, Any]:
    """After the run: does the server answer, and is any engine request left running, or any of
    the KV cache in use?"""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    version = httpx.get(f"{base_url}/api/version", headers=headers, timeout=30)
    deadline = time.monotonic() + 30  # the last requests' aborts may still be on their way
    while True:
        status = httpx.get(f"{base_url}/vllama/status", headers=headers, timeout=60).json()["models"]
        busy = any(m["unfinished_requests"] or m.get("kv_cache_usage") for m in status.values())
        if not busy or time.monotonic() > deadline:
            break
        time.sleep(1)
    return {
        "answers": version.status_code == 200,
        "unfinished_requests": {name: m["unfinished_requests"] for name, m in status.items()},
        "admitted": {name: m.get("admitted_here") for name, m in status.items()},
        "kv_cache_usage": {name: m.get("kv_cache_usage") for name, m in status.items()},
    }
