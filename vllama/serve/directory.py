"""Model name -> where it runs, for every model of the application."""

from __future__ import annotations

import asyncio

from vllama.errors import InvalidRequest, ModelNotFound
from vllama.models.describe import ModelDescription
from vllama.models.names import ModelName
from vllama.serve.targets import ModelTarget


class ModelDirectory:
    def __init__(self, targets: dict[str, ModelTarget]) -> None:
        self._targets = targets  # keyed by ModelName.key (case-folded full name)

    def resolve(self, name: str | None) -> ModelTarget:
        if not name:
            raise InvalidRequest("model is required")
        try:
            key = ModelName.parse(name).key
        except InvalidRequest:
            raise ModelNotFound.for_name(name) from None
        target = self._targets.get(key)
        if target is None:
            raise ModelNotFound.for_name(name)
        return target

    @property
    def targets(self) -> list[ModelTarget]:
        return list(self._targets.values())

    async def describe_all(self) -> list[ModelDescription]:
        return list(await asyncio.gather(*(t.describe() for t in self._targets.values())))
