"""Model name -> where it runs, for every model of the application: configured, available on
this machine (`available.py`: deployed at its first use), or created on one of those."""

from __future__ import annotations

import asyncio
import logging

from vllama.errors import InvalidRequest, ModelNotFound, VllamaError
from vllama.models.describe import ModelDescription
from vllama.models.names import ModelName
from vllama.models.registry import Registry
from vllama.serve.available import AvailableModels
from vllama.serve.targets import CreatedTarget, ModelTarget

logger = logging.getLogger(__name__)


class ModelDirectory:
    def __init__(
        self, targets: dict[str, ModelTarget], registry: Registry | None = None,
        available: AvailableModels | None = None,
    ) -> None:
        self._targets = targets  # keyed by ModelName.key (case-folded full name)
        self.registry = registry
        self._available = available

    def resolve(self, name: str | None) -> ModelTarget:
        if not name:
            raise InvalidRequest("model is required")
        try:
            key = ModelName.parse(name).key
        except InvalidRequest:
            raise ModelNotFound.for_name(name) from None
        target = self._targets.get(key)
        if target is not None:  # a configured model: no disk access on this path
            return target
        created = self.registry.get(name) if self.registry is not None else None
        if created is None:
            if (available := self._find_available(name)) is not None:
                return available
            raise ModelNotFound.for_name(name)
        base = self._targets.get(ModelName.parse(created.base).key) or self._find_available(created.base)
        if base is None:
            raise ModelNotFound(f"model '{name}' was made from '{created.base}', which this application does not serve")
        return CreatedTarget(base, created)

    def _find_available(self, name: str) -> ModelTarget | None:
        return self._available.find(name) if self._available is not None else None

    def served_name(self, name: str) -> str | None:
        """The display name of the served model `name` refers to (configured or available), or None."""
        try:
            target = self._targets.get(ModelName.parse(name).key) or self._find_available(name)
        except InvalidRequest:
            return None
        return target.name if target is not None else None

    @property
    def targets(self) -> list[ModelTarget]:
        """The served models (one engine deployment each): the configured ones, then those
        available here that this ingress replica has deployed or found deployed."""
        deployed = [t for t in self._available.listed() if t.deployed] if self._available is not None else []
        return [*self._targets.values(), *deployed]

    def _served(self) -> list[ModelTarget]:
        """Every model served: the configured ones, then the available ones."""
        listed = self._available.listed() if self._available is not None else []
        configured = self._targets.keys()
        return [*self._targets.values(), *(t for t in listed if ModelName.parse(t.name).key not in configured)]

    async def loaded(self) -> list[tuple[ModelDescription, int, float]]:
        """The loaded models (`/api/ps`): each with its running replicas, as Serve's controller
        counts them, and when it unloads."""
        entries = await asyncio.gather(*(self._loaded_entry(t) for t in self._served()))
        return [entry for entry in entries if entry is not None]

    @staticmethod
    async def _loaded_entry(target: ModelTarget) -> tuple[ModelDescription, int, float] | None:
        running = (await target.replica_states()).get("RUNNING")
        if not running:
            return None
        try:
            return await target.describe(), running, await target.expires_at()
        except VllamaError as exc:
            # A replica whose engine failed to load runs until Serve scales it away: that model
            # is not loaded, and the others are still listed.
            logger.info("not listing %s as loaded: %s", target.name, exc.message)
            return None

    async def describe_all(self) -> list[ModelDescription]:
        """Served models (configured, then available), then created ones whose base is served."""
        served = self._served()
        by_key = {ModelName.parse(t.name).key: t for t in served}
        created = [
            CreatedTarget(base, model)
            for model in (self.registry.list() if self.registry is not None else ())
            if (base := by_key.get(ModelName.parse(model.base).key)) is not None
        ]
        return list(await asyncio.gather(*(t.describe() for t in [*served, *created])))
