"""Layering: the pure layers import without Ray, vLLM, FastAPI (or torch); the package's API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import vllama

ROOT = Path(__file__).resolve().parents[2]
PURE_MODULES = [
    "vllama.errors",
    "vllama.config",
    "vllama.ollama_api.schema",
    "vllama.ollama_api.modelfile",
    "vllama.models.names",
    "vllama.models.catalog",
    "vllama.models.resolve",
    "vllama.models.describe",
    "vllama.models.registry",
    "vllama.models.manage",
    "vllama.models.blobs",
    "vllama.models.pull",
    "vllama.models.available",
    "vllama.engine.params",
    "vllama.engine.types",
    "vllama.engine.pacing",
    "vllama.engine.startup",
    "vllama.engine.load_phases",
    "vllama.translate.options",
    "vllama.translate.prompts",
    "vllama.translate.responses",
    "vllama.translate.models",
    "vllama.translate.chat",
    "vllama.translate.created",
    "vllama.translate.gotemplate",
    "vllama.translate.prefixes",
    "vllama.serve.hop",
    # `vllama serve`'s load display, and the records it reads: drawn and tested without Ray.
    "vllama.serve.load_progress",
    "vllama.cli.load_display",
]
BLOCKED = ["ray", "vllm", "fastapi", "torch", "transformers"]

PROBE = """
import importlib, json, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"layering: {name} must not be imported here")
        return None

sys.meta_path.insert(0, Block())
for name in BLOCKED:
    sys.modules.pop(name, None)
failures = {}
for module in MODULES:
    try:
        importlib.import_module(module)
    except Exception as exc:
        failures[module] = f"{type(exc).__name__}: {exc}"
import vllama
try:
    serving_config = vllama.ServingConfig.__name__
except Exception as exc:
    serving_config = repr(exc)
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED))
print(json.dumps({"failures": failures, "loaded": loaded, "serving_config": serving_config}))
"""


def probe(modules: list[str], blocked: list[str]) -> dict:
    """Import `modules` in a fresh interpreter where importing any of `blocked` fails."""
    code = f"BLOCKED = {blocked!r}\nMODULES = {modules!r}\n" + PROBE
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_pure_layers_import_without_engine_or_server() -> None:
    report = probe(PURE_MODULES, BLOCKED)
    assert report["failures"] == {}
    assert report["loaded"] == []
    assert report["serving_config"] == "ServingConfig"


#: The ingress holds no engine: its modules load Ray and FastAPI, never vLLM, torch or transformers.
INGRESS_MODULES = ["vllama.serve.ingress", "vllama.serve.forward", "vllama.serve.available", "vllama.serve.directory",
                   "vllama.serve.channel", "vllama.serve.routing", "vllama.serve.router", "vllama.serve.http",
                   "vllama.serve.routes_ollama", "vllama.serve.routes_openai"]
ENGINE_ONLY = ["vllm", "torch", "transformers"]


def test_ingress_imports_no_engine() -> None:
    report = probe(INGRESS_MODULES, ENGINE_ONLY)
    assert report["failures"] == {}
    assert report["loaded"] == []


def test_blocking_works() -> None:
    # The probe itself must be able to fail: a module that imports ray is reported.
    code = f"BLOCKED = {BLOCKED!r}\nMODULES = ['vllama.serve.app']\n" + PROBE
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "vllama.serve.app" in report["failures"]


def test_public_api() -> None:
    assert sorted(vllama.__all__) == sorted(["build_app", "ServingConfig", "__version__"])
    from vllama.config import ServingConfig

    assert vllama.ServingConfig is ServingConfig
    assert callable(vllama.build_app)
    assert isinstance(vllama.__version__, str) and vllama.__version__.count(".") == 2
    for name in vllama.__all__:
        assert getattr(vllama, name) is not None


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError):
        vllama.no_such_thing  # noqa: B018
