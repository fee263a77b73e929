"""Prompt prefix keys (`vllama.translate.prefixes`): what the request router reads from a request,
the conversation it belongs to."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from typing import Any

import pytest

from vllama.ollama_api.schema import ChatRequest, GenerateRequest
from vllama.translate.prefixes import (
    TEXT_OPENING_BYTES,
    PrefixKey,
    ollama_prefix_key,
    openai_prefix_key,
    prefix_key,
)

SYSTEM = "You are a careful assistant. " * 40  # about 1.1 KiB: far longer than a plain prompt's opening


def chat(*messages: tuple[str, str]) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "m", "messages": [{"role": role, "content": content} for role, content in messages]}
    )


def generate(**fields: Any) -> GenerateRequest:
    return GenerateRequest.model_validate({"model": "m", **fields})


# --- prefix_key ------------------------------------------------------------------------------


def test_key_is_only_the_affinity() -> None:
    key = prefix_key([b"hello"], 1)
    assert [f.name for f in dataclasses.fields(PrefixKey)] == ["affinity"]
    assert key == PrefixKey(key.affinity)
    assert 0 <= key.affinity < 2**64
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.affinity = 1  # type: ignore[misc]


def test_separator_keeps_part_boundaries() -> None:
    """"ab" + "c" and "a" + "bc" are different prompts."""
    assert prefix_key([b"ab" * 100, b"c" * 100], 2) != prefix_key([b"ab" * 100 + b"c", b"c" * 99], 2)
    assert prefix_key([b"ab", b"c"], 2).affinity != prefix_key([b"a", b"bc"], 2).affinity
    assert prefix_key([b"ab", b"c"]) != prefix_key([b"a", b"bc"])  # a plain prompt's parts too


def test_affinity_counts_only_the_opening_parts() -> None:
    assert prefix_key([b"open", b"one"], 1).affinity == prefix_key([b"open", b"two"], 1).affinity
    assert prefix_key([b"open", b"one"], 2).affinity != prefix_key([b"open", b"two"], 2).affinity
    assert prefix_key([b"open"], 0).affinity == prefix_key([b"open", b"x"], 1).affinity  # at least one part


def test_opening_parts_are_hashed_whole() -> None:
    """A conversation's opening is not cut at `TEXT_OPENING_BYTES`: a long system prompt followed
    by different questions is two conversations."""
    long = b"s" * (4 * TEXT_OPENING_BYTES)
    assert prefix_key([long, b"user\x1fone"], 2) != prefix_key([long, b"user\x1ftwo"], 2)
    assert prefix_key([long + b"a"], 1) != prefix_key([long + b"b"], 1)


def test_text_opening_bytes() -> None:
    assert TEXT_OPENING_BYTES == 256


@pytest.mark.parametrize("differs_at", [0, 1, 100, TEXT_OPENING_BYTES - 1])
def test_plain_prompts_differing_within_the_opening_differ(differs_at: int) -> None:
    text = bytes(range(256)) * 4
    other = text[:differs_at] + bytes([text[differs_at] ^ 0xFF]) + text[differs_at + 1 :]
    assert prefix_key([text]) != prefix_key([other])


@pytest.mark.parametrize("differs_at", [TEXT_OPENING_BYTES, TEXT_OPENING_BYTES + 1, 1000])
def test_plain_prompts_sharing_the_opening_are_equal(differs_at: int) -> None:
    text = bytes(range(256)) * 4
    other = text[:differs_at] + bytes([text[differs_at] ^ 0xFF]) + text[differs_at + 1 :]
    assert prefix_key([text]) == prefix_key([other])
    assert prefix_key([text]) == prefix_key([text[:TEXT_OPENING_BYTES]])  # what follows does not count
    assert prefix_key([text]) != prefix_key([text[: TEXT_OPENING_BYTES - 1]])  # a shorter one differs


def test_plain_prompt_opening_counts_the_separators() -> None:
    """The first `TEXT_OPENING_BYTES` of the parts joined, separators included."""
    parts = [b"a" * 200, b"b" * 100]
    assert prefix_key(parts) == prefix_key([b"a" * 200 + b"\x1e" + b"b" * 55])
    assert prefix_key(parts) == prefix_key([b"a" * 200, b"b" * 55 + b"anything after"])
    assert prefix_key(parts) != prefix_key([b"a" * 200 + b"b" * 56])


def test_short_plain_prompt_is_the_whole_prompt() -> None:
    assert prefix_key([b"short"]) == prefix_key([b"short"], 1)
    assert prefix_key([b"x", b"y"]) == prefix_key([b"x", b"y"], 2)
    assert prefix_key([b"short"]) != prefix_key([b"short!"])


# --- conversations ---------------------------------------------------------------------------


def test_every_turn_of_a_conversation_has_the_same_affinity() -> None:
    first = ollama_prefix_key(chat(("system", SYSTEM), ("user", "What is a prefix cache?")))
    second = ollama_prefix_key(
        chat(("system", SYSTEM), ("user", "What is a prefix cache?"), ("assistant", "A cache of KV blocks."),
             ("user", "And why route by it?"))
    )
    third = ollama_prefix_key(
        chat(("system", SYSTEM), ("user", "What is a prefix cache?"), ("assistant", "A cache of KV blocks."),
             ("user", "And why route by it?"), ("assistant", "To reuse them."), ("user", "Thanks."))
    )
    assert first == second == third
    assert first == prefix_key([f"system\x1f{SYSTEM}".encode(), b"user\x1fWhat is a prefix cache?"], 2)


def test_opening_ends_with_the_first_user_message_after_several_system_messages() -> None:
    opening = [("system", SYSTEM), ("system", "Answer in French."), ("assistant", "Bonjour."), ("user", "Q1")]
    first = ollama_prefix_key(chat(*opening))
    later = ollama_prefix_key(chat(*opening, ("assistant", "R1"), ("user", "Q2")))
    assert first == later
    assert first == prefix_key([f"system\x1f{SYSTEM}".encode(), b"system\x1fAnswer in French.",
                                b"assistant\x1fBonjour.", b"user\x1fQ1"], 4)
    # Every message of the opening counts.
    assert first != ollama_prefix_key(chat(("system", SYSTEM), ("system", "Answer in German."),
                                           ("assistant", "Bonjour."), ("user", "Q1")))
    assert first != ollama_prefix_key(chat(("system", SYSTEM), ("system", "Answer in French."), ("user", "Q1")))


def test_conversations_sharing_a_system_prompt_have_different_affinities() -> None:
    one = ollama_prefix_key(chat(("system", SYSTEM), ("user", "Tell me about cats.")))
    two = ollama_prefix_key(chat(("system", SYSTEM), ("user", "Tell me about dogs.")))
    assert one != two
    # ... and their later turns stay apart too.
    assert ollama_prefix_key(chat(("system", SYSTEM), ("user", "Tell me about cats."), ("assistant", "Meow."),
                                  ("user", "More."))) == one != two


def test_conversations_differing_after_the_opening_are_the_same_conversation() -> None:
    """Only the opening is hashed: two chats that share it are keyed alike, whatever follows."""
    base = [("system", "s"), ("user", "q")]
    assert ollama_prefix_key(chat(*base, ("assistant", "a"), ("user", "x"))) == ollama_prefix_key(
        chat(*base, ("assistant", "b"), ("user", "y"))
    )


def test_conversation_without_user_message_uses_all_its_messages() -> None:
    one = ollama_prefix_key(chat(("system", "a")))
    two = ollama_prefix_key(chat(("system", "a"), ("assistant", "b")))
    assert one.affinity != two.affinity
    assert one == prefix_key([b"system\x1fa"], 1)
    assert two == prefix_key([b"system\x1fa", b"assistant\x1fb"], 2)


def test_keys_are_the_same_in_another_process() -> None:
    """Every ingress replica must compute the same integers: no per-process salted str hash."""
    chat_body = {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "héllo"}]}
    text_body = {"prompt": "Once upon a time " * 30}
    code = (
        "from vllama.translate.prefixes import openai_prefix_key\n"
        f"print(openai_prefix_key({chat_body!r}).affinity, openai_prefix_key({text_body!r}).affinity)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # a str hash would differ under another seed
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    chat_key, text_key = openai_prefix_key(chat_body), openai_prefix_key(text_body)
    assert chat_key is not None and text_key is not None
    assert chat_key != text_key
    assert out.split() == [str(chat_key.affinity), str(text_key.affinity)]


# --- Ollama requests -------------------------------------------------------------------------


def test_ollama_chat_key() -> None:
    request = chat(("system", "be brief"), ("user", "hi"), ("assistant", "hello"), ("user", "bye"))
    expected = prefix_key([b"system\x1fbe brief", b"user\x1fhi", b"assistant\x1fhello", b"user\x1fbye"], 2)
    assert ollama_prefix_key(request) == expected


def test_ollama_chat_roles_matter() -> None:
    assert ollama_prefix_key(chat(("user", "x" * 500))) != ollama_prefix_key(chat(("assistant", "x" * 500)))


def test_ollama_chat_role_case_does_not_matter() -> None:
    """Ollama's roles are matched case-insensitively: "User" opens the conversation too."""
    assert ollama_prefix_key(chat(("system", "s"), ("User", "q"))) == ollama_prefix_key(
        chat(("system", "s"), ("user", "q"), ("assistant", "a"), ("user", "r"))
    )


def test_ollama_chat_without_messages() -> None:
    assert ollama_prefix_key(ChatRequest.model_validate({"model": "m"})) == prefix_key([], 0)
    assert ollama_prefix_key(ChatRequest.model_validate({"model": "m", "messages": []})) == prefix_key([], 0)


@pytest.mark.parametrize(
    ("fields", "parts"),
    [
        ({"prompt": "hello"}, [b"hello"]),
        ({"prompt": "hello", "system": "sys"}, [b"hello"]),  # the system prompt is shared: left out
        ({"prompt": "more", "context": [1, 22, 333]}, [b"1,22,333", b"more"]),
        ({"prompt": "more", "system": "sys", "context": [7]}, [b"7", b"more"]),
        ({}, [b""]),
        ({"system": "", "context": []}, [b""]),  # empty ones count as absent
    ],
)
def test_ollama_generate_key(fields: dict[str, Any], parts: list[bytes]) -> None:
    assert ollama_prefix_key(generate(**fields)) == prefix_key(parts)


def test_ollama_generate_keys_on_the_first_bytes() -> None:
    opening = "The following is a long story about a lighthouse keeper. " * 5
    assert len(opening.encode()) >= TEXT_OPENING_BYTES
    one = ollama_prefix_key(generate(prompt=opening + "Chapter one."))
    two = ollama_prefix_key(generate(prompt=opening + "Chapter two."))
    assert one == two
    assert one != ollama_prefix_key(generate(prompt="Chapter one."))
    # A system prompt, however long, does not make the opening: prompts under the same
    # instructions spread over the replicas instead of all going to one.
    assert ollama_prefix_key(generate(system=SYSTEM, prompt="a")) != ollama_prefix_key(generate(system=SYSTEM, prompt="b"))
    assert ollama_prefix_key(generate(system=SYSTEM, prompt="a")) == ollama_prefix_key(generate(prompt="a"))


def test_ollama_generate_context_is_part_of_the_key() -> None:
    """A generate conversation carried on by `context`: the token ids begin it."""
    assert ollama_prefix_key(generate(prompt="x", context=[1, 2, 3])) != ollama_prefix_key(generate(prompt="x"))
    assert ollama_prefix_key(generate(prompt="x", context=[1, 2, 3])) != ollama_prefix_key(
        generate(prompt="x", context=[1, 2, 4])
    )
    # Long enough, the ids are the whole opening: every later turn of that conversation agrees.
    context = list(range(1000, 1100))
    assert len(",".join(map(str, context))) >= TEXT_OPENING_BYTES
    one = ollama_prefix_key(generate(context=context, prompt="a"))
    two = ollama_prefix_key(generate(context=[*context, 5, 6, 7], prompt="b"))
    assert one == two
    assert one != ollama_prefix_key(generate(context=[999, *context], prompt="a"))


# --- OpenAI bodies ---------------------------------------------------------------------------


def test_openai_chat_string_and_parts_content_agree() -> None:
    text = {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "look at this"}]}
    parts = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "sys"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look "},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": "at this"},
                ],
            },
        ]
    }
    expected = prefix_key([b"system\x1fsys", b"user\x1flook at this"], 2)
    assert openai_prefix_key(text) == expected
    assert openai_prefix_key(parts) == expected


def test_openai_chat_turns_share_the_affinity() -> None:
    opening = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": [{"type": "text", "text": "Q1"}]}]
    first = openai_prefix_key({"messages": opening})
    later = openai_prefix_key({"messages": [*opening, {"role": "assistant", "content": "R1"},
                                            {"role": "user", "content": "Q2"}]})
    other = openai_prefix_key({"messages": [opening[0], {"role": "user", "content": "Q9"}]})
    assert first is not None
    assert first == later
    assert first != other


def test_openai_chat_odd_messages() -> None:
    body = {"messages": ["not a message", {"content": "no role"}, {"role": "assistant", "content": None},
                         {"role": "user", "content": 42}]}
    expected = prefix_key([b"\x1fno role", b"assistant\x1f", b"user\x1f"], 3)
    assert openai_prefix_key(body) == expected


def test_openai_chat_affinity_matches_ollama_chat() -> None:
    """The same conversation on both APIs is keyed alike (the same engine's cache serves it)."""
    messages = [("system", SYSTEM), ("user", "q"), ("assistant", "a"), ("user", "r")]
    body = {"messages": [{"role": r, "content": c} for r, c in messages]}
    assert openai_prefix_key(body) == ollama_prefix_key(chat(*messages))


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"prompt": "complete me"}, b"complete me"),
        ({"prompt": ["first", "second"]}, b"first"),  # a batch: keyed on its first prompt
        ({"prompt": ""}, b""),
        ({"prompt": "z" * 1000}, b"z" * TEXT_OPENING_BYTES),  # its first bytes
        ({"prompt": ["z" * 300 + "a", "other"]}, b"z" * TEXT_OPENING_BYTES),
    ],
)
def test_openai_completion_key(body: dict[str, Any], text: bytes) -> None:
    assert openai_prefix_key(body) == prefix_key([text])


def test_openai_completion_matches_ollama_generate() -> None:
    assert openai_prefix_key({"prompt": "hello"}) == ollama_prefix_key(generate(prompt="hello"))


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"messages": []},  # no messages: nothing to key on
        {"prompt": [1, 2, 3]},  # token ids: no text
        {"prompt": [[1, 2], [3]]},
        {"prompt": []},
        {"prompt": None},
        {"messages": "not a list"},
        {"messages": None},
        {"input": "an embedding"},
    ],
)
def test_openai_nothing_to_key_on(body: dict[str, Any]) -> None:
    assert openai_prefix_key(body) is None
