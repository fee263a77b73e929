"""Ollama chat -> the OpenAI chat request vLLM's chat layer takes, and tool calls back.

Requests that use tools, thinking or images go through vLLM's own chat machinery (its chat
template handling of tools and images, its tool-call and reasoning parsers, its tool-call
grammars), which speaks OpenAI's shapes. These pure functions do the translation both ways:
- messages: `images` (bare base64) become data-URI image parts; an assistant's `tool_calls`
  (arguments as an object) become OpenAI calls (arguments as a JSON string); a `tool` message's
  `tool_name` finds the id of the call it answers;
- `think` becomes the template's `enable_thinking` (and `reasoning_effort` for a level);
- sampling settings become the request's fields (their names are vLLM's already);
- streamed tool-call pieces become Ollama's whole calls, arguments as an object.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vllama.engine.params import SamplingSettings
from vllama.engine.types import ToolCallDelta
from vllama.errors import InvalidRequest

logger = logging.getLogger(__name__)

#: Leading bytes -> media type, for the data URIs of Ollama's bare base64 images.
_IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def image_data_uri(image: str) -> str:
    """An Ollama image (bare base64; a data URI is passed through) as a data URI."""
    if image.startswith("data:"):
        return image
    image = "".join(image.split())  # line-wrapped base64 (as `base64` writes it) is base64 too
    try:
        head = base64.b64decode(image[:64] + "=" * (-len(image[:64]) % 4), validate=False)[:16]
        base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("invalid image input: images must be base64-encoded") from None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        media = "image/webp"
    else:
        media = next((m for sig, m in _IMAGE_SIGNATURES if head.startswith(sig)), None)
    if media is None:
        raise InvalidRequest("invalid image input: not a PNG, JPEG, WebP, GIF or BMP image")
    return f"data:{media};base64,{image}"


def openai_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ollama-shaped message dicts -> OpenAI chat messages."""
    out: list[dict[str, Any]] = []
    call_ids: dict[str, str] = {}  # tool name -> id of its latest call, for `tool_name` replies
    for message in messages:
        role = message["role"]
        converted: dict[str, Any] = {"role": role, "content": message.get("content") or ""}
        if images := message.get("images"):
            parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_data_uri(i)}} for i in images]
            if converted["content"]:
                parts.append({"type": "text", "text": converted["content"]})
            converted["content"] = parts
        if role == "assistant" and message.get("tool_calls"):
            converted["tool_calls"] = []
            for n, call in enumerate(message["tool_calls"]):
                function = call.get("function") or {}
                call_id = call.get("id") or f"call_{len(out)}_{n}"
                call_ids[function.get("name", "")] = call_id
                arguments = function.get("arguments", {})
                converted["tool_calls"].append({
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": function.get("name", ""),
                        "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                    },
                })
        if role == "assistant" and message.get("thinking"):
            converted["reasoning"] = message["thinking"]
        if role == "tool":
            name = message.get("tool_name")
            call_id = message.get("tool_call_id") or (call_ids.get(name) if name else None)
            if call_id:
                converted["tool_call_id"] = call_id
            if name:
                converted["name"] = name
        out.append(converted)
    return out


def tool_choice(value: Any) -> Any:
    """vllama's `tool_choice` (OpenAI's, as an option or a top-level field): "auto", "none",
    "required", or the name of the one function the model must call."""
    if value is None or value in ("auto", "none", "required"):
        return value
    if isinstance(value, str) and value:
        return {"type": "function", "function": {"name": value}}
    if isinstance(value, dict) and isinstance((value.get("function") or {}).get("name"), str):
        return {"type": "function", "function": {"name": value["function"]["name"]}}
    raise InvalidRequest('tool_choice must be "auto", "none", "required" or the name of a tool')


def think_fields(think: bool | str | None) -> dict[str, Any]:
    """`think` -> the chat template switch (Qwen3's and others' `enable_thinking`) and, for a
    level, OpenAI's `reasoning_effort` (gpt-oss-style templates read it)."""
    if think is None:
        return {}
    fields: dict[str, Any] = {"chat_template_kwargs": {"enable_thinking": think is not False}}
    if isinstance(think, str):
        fields["reasoning_effort"] = think
    return fields


def sampling_fields(sampling: SamplingSettings) -> dict[str, Any]:
    """Our resolved sampling settings as a vLLM chat request's fields (the same names)."""
    fields: dict[str, Any] = {
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "top_k": sampling.top_k,
        "min_p": sampling.min_p,
        "repetition_penalty": sampling.repetition_penalty,
        "presence_penalty": sampling.presence_penalty,
        "frequency_penalty": sampling.frequency_penalty,
        "min_tokens": sampling.min_tokens,
        "ignore_eos": sampling.ignore_eos,
    }
    if sampling.seed is not None:
        fields["seed"] = sampling.seed
    if sampling.stop:
        fields["stop"] = list(sampling.stop)
    if sampling.logprobs is not None:
        fields["logprobs"] = True
        fields["top_logprobs"] = sampling.logprobs
    if sampling.thinking_token_budget is not None:
        fields["thinking_token_budget"] = sampling.thinking_token_budget
    if (structured := sampling.structured) is not None:
        fields["response_format"] = (
            {"type": "json_object"} if structured.json_schema is None
            else {"type": "json_schema", "json_schema": {"name": "format", "schema": structured.json_schema}}
        )
    return fields


def chat_body(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    sampling: SamplingSettings,
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    choice: Any = None,
    think: bool | str | None = None,
) -> dict[str, Any]:
    """The whole OpenAI chat request for vLLM's chat layer (`max_tokens` is set later, once the
    prompt's length is known)."""
    body: dict[str, Any] = {"model": model, "messages": openai_messages(messages), "stream": True}
    if tools:
        body["tools"] = [dict(t) for t in tools]
        if choice is not None:
            body["tool_choice"] = tool_choice(choice)
    body.update(think_fields(think))
    body.update(sampling_fields(sampling))
    return body


@dataclass
class ToolCallCollector:
    """Streamed tool-call pieces -> Ollama's whole tool calls (arguments as an object).

    Ollama sends each call whole, in one chunk; vLLM's streaming parsers give a call's name and
    then its arguments in fragments. A call is complete when the next one starts or the output
    ends."""

    _calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    _emitted: set[int] = field(default_factory=set)

    def add(self, deltas: Sequence[ToolCallDelta]) -> list[dict[str, Any]]:
        """Take this step's pieces; return the calls they completed."""
        done: list[dict[str, Any]] = []
        for delta in deltas:
            if delta.index not in self._calls:
                done += self._complete(below=delta.index)
                self._calls[delta.index] = {"id": None, "name": "", "arguments": ""}
            call = self._calls[delta.index]
            call["id"] = call["id"] or delta.id
            call["name"] += delta.name or ""
            call["arguments"] += delta.arguments
        return done

    def finish(self) -> list[dict[str, Any]]:
        return self._complete(below=None)

    def _complete(self, below: int | None) -> list[dict[str, Any]]:
        done = []
        for index in sorted(self._calls):
            if index in self._emitted or (below is not None and index >= below):
                continue
            self._emitted.add(index)
            if (call := ollama_tool_call(index, **self._calls[index])) is not None:
                done.append(call)
        return done


def ollama_tool_call(index: int, id: str | None, name: str, arguments: str | Mapping[str, Any]) -> dict[str, Any] | None:
    """One call in Ollama's shape, or None (logged) when its arguments are not a JSON object
    (a call cut short by `num_predict`, say): Ollama's `arguments` is always an object."""
    if isinstance(arguments, str):
        if not arguments.strip():  # the name came, the arguments did not: the output was cut short
            logger.warning("dropping an unfinished tool call: %s", name)
            return None
        try:
            # strict=False: a raw control character in a string is the model's slip, not a reason
            # to lose the call (the grammars that constrain arguments let them through).
            parsed = json.loads(arguments, strict=False)
        except json.JSONDecodeError:
            parsed = None
    else:
        parsed = dict(arguments)
    if not isinstance(parsed, dict) or not name:
        logger.warning("dropping a tool call whose arguments are not a JSON object: %s %r", name, arguments)
        return None
    call: dict[str, Any] = {"function": {"index": index, "name": name, "arguments": parsed}}
    if id:
        call = {"id": id, **call}
    return call
