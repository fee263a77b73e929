"""Ollama requests -> what to render: chat messages for the model's template, or raw text.

Pure functions. Rendering itself (the Jinja chat template, tokenization) happens in the engine
adapter with vLLM's renderer, so `/api/chat` and `/v1/chat/completions` render identically.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from vllama.engine.params import ChatPrompt, FillInMiddle, TextPrompt
from vllama.errors import InvalidRequest
from vllama.ollama_api.schema import ChatRequest, GenerateRequest, Message
from vllama.translate import gotemplate


def unsupported_features(
    request: GenerateRequest | ChatRequest, model: str, capabilities: Collection[str] = ("completion",)
) -> str | None:
    """Ollama's error for a feature this model cannot serve, or None. `capabilities` are the
    model's, as `/api/show` lists them (tools, thinking, vision, insert).

    The messages are Ollama's own (`"m" does not support thinking`...), so clients that know
    Ollama handle them as they would there.
    """
    if request.think not in (None, False) and "thinking" not in capabilities:
        return f'"{model}" does not support thinking'
    if isinstance(request, ChatRequest):
        if request.tools and "tools" not in capabilities:
            return f"{model} does not support tools"
        if any(m.images for m in request.messages or ()) and "vision" not in capabilities:
            return f'"{model}" does not support images'
    else:
        if request.suffix and "insert" not in capabilities:
            return f'"{model}" does not support insert'
        if request.images and "vision" not in capabilities:
            return f'"{model}" does not support images'
    return None


def is_load_request(request: GenerateRequest | ChatRequest) -> bool:
    """An empty prompt (or no messages) asks Ollama to load the model, or with keep_alive 0 to unload it."""
    if isinstance(request, ChatRequest):
        return not request.messages
    return not request.prompt and not request.images


def ollama_template(template: str, messages: Sequence[Mapping[str, Any]], **values: Any) -> str:
    """Render an Ollama (Go) template as Ollama does; its errors are the client's (400)."""
    try:
        return gotemplate.execute(template, messages, **values)
    except gotemplate.TemplateError as exc:
        raise InvalidRequest(str(exc)) from None


def template_uses(template: str, name: str) -> bool:
    """Whether an Ollama template refers to `.Name` (`Suffix`: it does fill in the middle)."""
    try:
        return gotemplate.uses(template, name)
    except gotemplate.TemplateError as exc:
        raise InvalidRequest(str(exc)) from None


def chat_prompt(
    request: ChatRequest, default_system: str | None, examples: Sequence[Mapping[str, Any]] = ()
) -> ChatPrompt:
    """The model's system message (unless the request has its own), the model's example
    messages (a Modelfile's MESSAGE lines), then the request's messages, as Ollama orders them."""
    given = [_message_dict(m) for m in request.messages or ()]
    messages = [dict(m) for m in examples] + given
    if default_system and not any(m["role"] == "system" for m in given):
        messages.insert(0, {"role": "system", "content": default_system})
    return ChatPrompt(messages=tuple(messages))


def generate_prompt(
    request: GenerateRequest,
    default_system: str | None,
    examples: Sequence[Mapping[str, Any]] = (),
    template: str | None = None,
) -> ChatPrompt | TextPrompt | FillInMiddle:
    """`raw` sends the prompt verbatim; otherwise it is one user turn through the chat template,
    after `system` (or the model's default system message) and the model's example messages
    (unless the request continues a conversation with `context`), as Ollama's template does.

    An Ollama template (the request's `template`, else the model's from /api/create) replaces
    the chat template; a `suffix` without one asks for fill in the middle."""
    if request.raw:
        if request.template or request.system or request.context:
            raise InvalidRequest("raw mode does not support template, system, or context")
        return TextPrompt(text=request.prompt or "")
    template = request.template or template
    system = request.system if request.system is not None else default_system
    if template:
        history = [] if request.context else [dict(m) for m in examples]
        text = ollama_template(template, history, system=system, prompt=request.prompt or "",
                               suffix=request.suffix, think=request.think)
        return TextPrompt(text=text, context=tuple(request.context or ()))
    if request.suffix:
        return FillInMiddle(prefix=request.prompt or "", suffix=request.suffix)
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    if not request.context:
        messages.extend(dict(m) for m in examples)
    user: dict[str, Any] = {"role": "user", "content": request.prompt or ""}
    if request.images:
        user["images"] = list(request.images)
    messages.append(user)
    return ChatPrompt(messages=tuple(messages), context=tuple(request.context or ()))


def _message_dict(message: Message) -> dict[str, Any]:
    """Ollama's message as a plain dict: role and content, and the rest only when given."""
    fields = message.model_dump(exclude_none=True, include={"images", "tool_calls", "tool_name", "tool_call_id", "thinking"})
    return {"role": message.role, "content": message.content, **fields}


def drop_oldest_turn(messages: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...] | None:
    """Ollama's chat truncation: drop the oldest message that is neither a system message nor
    the last one. None when nothing is left to drop."""
    for i, message in enumerate(messages[:-1]):
        if message["role"] != "system":
            return messages[:i] + messages[i + 1 :]
    return None
