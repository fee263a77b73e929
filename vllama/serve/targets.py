"""What a model name resolves to in the ingress: a served model (`forward.RemoteModel`, its
engine deployment) or a model made by /api/create on one (`CreatedTarget`)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any, Protocol

from vllama.models.describe import ModelDescription, created_description
from vllama.models.registry import CreatedModel
from vllama.serve.hop import Api
from vllama.translate import gotemplate


class ModelTarget(Protocol):
    """Where requests for one model name run. `created`: set when the name is a model made by
    /api/create on top of this target's model (its Modelfile parts then apply)."""

    name: str

    def stream(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> AsyncIterator[bytes]: ...

    async def once(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> bytes: ...

    async def describe(self) -> ModelDescription: ...

    async def status(self) -> dict[str, Any]: ...

    def replica_count(self) -> int: ...

    async def metrics(self) -> list[tuple[str, bytes]]: ...

    async def load(self, keep_alive: float | None) -> None: ...

    async def unload(self) -> None: ...

    async def replica_states(self) -> dict[str, int]: ...

    async def expires_at(self) -> float: ...


class CreatedTarget:
    """A model made by /api/create: requests run on its base model's target, carrying its
    definition along (also over the Ray hop, to wherever the base model's engine is)."""

    def __init__(self, base: ModelTarget, created: CreatedModel) -> None:
        self.name = created.name
        self.base = base
        self.created = created

    def stream(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> AsyncIterator[bytes]:
        return self.base.stream(api, kind, body, parsed, arrival_ns, echo, self.created)

    async def once(
        self, api: Api, kind: str, body: bytes, parsed: Any, arrival_ns: int, echo: str,
        created: CreatedModel | None = None,
    ) -> bytes:
        return await self.base.once(api, kind, body, parsed, arrival_ns, echo, self.created)

    async def describe(self) -> ModelDescription:
        description = created_description(await self.base.describe(), self.created)
        template = self.created.template
        if template and "insert" not in description.capabilities and gotemplate.uses(template, "Suffix"):
            description = dataclasses.replace(description, capabilities=[*description.capabilities, "insert"])
        return description

    async def status(self) -> dict[str, Any]:
        return await self.base.status()

    def replica_count(self) -> int:
        return self.base.replica_count()

    async def metrics(self) -> list[tuple[str, bytes]]:
        return []  # its base model's replicas are scraped as that model

    # Loading or unloading a created model is loading or unloading its base's engine.
    async def load(self, keep_alive: float | None) -> None:
        await self.base.load(keep_alive)

    async def unload(self) -> None:
        await self.base.unload()

    async def replica_states(self) -> dict[str, int]:
        return await self.base.replica_states()

    async def expires_at(self) -> float:
        return await self.base.expires_at()
