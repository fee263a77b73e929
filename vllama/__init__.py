"""vllama: vLLM engines on Ray Serve, behind Ollama's API (and OpenAI's /v1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["ServingConfig", "__version__", "build_app"]

if TYPE_CHECKING:
    from vllama.config import ServingConfig


def build_app(args: dict[str, Any]) -> Any:
    """The Ray Serve application builder (`import_path: vllama:build_app` in a serve config)."""
    from vllama.serve.app import build_app as _build_app

    return _build_app(args)


def __getattr__(name: str) -> Any:
    if name == "ServingConfig":
        from vllama.config import ServingConfig

        return ServingConfig
    raise AttributeError(name)
