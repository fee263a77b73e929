"""Each model's bounded queue (`vllama.serve.admission`): its numbers from the configuration,
and the 503 it answers with, as Ollama's clients and OpenAI's see it."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from vllama.config import DeploymentSettings, ServingConfig
from vllama.errors import Overloaded
from vllama.models.resolve import ResolvedModel
from vllama.serve import errors
from vllama.serve.admission import (
    DEFAULT_MAX_ONGOING_REQUESTS,
    SERVER_BUSY,
    Admission,
    QueueBound,
    queue_bound,
)


def _model(**engine_kwargs: object) -> ResolvedModel:
    return ResolvedModel(name="m:latest", key="m:latest", source="/weights/m", engine_kwargs=dict(engine_kwargs))


def test_ollamas_exact_message() -> None:
    assert SERVER_BUSY == "server busy, please try again.  maximum pending requests exceeded"


def test_capacity_is_replicas_times_ongoing_plus_queued() -> None:
    bound = QueueBound(per_replica=8, queued=4)
    assert [bound.capacity(n) for n in (0, 1, 3)] == [4, 12, 28]
    assert QueueBound(per_replica=8, queued=-1).capacity(3) is None


def test_admission_counts_and_refuses() -> None:
    admission = Admission(QueueBound(per_replica=1, queued=1))
    admission.enter(1)
    admission.enter(1)
    with pytest.raises(Overloaded) as refused:
        admission.enter(1)
    assert refused.value.status_code == 503 and refused.value.message == SERVER_BUSY
    admission.enter(2)  # a replica more: room for one more
    admission.leave()
    assert admission.admitted == 2
    unbounded = Admission(None)
    for _ in range(1000):
        unbounded.enter(0)


def test_bound_from_the_configuration() -> None:
    assert queue_bound(_model(), DeploymentSettings(), 512) == QueueBound(DEFAULT_MAX_ONGOING_REQUESTS, 512)
    assert queue_bound(_model(max_num_seqs=16), DeploymentSettings(), 7) == QueueBound(32, 7)
    settings = DeploymentSettings(max_ongoing_requests=3, max_queued_requests=0)
    assert queue_bound(_model(max_num_seqs=16), settings, 512) == QueueBound(3, 0)
    assert queue_bound(_model(), DeploymentSettings(max_queued_requests=-1), 512).capacity(5) is None
    with pytest.raises(ValidationError):
        DeploymentSettings(max_queued_requests=-2)
    config = ServingConfig.model_validate({"models": [{"name": "m", "deployment": {"max_queued_requests": 9}}],
                                           "max_queue": 20})
    assert config.models[0].deployment.max_queued_requests == 9 and config.max_queue == 20


@pytest.fixture
def busy_app() -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.post("/api/chat")
    @app.post("/v1/chat/completions")
    async def chat() -> None:
        raise Overloaded(SERVER_BUSY)

    return app


async def test_the_503_for_ollama_and_openai(busy_app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=busy_app), base_url="http://test") as client:
        ollama = await client.post("/api/chat", json={})
        openai = await client.post("/v1/chat/completions", json={})
    assert ollama.status_code == 503 and ollama.json() == {"error": SERVER_BUSY}
    assert ollama.headers["retry-after"] == "1"
    assert openai.status_code == 503 and openai.headers["retry-after"] == "1"
    assert openai.json() == {"error": {"message": SERVER_BUSY, "type": "server_error", "param": None, "code": None}}
