"""What crosses the hop between the ingress and a model's engine replicas (over Serve's gRPC
transport): one `Call` per request, `Piece`s back. Plain records, no Ray import, so the request
router, the ingress and the replica all read the same definitions.

A stream comes back as the bytes the client gets (NDJSON or SSE, built in the replica where the
tokens are made, so the ingress writes them as they are) with the token ids those bytes carry.
The ingress keeps the ids of what it has sent: if the replica dies mid-stream, a `Resume` lets
another replica go on from exactly there (see `serve/forward.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from vllama.models.registry import CreatedModel
from vllama.translate.prefixes import PrefixKey

Api = Literal["ollama", "openai"]


@dataclass(frozen=True, slots=True)
class StreamStart:
    """Sent with a stream's first tokens: where it runs, and what a resumed stream must report
    as the first attempt's figures."""

    replica: str
    #: Whether another replica can go on with this stream from its tokens (our own Ollama path
    #: without tools, thoughts or images; vLLM's /v1 handlers and parsers keep state we cannot move).
    resumable: bool
    #: From the request's arrival to the engine taking it, and from there to the first token.
    load_ns: int = 0
    prefill_ns: int = 0


@dataclass(frozen=True, slots=True)
class Resume:
    """A stream to go on with: the tokens the client already has, and its first attempt's start."""

    output_token_ids: tuple[int, ...]
    start: StreamStart
    #: From the request's arrival to its first token.
    first_token_ns: int


@dataclass(frozen=True, slots=True)
class Call:
    """One request for a model, as the ingress forwards it (the body unparsed: the replica parses
    it once, where it is used)."""

    api: Api
    kind: str
    body: bytes
    #: The model name as the client wrote it (echoed in the answer).
    echo: str
    #: This attempt's id (a retried request gets a new one): the router notes where it sent it.
    id: str = ""
    #: Time since the request arrived at the ingress (clocks of two nodes cannot be compared).
    elapsed_ns: int = 0
    #: The model the client named, when it is one made by /api/create on this model.
    created: CreatedModel | None = None
    resume: Resume | None = None
    #: The request's `keep_alive` in seconds (negative: forever), None when it gives none.
    keep_alive: float | None = None
    #: The HTTP request's id (`request_log.py`): part of the engine's request id, for its logs.
    request_id: str = ""
    # --- read by the request router (`serve/routing.py`), ignored by the replica ---
    prefix: PrefixKey | None = None
    #: Replicas not to use (they failed this request already).
    avoid: tuple[str, ...] = ()


class Piece(NamedTuple):
    """A part of a streamed answer: bytes for the client, and the generated token ids they carry."""

    data: bytes
    token_ids: tuple[int, ...] = ()
    start: StreamStart | None = None
    #: The answer is complete with this piece (what may follow is only the end of the stream).
    done: bool = False
