"""Ollama model names: `[host/][namespace/]model[:tag]`, matched case-insensitively.

Mirrors Ollama's `types/model/name.go`: default host `registry.ollama.ai`, namespace
`library`, tag `latest`; each part starts with a letter, digit or `_` and goes on with
`[A-Za-z0-9_.-]`; a namespace has no `.`; a host may carry a `:port`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vllama.errors import InvalidRequest

DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"

_PART = r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,79}"
_MODEL_RE = re.compile(_PART)
_TAG_RE = re.compile(_PART)
_NAMESPACE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]{0,79}")
_HOST_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,349}(:[0-9]{1,5})?")


@dataclass(frozen=True)
class ModelName:
    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, text: str) -> ModelName:
        """Parse a name as a client sends it; raise `InvalidRequest` if Ollama would reject it."""
        name = text.strip()
        # The tag follows the last ':' only when no '/' comes after it ("host:port/ns/m" has none).
        path, tag = name, DEFAULT_TAG
        colon = name.rfind(":")
        if colon > name.rfind("/"):
            path, tag = name[:colon], name[colon + 1 :]
        parts = path.split("/")
        if len(parts) > 3:
            raise InvalidRequest("invalid model name")
        host, namespace = DEFAULT_HOST, DEFAULT_NAMESPACE
        if len(parts) == 3:
            host, namespace, model = parts
        elif len(parts) == 2:
            namespace, model = parts
        else:
            (model,) = parts
        valid = (
            _MODEL_RE.fullmatch(model)
            and _TAG_RE.fullmatch(tag)
            and _NAMESPACE_RE.fullmatch(namespace)
            and _HOST_RE.fullmatch(host)
        )
        if not valid:
            raise InvalidRequest("invalid model name")
        return cls(host=host, namespace=namespace, model=model, tag=tag)

    @property
    def display(self) -> str:
        """The short form Ollama shows: `m:tag`, `ns/m:tag` or `host/ns/m:tag`."""
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"

    @property
    def key(self) -> str:
        """Case-folded full name: two names are the same model exactly when their keys are equal."""
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}".lower()


def name_key(text: str) -> str:
    """The lookup key of a name as sent by a client (raises `InvalidRequest` if invalid)."""
    return ModelName.parse(text).key
