"""vLLM's exceptions -> ours, so each gets its status: a request vLLM refuses is the client's
(400), an engine that stopped is ours (500, and another replica may take the request over)."""

from __future__ import annotations

from vllama.errors import EngineDied, EngineFailed, InvalidRequest, VllamaError


def from_vllm(exc: BaseException, engine_name: str = "") -> VllamaError:
    from vllm.exceptions import VLLMServerError
    from vllm.v1.engine.exceptions import EngineDeadError

    if isinstance(exc, EngineDeadError):
        return EngineDied(f"the engine of model '{engine_name}' stopped" if engine_name else "the engine stopped")
    if isinstance(exc, VLLMServerError):
        return EngineFailed(str(exc))
    return InvalidRequest(str(exc))
