"""`/api/create`, `/api/copy` and `/api/delete`: what they do to the registry of created models.

Pure (no Ray, vLLM or FastAPI): the routes hand over the parsed request and a way to look up
the models the application serves, and get back the status lines to send, or an error.

Served models (the application's configuration) are fixed while it runs: they can be the base
of a new model or copied under another name, but not replaced or deleted through the API.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from vllama.errors import InvalidRequest, ModelNotFound
from vllama.models.names import ModelName
from vllama.models.registry import CreatedModel, Registry, now
from vllama.ollama_api.modelfile import ModelfileError, create_request, parse_modelfile
from vllama.ollama_api.schema import CreateRequest, Options
from vllama.translate import gotemplate

#: The display name of the served model a name refers to, or None.
ServedLookup = Callable[[str], "str | None"]


class ModelManager:
    def __init__(self, registry: Registry, served: ServedLookup) -> None:
        self.registry = registry
        self._served = served

    def find(self, name: str) -> CreatedModel | None:
        """A model by name as a definition: a created one, or a served one as its own base."""
        if (served := self._served(name)) is not None:
            return CreatedModel(name=served, base=served)
        return self.registry.get(name)

    def create(self, request: CreateRequest) -> list[dict[str, Any]]:
        """Make (or replace) a created model; the status lines Ollama streams while it does.

        Every check happens before anything is written, so an error leaves nothing behind."""
        if request.modelfile and not request.from_:
            request = from_modelfile(request)
        name = _new_name(request.model_name)
        self._check_replaceable(name)
        if request.files or request.adapters:
            raise InvalidRequest(
                "creating a model from uploaded files or adapters is not supported: vllama builds models on "
                "the models it serves (use FROM <model>); to serve other weights, start the server with "
                "--model <directory or Hugging Face repo id>"
            )
        if request.quantize:
            raise InvalidRequest("quantize is not supported: vLLM loads quantized weights as they are published")
        if not request.from_:
            raise InvalidRequest("neither 'from' or 'files' was specified")
        if request.from_.startswith(("/", "./", "../", "~")):
            raise InvalidRequest(
                "create takes 'from' as the name of a model; to serve weights from a directory, "
                "start the server with --model <directory>"
            )
        if request.template:
            try:
                gotemplate.parse(request.template)
            except gotemplate.TemplateError as exc:
                raise InvalidRequest(f"invalid template: {exc}") from None
        base = self.find(request.from_)
        if base is None:
            raise ModelNotFound(f"base model '{request.from_}' not found")
        created = base.derive(
            name,
            system=request.system,
            template=request.template,
            parameters=checked_parameters(request.parameters or {}),
            messages=[m.model_dump(exclude_none=True) for m in request.messages or ()],
            license=request.license,
        )
        self.registry.save(created)
        return _create_status(base, created)

    def copy(self, source: str, destination: str) -> None:
        found = self.find(source)
        if found is None:
            raise ModelNotFound(f'model "{source}" not found')
        name = _new_name(destination)
        self._check_replaceable(name)
        self.registry.save(replace(found, name=name, modified_at=now()))

    def delete(self, name: str | None) -> None:
        if not name:
            raise InvalidRequest("model is required")
        if self._served(name) is not None:
            raise InvalidRequest(
                f"model '{name}' is served from the application's configuration; remove it there to stop serving it"
            )
        try:
            deleted = self.registry.delete(name)
        except InvalidRequest:
            deleted = False
        if not deleted:
            raise ModelNotFound.for_name(name)

    def _check_replaceable(self, name: str) -> None:
        if self._served(name) is not None:
            raise InvalidRequest(
                f"model '{name}' is served from the application's configuration and cannot be replaced; "
                "choose another name"
            )


def from_modelfile(request: CreateRequest) -> CreateRequest:
    """A create request in the form clients before Ollama 0.5 sent: the Modelfile's text."""
    try:
        fields = create_request(parse_modelfile(request.modelfile or ""), request.model_name or "")
    except ModelfileError as exc:
        raise InvalidRequest(str(exc)) from None
    fields["stream"] = request.stream
    return CreateRequest.model_validate(fields)


def _new_name(name: str | None) -> str:
    if not name:
        raise InvalidRequest("model is required")
    return ModelName.parse(name).display  # InvalidRequest("invalid model name") when it is not one


def checked_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """A Modelfile's PARAMETERs: types checked as for a request's `options` (a wrong type is an
    error, an unknown name is dropped with a warning in the log, as Ollama does)."""
    try:
        options = Options.model_validate(parameters)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        raise InvalidRequest(f"invalid value for parameter '{where}': {error['msg']}") from None
    return options.model_dump(exclude_none=True, exclude=set(options.model_extra or ()))


def _create_status(base: CreatedModel, created: CreatedModel) -> list[dict[str, Any]]:
    """Ollama's progress for a create from an existing model: the inherited layer, one new layer
    per part the request changed, then the manifest."""
    lines = [{"status": "using existing layer sha256:" + base.digest}]
    for part in ("template", "system", "parameters", "messages", "license"):
        value = getattr(created, part)
        if value and value != getattr(base, part):
            digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=list).encode()).hexdigest()
            lines.append({"status": f"creating new layer sha256:{digest}"})
    lines += [{"status": "writing manifest"}, {"status": "success"}]
    return lines
