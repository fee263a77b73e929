"""A created model's Modelfile parts applied to an OpenAI `/v1` request body.

On Ollama's routes the parts reach the prompt and sampling through `vllama.serve.inference`.
`/v1` requests are run by vLLM's own handlers, which know nothing of created models, so the
parts are written into the body they receive: the system message and example messages before
the request's messages, and the parameters as the request's own fields where it gave none (the
request's values win, as on Ollama's routes).
"""

from __future__ import annotations

from typing import Any

import orjson

from vllama.models.registry import CreatedModel
from vllama.translate.chat import openai_messages

#: Ollama parameter -> the OpenAI (or vLLM extra) field of the same meaning.
_OPENAI_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repeat_penalty": "repetition_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "stop": "stop",
    "num_predict": "max_tokens",
}


def openai_body(body: bytes, created: CreatedModel, kind: str, base_system: str | None = None) -> bytes:
    """`body` with `created`'s parts applied; `kind` is "chat", "completion" or "embedding"."""
    if kind == "embedding":
        return body
    fields: dict[str, Any] = orjson.loads(body)
    for key, value in created.parameters.items():
        target = _OPENAI_FIELDS.get(key)
        if target is None or fields.get(target) is not None:
            continue
        if key == "num_predict" and value < 0:  # Ollama's "until the context is full"
            continue
        if key == "seed" and value < 0:
            continue
        fields[target] = value
    if kind == "chat" and isinstance(fields.get("messages"), list):
        given = fields["messages"]
        messages = openai_messages(created.messages) + given
        system = created.system if created.system is not None else base_system
        if system and not any(isinstance(m, dict) and m.get("role") == "system" for m in given):
            messages.insert(0, {"role": "system", "content": system})
        fields["messages"] = messages
    return orjson.dumps(fields)
