"""What the router reads from a request to send it where its prompt's prefix is cached: the
conversation it belongs to. Pure: no Ray, no vLLM.

A chat re-sends its whole history every turn, so the turns of one conversation share everything
up to the end of its first user message (its *opening*: the system prompt and the first
question). `PrefixKey.affinity` hashes that opening; the router sends every request with the same
affinity to the same engine replica (rendezvous hashing, `serve/routing.py`), whose prefix cache
then holds the conversation's history, every turn longer than the last. A prompt that is not a
conversation (generate, completions) is represented by its first `TEXT_OPENING_BYTES` (the
system prompt left out, which many requests share).

Why the opening and not the longest common prefix of the text (as a radix tree over the prompts
would find): many conversations share a long system prompt, and following the longest match
sends all of them to the replica that saw it first (measured: 96 of 96 requests of a
16-conversation run on one of two replicas, docs/PERFORMANCE.md). Keyed on the opening, they
spread over the replicas, each of which computes the shared prompt once, and each stays on its
own. Only one integer crosses the hop, and hashing costs a microsecond.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vllama.ollama_api.schema import ChatRequest, GenerateRequest

#: What stands for the opening of a plain prompt (generate, completions): prompts that begin alike
#: (a continued text, the same instructions) are kept together.
TEXT_OPENING_BYTES = 256
_SEPARATOR = b"\x1e"  # between messages: "ab" + "c" and "a" + "bc" must not hash alike


@dataclass(frozen=True, slots=True)
class PrefixKey:
    """The conversation a prompt belongs to: the hash of its opening (stable across processes,
    so that every ingress replica routes it alike)."""

    affinity: int


def prefix_key(parts: Sequence[bytes], opening_parts: int | None = None) -> PrefixKey:
    """The key of a prompt made of `parts` (in order). `opening_parts`: how many of the first
    parts make a conversation's opening; None for a prompt that is not a conversation, whose
    first `TEXT_OPENING_BYTES` stand for it."""
    if opening_parts is None:
        opening = _SEPARATOR.join(parts)[:TEXT_OPENING_BYTES]
    else:
        opening = _SEPARATOR.join(parts[: max(opening_parts, 1)])
    return PrefixKey(int.from_bytes(hashlib.blake2b(opening, digest_size=8).digest(), "little"))


def ollama_prefix_key(request: GenerateRequest | ChatRequest) -> PrefixKey:
    """The key of an Ollama generate or chat request."""
    if isinstance(request, ChatRequest):
        return _messages_key((m.role, m.content) for m in request.messages or ())
    # Not the system prompt: requests that share one would all go to one replica.
    parts = []
    if request.context:  # a conversation carried on by token ids: they begin it
        parts.append(",".join(map(str, request.context)).encode())
    parts.append((request.prompt or "").encode())
    return prefix_key(parts)


def openai_prefix_key(fields: Mapping[str, Any]) -> PrefixKey | None:
    """The key of an OpenAI chat or completion body, or None when it has no text to key on."""
    messages = fields.get("messages")
    if isinstance(messages, list):
        if not messages:
            return None
        return _messages_key(  # roles as Ollama reads them: case does not matter
            (str(m.get("role", "")).lower(), _content_text(m.get("content"))) for m in messages if isinstance(m, Mapping)
        )
    prompt = fields.get("prompt")
    if isinstance(prompt, str):
        return prefix_key([prompt.encode()])
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        return prefix_key([prompt[0].encode()])
    return None


def _messages_key(messages: Iterable[tuple[str, str]]) -> PrefixKey:
    parts = []
    opening = 0
    for role, content in messages:
        parts.append(f"{role}\x1f{content}".encode())
        if not opening and role == "user":
            opening = len(parts)
    return prefix_key(parts, opening or len(parts))


def _content_text(content: Any) -> str:
    """OpenAI's content: a string, or parts of which the text ones count."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and isinstance(p.get("text"), str))
    return ""
