"""The multi-turn workload of `vllama bench`: many conversations, interleaved, each turn re-sending
the whole history, and what the server's prefix caches made of it.

Each of N conversations has K turns. A turn's request is a chat whose messages are the history
so far: an optional system prompt that every conversation shares, then every earlier user
message and the answer the assistant actually streamed back, then a new user message. That is
what a chat client sends, and what prefix caching (and vllama's prefix-affine routing, which
keeps a conversation on the replica that holds its history) is for: turn k+1's prompt starts
with all of turn k's prompt and answer.

Conversations interleave as they would with many users: at most C requests are in flight
overall, a conversation never has two, and the next request comes from one of the conversations
furthest behind, picked at random (`TurnScheduler`). Each conversation's words are
drawn from a generator of its own, so that conversations share the system prompt and nothing
else: a cache hit beyond the system prompt is a conversation's own history.

The hit rate comes from the server: vllama's `GET /vllama/status` gives each engine replica's
cumulative prefix-cache counters (vLLM's own: prompt tokens looked up, and found cached), read
before and after the run (`cache_delta`). There is no warm-up: its requests would be in those
counts. Against a server without that endpoint the run goes on and says why there is no hit
rate.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from vllama.bench.client import Api, Workload, timed_request
from vllama.bench.runner import _WORDS
from vllama.bench.stats import RequestRecord, distribution, summarize

Message = dict[str, str]
#: Sends one turn's messages and returns its record, with the streamed text in `record.text`.
Send = Callable[[tuple[Message, ...]], Awaitable[RequestRecord]]


@dataclass(frozen=True)
class MultiTurnSpec:
    base_url: str
    api: Api
    model: str
    conversations: int
    turns: int
    concurrency: int
    system_words: int = 0
    input_words: int = 32
    output_tokens: int = 50
    seed: int = 0
    timeout_s: float = 600.0


# --- the conversations ----------------------------------------------------------------------------


def system_prompt(words: int, seed: int = 0) -> str | None:
    """The system prompt every conversation of a run starts with (None for none)."""
    if words <= 0:
        return None
    rng = random.Random(f"system-{seed}")
    return " ".join(["You", "are", "a", "helpful", "assistant.", *(rng.choice(_WORDS) for _ in range(words))][:words])


def user_messages(conversation: int, turns: int, words: int, seed: int = 0) -> list[str]:
    """One conversation's user messages, `words` words each after a short tag. A generator of
    the conversation's own: two conversations' prompts part right after the system prompt."""
    rng = random.Random(f"conversation-{seed}-{conversation}")
    return [
        f"conversation {conversation} turn {turn + 1}: " + " ".join(rng.choice(_WORDS) for _ in range(words))
        for turn in range(turns)
    ]


@dataclass
class Conversation:
    """One conversation's user messages, and the answers it got so far."""

    system: str | None
    users: list[str]
    answers: list[str] = field(default_factory=list)

    def messages(self, turn: int) -> tuple[Message, ...]:
        """Turn `turn`'s (1-based) request: the history up to it, then its user message."""
        assert len(self.answers) == turn - 1, "a turn is sent only once the previous one was answered"
        history: list[Message] = [{"role": "system", "content": self.system}] if self.system else []
        for user, answer in zip(self.users, self.answers, strict=False):
            history += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        history.append({"role": "user", "content": self.users[turn - 1]})
        return tuple(history)


def conversations(count: int, turns: int, *, system_words: int, input_words: int, seed: int = 0) -> list[Conversation]:
    system = system_prompt(system_words, seed)
    return [Conversation(system, user_messages(i, turns, input_words, seed)) for i in range(count)]


# --- interleaving ---------------------------------------------------------------------------------


class TurnScheduler:
    """Which conversation sends next: of those ready (no turn in flight, turns left), one that
    has sent the fewest turns, picked at random. A conversation is not ready while its turn is
    in flight, so it never has two.

    Fewest turns first keeps the conversations abreast, so the run does not end with a few long
    ones going turn after turn alone. At random among them, not the one that waited longest:
    with exact output lengths, requests finish in the order they started, and in first-in,
    first-out order conversation i's next turn always took the slot that conversation i + C had
    taken from it, so least-loaded routing sent every conversation back to the replica of its
    previous turn: a prefix affinity of its own (in a simulation with two replicas, 80 later
    turns of 80; at random, about half), and against two real replicas the same hit rate as
    prefix-affine routing (80.1% and 80.5%, 2026-12-03)."""

    def __init__(self, conversations: int, turns: int, seed: int = 0) -> None:
        self.turns = turns
        self._rng = random.Random(seed)
        self._sent = [0] * conversations
        self._ready = list(range(conversations))
        self._in_flight: set[int] = set()

    def next(self) -> tuple[int, int] | None:
        """(conversation, turn from 1) to send now, or None when every conversation still
        going has a turn in flight (or all are done)."""
        if not self._ready:
            return None
        fewest = min(self._sent[c] for c in self._ready)
        behind = [i for i, c in enumerate(self._ready) if self._sent[c] == fewest]
        conversation = self._ready.pop(self._rng.choice(behind))
        self._in_flight.add(conversation)
        self._sent[conversation] += 1
        return conversation, self._sent[conversation]

    def finished(self, conversation: int) -> None:
        """Its turn was answered (or failed): it may send its next one."""
        self._in_flight.remove(conversation)
        if self._sent[conversation] < self.turns:
            self._ready.append(conversation)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    @property
    def sent(self) -> int:
        return sum(self._sent)


@dataclass(frozen=True)
class TurnRecord:
    conversation: int
    turn: int
    record: RequestRecord


async def drive(
    convs: Sequence[Conversation], turns: int, concurrency: int, send: Send,
    progress: Callable[[int], None] | None = None, seed: int = 0,
) -> list[TurnRecord]:
    """Every turn of every conversation, at most `concurrency` in flight. Each worker sends the
    scheduler's next turn as soon as its last one finished. A worker that finds nothing ready
    stops: then every unfinished conversation has a turn in flight with another worker, which
    sends its next turn itself, so fewer workers never leave a ready conversation waiting. A
    failed turn's answer is what arrived of it (usually nothing), and its conversation goes on."""
    scheduler = TurnScheduler(len(convs), turns, seed)
    records: list[TurnRecord] = []

    async def worker() -> None:
        while (picked := scheduler.next()) is not None:
            index, turn = picked
            conversation = convs[index]
            record = await send(conversation.messages(turn))
            conversation.answers.append("".join(record.text or ()))
            records.append(TurnRecord(index, turn, record))
            scheduler.finished(index)
            if progress:
                progress(1)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(convs)))))
    return records


# --- the server's prefix caches -------------------------------------------------------------------


async def read_status(
    session: aiohttp.ClientSession, base_url: str, model: str
) -> tuple[dict[str, Any] | None, str | None]:
    """The model's entry of `/vllama/status`, or None and why not (another server, an older
    vllama, a model it does not list)."""
    try:
        async with session.get(f"{base_url}/vllama/status") as response:
            if response.status != 200:
                return None, f"GET /vllama/status answered HTTP {response.status} (not a vllama server?)"
            status = orjson.loads(await response.read())
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as exc:
        return None, f"GET /vllama/status failed ({type(exc).__name__}: {exc})"
    models = status.get("models") if isinstance(status, dict) else None
    if not isinstance(models, dict):
        return None, "/vllama/status has no models"
    entry = models.get(model)
    if entry is None and ":" not in model:
        entry = models.get(f"{model}:latest")
    if not isinstance(entry, dict):
        return None, f"/vllama/status does not list {model}"
    if not isinstance(entry.get("replicas"), list):
        return None, "/vllama/status gives no replicas (an older vllama?)"
    return entry, None


def _grew(now: dict[str, Any], then: dict[str, Any], key: str) -> int:
    """A cumulative counter's growth. Lower than before: the engine started again, and counts
    from zero."""
    after, before = int(now.get(key) or 0), int(then.get(key) or 0)
    return after - before if after >= before else after


def _rate(hits: int, queries: int) -> float | None:
    return hits / queries if queries else None


def cache_delta(before: dict[str, Any] | None, after: dict[str, Any] | None, sent: int | None = None) -> dict[str, Any]:
    """The run's prefix-cache use from a model's status before and after it: per replica, the
    requests it completed and its hit rate (hits / queries, both in prompt tokens, over the
    run), and the same summed over the replicas. A replica new since `before` counts from zero;
    one that cannot answer is listed without figures. `sent`: the run's requests, to say when
    the counts include other traffic."""
    if before is None or after is None:
        return {"available": False, "hit_rate": None, "note": None}
    earlier = {row.get("replica"): row for row in before.get("replicas") or []}
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for row in after.get("replicas") or []:
        base = {"replica": row.get("replica"), "node": row.get("node"), "state": row.get("state")}
        if row.get("prefix_cache_queries") is None or row.get("completed_requests") is None:
            rows.append({**base, "completed_requests": None, "prefix_cache_queries": None,
                         "prefix_cache_hits": None, "hit_rate": None})
            notes.append(f"replica {row.get('replica')} gave no counters ({row.get('state')})")
            continue
        then = earlier.get(row.get("replica"), {})
        queries, hits = _grew(row, then, "prefix_cache_queries"), _grew(row, then, "prefix_cache_hits")
        rows.append({**base, "completed_requests": _grew(row, then, "completed_requests"),
                     "prefix_cache_queries": queries, "prefix_cache_hits": hits, "hit_rate": _rate(hits, queries)})
    gone = set(earlier) - {row["replica"] for row in rows}
    if gone:
        notes.append(f"{len(gone)} replica(s) gone during the run, their requests not counted")
    counted = [r for r in rows if r["completed_requests"] is not None]
    completed = sum(r["completed_requests"] for r in counted)
    for r in rows:
        r["share"] = r["completed_requests"] / completed if completed and r["completed_requests"] is not None else None
    queries = sum(r["prefix_cache_queries"] for r in counted)
    hits = sum(r["prefix_cache_hits"] for r in counted)
    if sent is not None and completed != sent and not gone:
        notes.append(f"the replicas completed {completed} requests during the run, which sent {sent}")
    return {
        "available": True, "hit_rate": _rate(hits, queries), "prefix_cache_queries": queries,
        "prefix_cache_hits": hits, "completed_requests": completed, "replicas": rows,
        "note": "; ".join(notes) or None,
    }


# --- the run --------------------------------------------------------------------------------------


def turn_summary(records: Sequence[RequestRecord]) -> dict[str, Any]:
    """The figures that tell turns apart: how long their prompts were, and their latencies."""
    done = [r for r in records if r.ok]
    return {
        "requests": len(records),
        "failed": len(records) - len(done),
        "mean_prompt_tokens": sum(r.prompt_tokens for r in done) / len(done) if done else 0.0,
        "ttft_ms": distribution([r.first_token - r.start for r in done if r.first_token is not None]),
        "e2e_ms": distribution([r.end - r.start for r in done]),
    }


def summarize_multiturn(records: Sequence[TurnRecord], turns: int, prefix_cache: dict[str, Any]) -> dict[str, Any]:
    """The run's usual summary (`stats.summarize`), then by turn: each turn index, the first
    turn against all later ones (only later turns can find their own history cached), and the
    server's prefix-cache figures."""
    return {
        **summarize([t.record for t in records]),
        "first_turn": turn_summary([t.record for t in records if t.turn == 1]),
        "later_turns": turn_summary([t.record for t in records if t.turn > 1]),
        "turns": [{"turn": k, **turn_summary([t.record for t in records if t.turn == k])} for k in range(1, turns + 1)],
        "prefix_cache": prefix_cache,
    }


async def run_multiturn(spec: MultiTurnSpec, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run every conversation against the server, and summarize (`summarize_multiturn`)."""
    convs = conversations(spec.conversations, spec.turns, system_words=spec.system_words,
                          input_words=spec.input_words, seed=spec.seed)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        def send(messages: tuple[Message, ...]) -> Awaitable[RequestRecord]:
            work = Workload(spec.model, "", spec.output_tokens, "chat", messages=messages)
            return timed_request(session, spec.base_url, spec.api, work, keep_text=True)

        before, note = await read_status(session, spec.base_url, spec.model)
        records = await drive(convs, spec.turns, spec.concurrency, send, progress, spec.seed)
        after, note_after = (await read_status(session, spec.base_url, spec.model)) if before else (None, None)
    prefix_cache = cache_delta(before, after, sent=len(records))
    if not prefix_cache["available"]:
        prefix_cache["note"] = note or note_after
    return summarize_multiturn(records, spec.turns, prefix_cache)
