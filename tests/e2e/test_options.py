"""Every Ollama option reaches vLLM's sampling, shown by its effect on real output.

The model has random weights, so the checks compare outputs with each other: top_k 1, a tiny
top_p or min_p 1 at temperature 1 must all give the greedy answer; the same seed twice gives
the same answer; a stop string cuts the answer where it first appears; penalties change it.
"""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import PRIMARY

PROMPT = "Once upon a time"


def generate(http: httpx.Client, **options) -> dict:
    response = http.post("/api/generate", json={"model": PRIMARY, "prompt": PROMPT, "stream": False, "options": options})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def greedy(http: httpx.Client) -> str:
    return generate(http, temperature=0, num_predict=20, min_tokens=20)["response"]


def test_temperature_zero_is_deterministic(http: httpx.Client, greedy: str) -> None:
    assert generate(http, temperature=0, num_predict=20, min_tokens=20)["response"] == greedy


@pytest.mark.parametrize("option", [{"top_k": 1}, {"top_p": 1e-6}, {"min_p": 1.0}])
def test_truncating_samplers_leave_the_greedy_token(http: httpx.Client, greedy: str, option: dict) -> None:
    answer = generate(http, temperature=1.0, num_predict=20, min_tokens=20, seed=7, **option)
    assert answer["response"] == greedy


def test_seed_makes_sampling_repeatable(http: httpx.Client) -> None:
    first = generate(http, temperature=1.0, seed=42, num_predict=20, min_tokens=20)["response"]
    assert generate(http, temperature=1.0, seed=42, num_predict=20, min_tokens=20)["response"] == first
    others = {generate(http, temperature=1.0, seed=s, num_predict=20, min_tokens=20)["response"] for s in (1, 2, 3)}
    assert others - {first}, "different seeds never changed the sample"


@pytest.mark.parametrize("as_list", [True, False])
def test_stop_cuts_the_answer(http: httpx.Client, greedy: str, as_list: bool) -> None:
    stop = next(greedy[i:i + 3] for i in range(4, len(greedy) - 3) if greedy[i:i + 3].strip() and "\ufffd" not in greedy[i:i + 3])
    answer = generate(http, temperature=0, num_predict=20, min_tokens=0, stop=[stop] if as_list else stop)
    assert answer["done_reason"] == "stop"
    assert answer["response"] == greedy[: greedy.index(stop)]


@pytest.mark.parametrize("option", [{"repeat_penalty": 1.8}, {"presence_penalty": 2.0}, {"frequency_penalty": 2.0}])
def test_penalties_change_the_greedy_answer(http: httpx.Client, option: dict) -> None:
    long_greedy = generate(http, temperature=0, num_predict=60, min_tokens=60)["response"]
    penalised = generate(http, temperature=0, num_predict=60, min_tokens=60, **option)["response"]
    assert penalised != long_greedy


def test_num_predict_and_ignore_eos_give_exact_lengths(http: httpx.Client) -> None:
    for n in (1, 7, 33):
        answer = generate(http, num_predict=n, ignore_eos=True)
        assert answer["eval_count"] == n and answer["done_reason"] == "length"


def test_num_ctx_bounds_prompt_and_answer(http: httpx.Client) -> None:
    base = generate(http, temperature=0, num_predict=1)
    prompt_tokens = base["prompt_eval_count"]
    # Room for 3 tokens after the prompt: the answer stops there whatever num_predict says.
    capped = generate(http, num_ctx=prompt_tokens + 3, num_predict=50, ignore_eos=True)
    assert capped["eval_count"] == 3 and capped["done_reason"] == "length"
    # A prompt longer than the context: 400 when the client forbids truncation...
    long_prompt = " ".join(["the sky is blue"] * 50)
    refused = http.post("/api/generate", json={"model": PRIMARY, "prompt": long_prompt, "stream": False,
                                               "truncate": False, "options": {"num_ctx": 64}})
    assert refused.status_code == 400 and "exceeds the context length" in refused.json()["error"]
    # ...otherwise the oldest tokens go and the answer fits.
    fitted = http.post("/api/generate", json={"model": PRIMARY, "prompt": long_prompt, "stream": False,
                                              "options": {"num_ctx": 64, "num_predict": 4, "ignore_eos": True}}).json()
    assert fitted["prompt_eval_count"] == 63 and fitted["eval_count"] == 1


def test_chat_truncation_drops_oldest_turns(http: httpx.Client) -> None:
    turns = [{"role": "system", "content": "Be brief."}]
    for i in range(12):
        turns += [{"role": "user", "content": f"question {i} about the sea"}, {"role": "assistant", "content": f"answer {i}"}]
    turns.append({"role": "user", "content": "last question"})
    body = {"model": PRIMARY, "messages": turns, "stream": False, "options": {"num_ctx": 120, "num_predict": 2, "ignore_eos": True}}
    answer = http.post("/api/chat", json=body).json()
    assert answer["prompt_eval_count"] < 120 and answer["eval_count"] == 2
    full = http.post("/api/chat", json={**body, "options": {"num_predict": 1}}).json()
    assert full["prompt_eval_count"] >= 120  # without num_ctx the whole history is used


def test_unknown_options_are_ignored(http: httpx.Client) -> None:
    answer = generate(http, num_predict=2, mirostat=2, tfs_z=1.0, numa=True, low_vram=False, num_gpu=99)
    assert answer["eval_count"] <= 2
