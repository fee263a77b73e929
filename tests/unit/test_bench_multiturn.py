"""vllama bench's multi-turn workload without a real server: the conversations it makes, the
order it sends their turns in, the prefix-cache arithmetic on /vllama/status, and its reports.

Where a server is needed, a scripted stand-in answers (as in test_bench_client.py): each answer
names the message it answers, so that a history can be checked to carry the answers it got.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from vllama.bench import report
from vllama.bench.client import Workload, request_body, timed_request
from vllama.bench.multiturn import (
    Conversation,
    MultiTurnSpec,
    TurnRecord,
    TurnScheduler,
    cache_delta,
    conversations,
    drive,
    read_status,
    run_multiturn,
    summarize_multiturn,
    system_prompt,
    user_messages,
)
from vllama.bench.stats import RequestRecord

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import multiturn as multiturn_script  # noqa: E402

# --- the conversations ----------------------------------------------------------------------------


def test_conversations_share_the_system_prompt_and_nothing_else() -> None:
    convs = conversations(5, 3, system_words=20, input_words=10, seed=7)
    assert len({c.system for c in convs}) == 1 and len(convs[0].system.split()) == 20
    firsts = [c.users[0] for c in convs]
    # Their first user messages part at once (the tag), so no two share a prefix past the system prompt.
    assert len({m.split(":")[0] for m in firsts}) == 5
    assert all(len(m.split(":", 1)[1].split()) == 10 for c in convs for m in c.users)
    assert len({m for c in convs for m in c.users}) == 15
    assert conversations(5, 3, system_words=20, input_words=10, seed=7)[3].users == convs[3].users
    assert conversations(5, 3, system_words=20, input_words=10, seed=8)[3].users != convs[3].users
    assert system_prompt(0) is None and conversations(2, 1, system_words=0, input_words=4)[0].system is None


def test_a_conversations_words_do_not_depend_on_how_many_there_are() -> None:
    assert user_messages(2, 4, 12, seed=1) == conversations(9, 4, system_words=0, input_words=12, seed=1)[2].users


def test_a_turn_carries_the_whole_history() -> None:
    conv = Conversation("be brief", ["u1", "u2", "u3"])
    assert conv.messages(1) == ({"role": "system", "content": "be brief"}, {"role": "user", "content": "u1"})
    conv.answers.append("a1")
    conv.answers.append("a2")
    assert [m["content"] for m in conv.messages(3)] == ["be brief", "u1", "a1", "u2", "a2", "u3"]
    assert [m["role"] for m in conv.messages(3)] == ["system", "user", "assistant", "user", "assistant", "user"]
    with pytest.raises(AssertionError):
        conv.messages(2)  # turn 2 goes out before turn 3's history exists, never after


# --- interleaving ---------------------------------------------------------------------------------


def test_scheduler_keeps_the_conversations_abreast() -> None:
    s = TurnScheduler(3, 2, seed=5)
    first, second = s.next(), s.next()
    assert first[1] == second[1] == 1
    s.finished(first[0])
    # The third conversation has sent nothing yet: it goes before anyone's second turn.
    assert s.next() == (({0, 1, 2} - {first[0], second[0]}).pop(), 1)
    assert s.next() == (first[0], 2) and s.next() is None  # the other two are in flight
    for c in (0, 1, 2):
        s.finished(c)
    assert s.next()[1] == 2 and s.next()[1] == 2 and s.next() is None and s.sent == 6


def test_scheduler_picks_at_random_among_the_furthest_behind() -> None:
    def order(seed: int) -> list[int]:
        s = TurnScheduler(8, 1, seed)
        return [s.next()[0] for _ in range(8)]

    assert order(1) == order(1) and sorted(order(1)) == list(range(8))
    assert len({tuple(order(seed)) for seed in range(5)}) > 1


def test_scheduler_never_gives_a_conversation_in_flight() -> None:
    rng = random.Random(3)
    s = TurnScheduler(5, 4)
    in_flight: set[int] = set()
    sent: dict[int, list[int]] = {}
    while s.sent < 20 or in_flight:
        # At random, a turn in flight finishes, or the scheduler is asked for the next one.
        picked = s.next() if rng.random() < 0.5 or not in_flight else None
        if picked is None:
            s.finished(done := rng.choice(sorted(in_flight)))
            in_flight.remove(done)
            continue
        conversation, turn = picked
        assert conversation not in in_flight
        in_flight.add(conversation)
        sent.setdefault(conversation, []).append(turn)
    assert sent == {c: [1, 2, 3, 4] for c in range(5)}
    with pytest.raises(KeyError):
        s.finished(0)  # nothing of it in flight


class FakeServer:
    """A `send` that answers after a random delay, keeping count of what is in flight."""

    def __init__(self, seed: int = 0, jitter: bool = True) -> None:
        self.rng = random.Random(seed)
        self.jitter = jitter
        self.in_flight: set[str] = set()
        self.most = 0
        self.requests: list[tuple[dict[str, str], ...]] = []

    async def send(self, messages: tuple[dict[str, str], ...]) -> RequestRecord:
        tag = messages[-1]["content"].split(":")[0]  # "conversation 3 turn 2"
        conversation = tag.split()[1]
        assert conversation not in self.in_flight, "two turns of one conversation in flight"
        self.in_flight.add(conversation)
        self.most = max(self.most, len(self.in_flight))
        self.requests.append(messages)
        await asyncio.sleep(self.rng.uniform(0.001, 0.01) if self.jitter else 0.005)
        self.in_flight.remove(conversation)
        return RequestRecord(start=0.0, end=0.01, first_token=0.005, chunk_times=[0.005], output_tokens=1,
                             text=["answer to ", tag])


@pytest.mark.parametrize(("n", "k", "c"), [(6, 4, 3), (3, 5, 8), (7, 2, 1)])
async def test_drive_sends_every_turn_in_order_with_its_history(n: int, k: int, c: int) -> None:
    convs = conversations(n, k, system_words=5, input_words=3)
    fake = FakeServer(seed=n)
    progressed: list[int] = []
    records = await drive(convs, k, c, fake.send, progressed.append)
    assert len(records) == len(fake.requests) == n * k == sum(progressed)
    assert fake.most == min(c, n)  # the window is full, never over
    for index, conv in enumerate(convs):
        turns = [r.turn for r in records if r.conversation == index]
        assert turns == list(range(1, k + 1))  # in order, each once
        assert conv.answers == [f"answer to conversation {index} turn {t}" for t in range(1, k + 1)]
        sent = [m for m in fake.requests if m[-1]["content"].startswith(f"conversation {index} turn")]
        assert [len(m) for m in sent] == [2 + 2 * t for t in range(k)]  # system, then two more a turn
        for t, messages in enumerate(sent):
            # The system prompt, each earlier user message and the answer it got, the new message.
            expected = [("system", conv.system)]
            for i in range(t):
                expected += [("user", conv.users[i]), ("assistant", conv.answers[i])]
            expected.append(("user", conv.users[t]))
            assert [(m["role"], m["content"]) for m in messages] == expected


async def test_conversations_interleave() -> None:
    convs = conversations(4, 3, system_words=0, input_words=3)
    fake = FakeServer(jitter=False)  # turns of one length: they finish in the order they started
    await drive(convs, 3, 2, fake.send)
    turns = [m[-1]["content"].split(":")[0].split()[3] for m in fake.requests]
    assert turns == ["1"] * 4 + ["2"] * 4 + ["3"] * 4  # every conversation's turn k before anyone's k + 1


async def test_least_loaded_routing_does_not_find_an_affinity_in_the_order() -> None:
    """Two replicas and least-loaded routing, every request of one length (exact output lengths
    make them finish in the order they started): a conversation's next turn must not always go
    back to the replica of its last one, as it did when the turns went out first in, first out."""
    load = {"a": 0, "b": 0}
    last: dict[str, str] = {}
    back = elsewhere = 0

    async def send(messages: tuple[dict[str, str], ...]) -> RequestRecord:
        nonlocal back, elsewhere
        conversation = messages[-1]["content"].split()[1]
        replica = min(load, key=load.__getitem__)
        if conversation in last:
            back, elsewhere = (back + 1, elsewhere) if last[conversation] == replica else (back, elsewhere + 1)
        last[conversation] = replica
        load[replica] += 1
        await asyncio.sleep(0.01)
        load[replica] -= 1
        return RequestRecord(start=0.0, end=0.01, text=["x"])

    await drive(conversations(16, 6, system_words=0, input_words=3), 6, 8, send, seed=2)
    assert back + elsewhere == 80 and elsewhere >= 20


async def test_a_failed_turn_does_not_end_its_conversation() -> None:
    convs = conversations(2, 3, system_words=0, input_words=3)

    async def send(messages: tuple[dict[str, str], ...]) -> RequestRecord:
        return RequestRecord(start=0.0, end=0.1, error="HTTP 500: boom", text=[])

    records = await drive(convs, 3, 2, send)
    assert len(records) == 6 and all(c.answers == ["", "", ""] for c in convs)


# --- prefix-cache arithmetic ----------------------------------------------------------------------


def _replica(name: str, completed: int, queries: int, hits: int, **more: object) -> dict:
    return {"replica": name, "node": "n1", "state": "RUNNING", "completed_requests": completed,
            "prefix_cache_queries": queries, "prefix_cache_hits": hits, **more}


def test_hit_rate_is_of_the_deltas_summed_over_replicas() -> None:
    before = {"replicas": [_replica("a", 10, 1000, 900), _replica("b", 4, 400, 0)]}
    after = {"replicas": [_replica("a", 40, 4000, 2400), _replica("b", 14, 1400, 750)]}
    d = cache_delta(before, after, sent=40)
    assert d["available"] and d["note"] is None
    assert (d["prefix_cache_queries"], d["prefix_cache_hits"], d["completed_requests"]) == (4000, 2250, 40)
    assert d["hit_rate"] == pytest.approx(2250 / 4000)  # not the cumulative 3150 / 5400
    a, b = d["replicas"]
    assert (a["completed_requests"], a["hit_rate"], a["share"]) == (30, pytest.approx(0.5), pytest.approx(0.75))
    assert (b["completed_requests"], b["hit_rate"], b["share"]) == (10, pytest.approx(0.75), pytest.approx(0.25))


def test_new_restarted_and_silent_replicas() -> None:
    before = {"replicas": [_replica("a", 50, 5000, 4000), _replica("gone", 3, 30, 3), _replica("c", 1, 10, 0)]}
    after = {"replicas": [
        _replica("a", 5, 500, 100),  # counters went back: the engine started again, counts from zero
        _replica("new", 6, 600, 300),  # not there before: all its counts are the run's
        {"replica": "c", "node": "n2", "state": "UNREACHABLE", "error": "TimeoutError"},
    ]}
    d = cache_delta(before, after, sent=11)
    assert d["completed_requests"] == 11 and d["prefix_cache_queries"] == 1100 and d["prefix_cache_hits"] == 400
    assert [r["completed_requests"] for r in d["replicas"]] == [5, 6, None]
    assert d["replicas"][2]["hit_rate"] is None and d["replicas"][2]["share"] is None
    assert "replica c gave no counters (UNREACHABLE)" in d["note"] and "1 replica(s) gone" in d["note"]


def test_other_traffic_is_pointed_out_and_nothing_looked_up_has_no_rate() -> None:
    d = cache_delta({"replicas": [_replica("a", 0, 0, 0)]}, {"replicas": [_replica("a", 12, 0, 0)]}, sent=9)
    assert d["hit_rate"] is None and d["replicas"][0]["hit_rate"] is None
    assert d["note"] == "the replicas completed 12 requests during the run, which sent 9"
    assert cache_delta(None, {"replicas": []}) == {"available": False, "hit_rate": None, "note": None}


# --- against a scripted server --------------------------------------------------------------------


class Scripted:
    """Ollama's /api/chat and OpenAI's /v1/chat/completions answering "re: <tag>" in pieces, and
    a /vllama/status whose counters grow with every request (each prompt looked up, the part sent
    before found cached), as vLLM's do."""

    def __init__(self) -> None:
        self.completed = 0
        self.queries = 0
        self.hits = 0
        self.seen: list[str] = []

    def _count(self, messages: list[dict[str, str]]) -> str:
        text = "".join(m["content"] for m in messages)
        cached = max((len(p) for p in self.seen if text.startswith(p)), default=0)
        self.seen.append(text)
        self.queries += len(text)
        self.hits += cached
        return messages[-1]["content"].split(":")[0]

    async def ollama(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        assert body["options"]["ignore_eos"] is True and body["options"]["temperature"] == 0.0
        tag = self._count(body["messages"])
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for piece in ("re: ", tag):
            chunk = {"model": "m", "created_at": "t", "message": {"role": "assistant", "content": piece}, "done": False}
            await response.write(orjson.dumps(chunk) + b"\n")
            await asyncio.sleep(0.002)
        self.completed += 1
        final = {"model": "m", "message": {"role": "assistant", "content": ""}, "done": True, "eval_count": 2,
                 "prompt_eval_count": len(body["messages"])}
        await response.write(orjson.dumps(final) + b"\n")
        return response

    async def openai(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        tag = self._count(body["messages"])
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in ("re: ", tag):
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        self.completed += 1
        await response.write(b'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}\n\n')
        await response.write(b"data: [DONE]\n\n")
        return response

    async def status(self, request: web.Request) -> web.Response:
        # Two replicas: the odd requests' counts on one, in thirds, to check the sums.
        a = _replica("r1", self.completed - self.completed // 3, self.queries - self.queries // 3,
                     self.hits - self.hits // 3)
        b = _replica("r2", self.completed // 3, self.queries // 3, self.hits // 3)
        return web.json_response({"models": {"m:latest": {"completed_requests": self.completed, "replicas": [a, b]}}})


async def _serve(app: web.Application):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


@pytest.fixture
async def scripted():
    server = Scripted()
    app = web.Application()
    app.router.add_post("/api/chat", server.ollama)
    app.router.add_post("/v1/chat/completions", server.openai)
    app.router.add_get("/vllama/status", server.status)
    runner, url = await _serve(app)
    yield server, url
    await runner.cleanup()


@pytest.fixture
async def not_vllama():
    server = Scripted()
    app = web.Application()
    app.router.add_post("/api/chat", server.ollama)
    runner, url = await _serve(app)
    yield url
    await runner.cleanup()


@pytest.mark.parametrize("api", ["ollama", "openai"])
async def test_streamed_text_is_kept_when_asked(scripted, api: str) -> None:
    import aiohttp

    _, url = scripted
    messages = ({"role": "user", "content": "conversation 0 turn 1: hello"},)
    async with aiohttp.ClientSession() as session:
        kept = await timed_request(session, url, api, Workload("m", "", 2, messages=messages), keep_text=True)
        plain = await timed_request(session, url, api, Workload("m", "", 2, messages=messages))
    assert kept.ok and "".join(kept.text) == "re: conversation 0 turn 1" and kept.output_tokens == 2
    assert plain.ok and plain.text is None


def test_request_bodies_carry_the_history() -> None:
    history = ({"role": "system", "content": "s"}, {"role": "user", "content": "u"})
    for api in ("ollama", "openai"):
        _, body = request_body(api, Workload("m", "", 5, messages=history))
        assert json.loads(body)["messages"] == list(history)


@pytest.mark.parametrize("api", ["ollama", "openai"])
async def test_a_run_against_the_scripted_server(scripted, api: str) -> None:
    server, url = scripted
    spec = MultiTurnSpec(base_url=url, api=api, model="m", conversations=4, turns=3, concurrency=2,
                         system_words=30, input_words=5, output_tokens=2)
    s = await run_multiturn(spec)
    assert s["completed"] == 12 and s["failed"] == 0 and server.completed == 12
    assert [t["requests"] for t in s["turns"]] == [4, 4, 4]
    assert s["first_turn"]["requests"] == 4 and s["later_turns"]["requests"] == 8
    if api == "ollama":  # the scripted prompt_eval_count is the number of messages
        assert [t["mean_prompt_tokens"] for t in s["turns"]] == [2, 4, 6]
    cache = s["prefix_cache"]
    assert cache["available"] and cache["note"] is None and cache["completed_requests"] == 12
    assert cache["hit_rate"] == pytest.approx(server.hits / server.queries) and 0 < cache["hit_rate"] < 1
    assert [r["replica"] for r in cache["replicas"]] == ["r1", "r2"]
    assert sum(r["completed_requests"] for r in cache["replicas"]) == 12


async def test_without_the_status_endpoint_the_run_goes_on(not_vllama: str) -> None:
    spec = MultiTurnSpec(base_url=not_vllama, api="ollama", model="m", conversations=2, turns=2, concurrency=2)
    s = await run_multiturn(spec)
    assert s["completed"] == 4
    assert s["prefix_cache"] == {"available": False, "hit_rate": None,
                                 "note": "GET /vllama/status answered HTTP 404 (not a vllama server?)"}


async def test_status_finds_the_model_by_its_untagged_name(scripted) -> None:
    import aiohttp

    _, url = scripted
    async with aiohttp.ClientSession() as session:
        entry, note = await read_status(session, url, "m")
        assert note is None and entry["replicas"][0]["replica"] == "r1"
        entry, note = await read_status(session, url, "other:7b")
        assert entry is None and note == "/vllama/status does not list other:7b"
        entry, note = await read_status(session, "http://127.0.0.1:9", "m")
        assert entry is None and note.startswith("GET /vllama/status failed (ClientConnectorError")


# --- reports --------------------------------------------------------------------------------------


def _summary(hit_rate: float | None = 0.6) -> dict:
    records = []
    for c in range(2):
        for turn in (1, 2, 3):
            ttft = 0.1 if turn == 1 else 0.02
            record = RequestRecord(start=c, end=c + 0.2, first_token=c + ttft, chunk_times=[c + ttft, c + 0.2],
                                   output_tokens=2, prompt_tokens=100 * turn)
            records.append(TurnRecord(c, turn, record))
    before = {"replicas": [_replica("r1", 0, 0, 0), _replica("r2", 0, 0, 0)]}
    after = {"replicas": [_replica("r1", 4, 1000, int(1000 * (hit_rate or 0))), _replica("r2", 2, 0, 0)]}
    return summarize_multiturn(records, 3, cache_delta(before, after, sent=6))


def test_turn_and_cache_rows() -> None:
    s = _summary()
    rows = report.turn_rows(s)
    assert [r[0] for r in rows] == ["1", "2", "3", "1", "2+"]
    assert rows[0] == ["1", "2", "100", "100.0 ms", "100.0 ms", "200.0 ms", "0"]
    assert rows[-1] == ["2+", "4", "250", "20.0 ms", "20.0 ms", "200.0 ms", "0"]
    assert report.cache_rows(s["prefix_cache"]) == [
        ["r1", "n1", "4", "66.7%", "60.0%"], ["r2", "n1", "2", "33.3%", "n/a"], ["all", "", "6", "100.0%", "60.0%"],
    ]


def _doc(summary: dict) -> dict:
    workload = {"kind": "multiturn", "api": "ollama", "endpoint": "chat", "model": "m", "iterations": 6,
                "warmup": 0, "output_tokens": 2, "input_words": 5, "request_rate": None, "repeat": 1,
                "conversations": 2, "turns": 3, "system_words": 0, "seed": 1}
    target = {"name": "target", "url": "http://x", "api": "ollama", "model": "m",
              "points": [{"concurrency": 2, "summary": summary, "repeats": [summary]}]}
    return report.document(workload, [target])


def test_terminal_report_of_a_multiturn_run(capsys) -> None:
    report.print_tables(_doc(_summary()))
    out = capsys.readouterr().out
    assert "by turn" in out and "2+" in out and "prefix cache over the run" in out and "60.0%" in out
    summary = _summary()
    summary["prefix_cache"] = {"available": False, "hit_rate": None, "note": "GET /vllama/status answered HTTP 404"}
    report.print_tables(_doc(summary))
    assert "prefix cache: no figures (GET /vllama/status answered HTTP 404)" in capsys.readouterr().out


def test_the_document_keeps_what_single_runs_have() -> None:
    doc = _doc(_summary())
    point = doc["targets"][0]["points"][0]
    assert doc["schema"] == "vllama-bench/1" and doc["workload"]["kind"] == "multiturn"
    for key in ("completed", "failed", "requests_per_s", "output_tokens_per_s", "ttft_ms", "itl_ms", "tpot_ms",
                "e2e_ms"):
        assert key in point["summary"]
    json.dumps(doc, allow_nan=True)  # what --json prints


# --- bench/multiturn.py's table and the document it writes into ------------------------------------


def _results() -> dict:
    def run(routing: str, round_: int, hit: float, later_s: float) -> dict:
        s = _summary(hit)
        s["later_turns"]["ttft_ms"]["p50"] = later_s
        return {"routing": routing, "round": round_, "startup_s": 40.0, "summary": s}

    return {
        "created_at": "2026-12-03T00:00:00Z", "command": "python bench/multiturn.py --starts 2",
        "hardware": {"cpu": "AMD EPYC", "cores": 2, "memory_gib": 23.5, "gpus": []},
        "versions": {"vllama": "0.1.0"},
        "workload": {"model": "vllama-tiny:latest", "conversations": 2, "turns": 3, "concurrency": 2,
                     "system_words": 200, "input_words": 40, "output_tokens": 50, "starts": 2},
        "results": [run("prefix", 0, 0.8, 15.0), run("least_loaded", 0, 0.4, 30.0),
                    run("least_loaded", 1, 0.5, 34.0), run("prefix", 1, 0.9, 17.0)],
    }


def test_script_table_is_the_median_over_starts() -> None:
    block = multiturn_script.render(_results())
    assert block.startswith(multiturn_script.BEGIN) and block.endswith(multiturn_script.END)
    assert "- Hardware: AMD EPYC, 2 cores, 23.5 GiB, no GPU" in block
    assert "`python bench/multiturn.py --starts 2`" in block and "2026-12-03T00:00:00Z" in block
    assert "| `prefix` | 85.0% | 100.0 ms | 16.0 ms | " in block
    assert "| `least_loaded` | 45.0% | 100.0 ms | 32.0 ms | " in block
    assert "| 4/2, 4/2 | 0 |" in block  # each start's split of the requests between the replicas
    assert "| `least_loaded`, round 2 | 50.0% |" in block  # and each start on its own


def test_script_writes_only_between_its_markers(tmp_path: Path) -> None:
    doc = tmp_path / "PERFORMANCE.md"
    doc.write_text("# Performance\n\n<!-- harness:begin -->\nharness\n<!-- harness:end -->\n\n"
                   "## Later\n\nhand-written\n")
    original = doc.read_text()
    multiturn_script.write_docs("<!-- multiturn:begin -->\nfirst\n<!-- multiturn:end -->", doc)
    text = doc.read_text()
    assert text.startswith(original.rstrip("\n"))  # the rest as it was
    assert text.count("## Prefix-affine routing") == 1 and text.endswith("<!-- multiturn:end -->\n")
    text = text.replace("<!-- multiturn:end -->\n", "<!-- multiturn:end -->\n\nnotes by hand\n")
    doc.write_text(text)
    multiturn_script.write_docs("<!-- multiturn:begin -->\nsecond\n<!-- multiturn:end -->", doc)
    again = doc.read_text()
    assert "second" in again and "first" not in again and again.endswith("notes by hand\n")
    assert again.count("## Prefix-affine routing") == 1 and again.startswith(original.rstrip("\n"))
