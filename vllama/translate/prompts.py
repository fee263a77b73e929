"""Ollama requests -> what to render: chat messages for the model's template, or raw text.

Pure functions. Rendering itself (the Jinja chat template, tokenization) happens in the engine
adapter with vLLM's renderer, so `/api/chat` and `/v1/chat/completions` render identically.
"""

from __future__ import annotations

from typing import Any

from vllama.engine.params import ChatPrompt, TextPrompt
from vllama.errors import InvalidRequest
from vllama.ollama_api.schema import ChatRequest, GenerateRequest, Message


def unsupported_features(request: GenerateRequest | ChatRequest, model: str) -> str | None:
    """Ollama's error for a feature this model cannot serve, or None.

    The messages are Ollama's own (`"m" does not support thinking`...), so clients that know
    Ollama handle them as they would there.
    """
    if request.think not in (None, False):
        return f'"{model}" does not support thinking'
    if isinstance(request, ChatRequest):
        if request.tools:
            return f"{model} does not support tools"
        if any(m.images for m in request.messages or ()):
            return f'"{model}" does not support images'
    else:
        if request.suffix:
            return f'"{model}" does not support insert'
        if request.images:
            return f'"{model}" does not support images'
        if request.template:
            return "template overrides are not supported by this server yet"
    return None


def is_load_request(request: GenerateRequest | ChatRequest) -> bool:
    """An empty prompt (or no messages) asks Ollama to load the model, or with keep_alive 0 to unload it."""
    if isinstance(request, ChatRequest):
        return not request.messages
    return not request.prompt and not request.images


def chat_prompt(request: ChatRequest, default_system: str | None) -> ChatPrompt:
    messages = [_message_dict(m) for m in request.messages or ()]
    if default_system and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": default_system})
    return ChatPrompt(messages=tuple(messages))


def generate_prompt(request: GenerateRequest, default_system: str | None) -> ChatPrompt | TextPrompt:
    """`raw` sends the prompt verbatim; otherwise it is one user turn through the chat template,
    after `system` (or the model's default system message), as Ollama's template does."""
    if request.raw:
        if request.template or request.system or request.context:
            raise InvalidRequest("raw mode does not support template, system, or context")
        return TextPrompt(text=request.prompt or "")
    system = request.system if request.system is not None else default_system
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": request.prompt or ""})
    return ChatPrompt(messages=tuple(messages), context=tuple(request.context or ()))


def _message_dict(message: Message) -> dict[str, Any]:
    return {"role": message.role, "content": message.content}


def drop_oldest_turn(messages: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...] | None:
    """Ollama's chat truncation: drop the oldest message that is neither a system message nor
    the last one. None when nothing is left to drop."""
    for i, message in enumerate(messages[:-1]):
        if message["role"] != "system":
            return messages[:i] + messages[i + 1 :]
    return None
