"""Model name -> where it runs, for every model of the application, served or created."""

from __future__ import annotations

import asyncio

from vllama.errors import InvalidRequest, ModelNotFound
from vllama.models.describe import ModelDescription
from vllama.models.names import ModelName
from vllama.models.registry import Registry
from vllama.serve.targets import CreatedTarget, ModelTarget


class ModelDirectory:
    def __init__(self, targets: dict[str, ModelTarget], registry: Registry | None = None) -> None:
        self._targets = targets  # keyed by ModelName.key (case-folded full name)
        self.registry = registry

    def resolve(self, name: str | None) -> ModelTarget:
        if not name:
            raise InvalidRequest("model is required")
        try:
            key = ModelName.parse(name).key
        except InvalidRequest:
            raise ModelNotFound.for_name(name) from None
        target = self._targets.get(key)
        if target is not None:  # a served model: no disk access on this path
            return target
        created = self.registry.get(name) if self.registry is not None else None
        if created is None:
            raise ModelNotFound.for_name(name)
        base = self._targets.get(ModelName.parse(created.base).key)
        if base is None:
            raise ModelNotFound(f"model '{name}' was made from '{created.base}', which this application does not serve")
        return CreatedTarget(base, created)

    def served_name(self, name: str) -> str | None:
        """The display name of the served model `name` refers to, or None."""
        try:
            target = self._targets.get(ModelName.parse(name).key)
        except InvalidRequest:
            return None
        return target.name if target is not None else None

    @property
    def targets(self) -> list[ModelTarget]:
        """The served models (one engine each)."""
        return list(self._targets.values())

    async def loaded(self) -> list[tuple[ModelDescription, int, float]]:
        """The loaded models (`/api/ps`): each with its running replicas, as Serve's controller
        counts them, and when it unloads."""
        targets = list(self._targets.values())
        states = await asyncio.gather(*(t.replica_states() for t in targets))
        running = [(t, s["RUNNING"]) for t, s in zip(targets, states, strict=True) if s.get("RUNNING")]
        descriptions = await asyncio.gather(*(t.describe() for t, _ in running))
        expiries = await asyncio.gather(*(t.expires_at() for t, _ in running))
        return [(d, n, e) for d, (_, n), e in zip(descriptions, running, expiries, strict=True)]

    async def describe_all(self) -> list[ModelDescription]:
        """Served models, then created ones whose base is served."""
        served = list(await asyncio.gather(*(t.describe() for t in self._targets.values())))
        created = [
            CreatedTarget(base, model)
            for model in (self.registry.list() if self.registry is not None else ())
            if (base := self._targets.get(ModelName.parse(model.base).key)) is not None
        ]
        return served + list(await asyncio.gather(*(t.describe() for t in created)))
