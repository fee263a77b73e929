"""Models made with `/api/create` and `/api/copy`: persisted definitions over served models.

A created model is what an Ollama Modelfile says on top of a model the application serves: its
own system message, template, parameters, example messages and license. It runs on its base
model's engine (no weights are copied and no engine starts), so creating one is instant and
costs no GPU memory.

Each definition is one JSON file under `<home>/manifests/`, named after the model's full name
as Ollama lays out its manifests (`registry.ollama.ai/library/mymodel/latest.json`). Writes go to a
temporary file renamed into place, so a reader (any replica, on any request) sees a whole
definition or none, and a crash never leaves half a file. Replicas read the file on each
request for a name that is not served, so a create, copy or delete made through one replica
is seen at once by all the others on the same machine; replicas on other nodes need `home` on
a shared filesystem (as Ollama's own models directory would).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from vllama.models.names import ModelName


@dataclass(frozen=True)
class CreatedModel:
    """A model defined by `/api/create` (or `/api/copy`) on top of a served model."""

    name: str
    """Display name (`mymodel:latest`)."""
    base: str
    """Display name of the served model whose engine runs it (never another created model:
    definitions are flattened when made, so a lookup is one step)."""
    system: str | None = None
    template: str | None = None
    """An Ollama (Go) prompt template replacing the base model's chat template."""
    parameters: dict[str, Any] = field(default_factory=dict)
    """Default request options (a Modelfile's PARAMETER lines); the request's options win."""
    messages: tuple[dict[str, Any], ...] = ()
    """Example conversation put before every request's messages (a Modelfile's MESSAGE lines)."""
    license: tuple[str, ...] = ()
    modified_at: str = ""

    @property
    def digest(self) -> str:
        """sha256 of the definition (what `/api/tags` shows as the model's digest)."""
        body = {k: v for k, v in asdict(self).items() if k not in ("name", "modified_at")}
        return hashlib.sha256(json.dumps(body, sort_keys=True, default=list).encode()).hexdigest()

    def derive(
        self,
        name: str,
        *,
        system: str | None = None,
        template: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        messages: Sequence[Mapping[str, Any]] | None = None,
        license: Sequence[str] | None = None,
    ) -> CreatedModel:
        """A new model from this one, as Ollama's create does with `from`: what is given
        replaces the inherited layer (parameters merge, the new values winning)."""
        return replace(
            self,
            name=name,
            system=system if system is not None else self.system,
            template=template if template is not None else self.template,
            parameters={**self.parameters, **(parameters or {})},
            messages=tuple(dict(m) for m in messages) if messages else self.messages,
            license=tuple(license) if license else self.license,
            modified_at=now(),
        )


def now() -> str:
    """Local time with microseconds and offset, as Ollama writes `modified_at`."""
    return datetime.datetime.now().astimezone().isoformat(timespec="microseconds")


class Registry:
    """The created models under one home directory."""

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.root = Path(home) / "manifests"

    def path(self, name: str) -> Path:
        parsed = ModelName.parse(name)
        host, namespace, model_tag = parsed.key.split("/", 2)
        model, tag = model_tag.rsplit(":", 1)
        return self.root / host / namespace / model / f"{tag}.json"

    def get(self, name: str) -> CreatedModel | None:
        try:
            data = json.loads(self.path(name).read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None
        return _from_json(data)

    def list(self) -> list[CreatedModel]:
        if not self.root.is_dir():
            return []
        models = []
        for path in sorted(self.root.rglob("*.json")):
            try:
                models.append(_from_json(json.loads(path.read_text())))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # removed meanwhile, or not ours: never fail a listing over one file
        return models

    def save(self, model: CreatedModel) -> None:
        target = self.path(model.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(_to_json(model), f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(staging, target)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise

    def delete(self, name: str) -> bool:
        path = self.path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        # Tidy the empty directories the name made, up to (not including) the root.
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:
                break
        return True


def _to_json(model: CreatedModel) -> dict[str, Any]:
    data = asdict(model)
    data["messages"] = list(model.messages)
    data["license"] = list(model.license)
    return {"schema": 1, **data}


def _from_json(data: dict[str, Any]) -> CreatedModel:
    return CreatedModel(
        name=data["name"],
        base=data["base"],
        system=data.get("system"),
        template=data.get("template"),
        parameters=dict(data.get("parameters") or {}),
        messages=tuple(dict(m) for m in data.get("messages") or ()),
        license=tuple(data.get("license") or ()),
        modified_at=data.get("modified_at", ""),
    )
