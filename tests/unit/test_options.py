"""Ollama options -> sampling settings and context limits."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from vllama.engine.params import ContextLimits, SamplingSettings, StructuredOutput
from vllama.errors import InvalidRequest
from vllama.ollama_api.schema import Options
from vllama.translate.options import (
    OLLAMA_DEFAULTS,
    context_limits,
    logprobs_wanted,
    model_defaults,
    options_to_sampling,
    structured_output,
)

DEFAULTS = model_defaults({}, {})


def sampling(defaults: dict[str, Any] | None = None, **options: Any) -> SamplingSettings:
    return options_to_sampling(Options.model_validate(options) if options else None, DEFAULTS if defaults is None else defaults)


# --- model_defaults ---------------------------------------------------------------------------


def test_model_defaults_empty_is_ollama() -> None:
    assert model_defaults({}, {}) == dict(OLLAMA_DEFAULTS)


def test_model_defaults_does_not_mutate_ollama_defaults() -> None:
    before = dict(OLLAMA_DEFAULTS)
    model_defaults({"temperature": 0.1}, {"top_k": 1})
    assert dict(OLLAMA_DEFAULTS) == before


def test_model_defaults_generation_config_uses_vllm_names() -> None:
    merged = model_defaults(
        {
            "temperature": 0.7,
            "top_p": 0.8,
            "top_k": 20,
            "repetition_penalty": 1.05,
            "max_new_tokens": 256,
            "do_sample": True,
            "eos_token_id": [1, 2],
            "min_p": None,
        },
        {},
    )
    assert merged["temperature"] == 0.7
    assert merged["top_p"] == 0.8
    assert merged["top_k"] == 20
    assert merged["repeat_penalty"] == 1.05
    assert merged["num_predict"] == 256
    assert merged["min_p"] == OLLAMA_DEFAULTS["min_p"]  # None in generation_config is ignored
    for vllm_only in ("repetition_penalty", "max_new_tokens", "do_sample", "eos_token_id"):
        assert vllm_only not in merged


def test_model_defaults_parameters_win() -> None:
    merged = model_defaults(
        {"temperature": 0.7, "repetition_penalty": 1.05},
        {"temperature": 0.1, "stop": ["<|im_end|>"], "num_ctx": 4096, "seed": None},
    )
    assert merged["temperature"] == 0.1
    assert merged["repeat_penalty"] == 1.05
    assert merged["stop"] == ["<|im_end|>"]
    assert merged["num_ctx"] == 4096
    assert merged["seed"] == OLLAMA_DEFAULTS["seed"]  # None in parameters is ignored


# --- options_to_sampling ----------------------------------------------------------------------


def test_sampling_ollama_defaults() -> None:
    assert options_to_sampling(None, DEFAULTS) == SamplingSettings(
        temperature=0.8,
        top_p=0.9,
        top_k=40,
        min_p=0.0,
        repetition_penalty=1.0,
        presence_penalty=0.0,
        frequency_penalty=0.0,
        seed=None,
        stop=(),
        max_tokens=None,
        min_tokens=0,
        ignore_eos=False,
    )


def test_request_beats_defaults() -> None:
    defaults = model_defaults({"temperature": 0.7, "top_k": 20}, {"top_p": 0.5})
    settings = sampling(defaults, temperature=0.2, top_p=0.95)
    assert settings.temperature == 0.2
    assert settings.top_p == 0.95
    assert settings.top_k == 20  # from generation_config, not overridden


def test_unset_request_options_keep_defaults() -> None:
    defaults = model_defaults({}, {"temperature": 0.3})
    assert sampling(defaults, temperature=None, seed=None).temperature == 0.3


def test_unknown_options_do_not_reach_sampling() -> None:
    settings = options_to_sampling(Options.model_validate({"mirostat": 2, "temperature": 0.5}), DEFAULTS)
    assert settings.temperature == 0.5


@pytest.mark.parametrize(
    ("num_predict", "max_tokens"),
    [(-1, None), (-2, None), (None, None), (0, 1), (1, 1), (5, 5), (128, 128)],
)
def test_num_predict(num_predict: int | None, max_tokens: int | None) -> None:
    assert sampling(num_predict=num_predict).max_tokens == max_tokens


def test_num_predict_missing_from_defaults() -> None:
    defaults = {k: v for k, v in DEFAULTS.items() if k != "num_predict"}
    assert options_to_sampling(None, defaults).max_tokens is None


def test_num_predict_from_generation_config() -> None:
    assert options_to_sampling(None, model_defaults({"max_new_tokens": 64}, {})).max_tokens == 64


@pytest.mark.parametrize(("seed", "expected"), [(-1, None), (-5, None), (0, 0), (42, 42)])
def test_seed(seed: int, expected: int | None) -> None:
    assert sampling(seed=seed).seed == expected


@pytest.mark.parametrize(("top_k", "expected"), [(0, 0), (-1, 0), (-40, 0), (1, 1), (40, 40)])
def test_top_k(top_k: int, expected: int) -> None:
    assert sampling(top_k=top_k).top_k == expected


@pytest.mark.parametrize(
    ("stop", "expected"),
    [
        (["a", "", "b"], ("a", "b")),
        ("END", ("END",)),
        ([], ()),
        ([""], ()),
        (["\n\n", "User:"], ("\n\n", "User:")),
    ],
)
def test_stop(stop: Any, expected: tuple[str, ...]) -> None:
    settings = sampling(stop=stop)
    assert settings.stop == expected
    assert isinstance(settings.stop, tuple)


def test_stop_from_parameters_list() -> None:
    defaults = model_defaults({}, {"stop": ["<|im_end|>", "<|endoftext|>"]})
    assert options_to_sampling(None, defaults).stop == ("<|im_end|>", "<|endoftext|>")


def test_stop_from_parameters_single_string() -> None:
    # A Modelfile's `PARAMETER stop "<|im_end|>"` (or `stop: "<|im_end|>"` in a serve config) is
    # one stop sequence, as a request's `"stop": "..."` is; it must not become one per character.
    defaults = model_defaults({}, {"stop": "<|im_end|>"})
    assert options_to_sampling(None, defaults).stop == ("<|im_end|>",)


def test_ignore_eos_and_min_tokens() -> None:
    settings = sampling(ignore_eos=True, min_tokens=3, num_predict=10)
    assert settings.ignore_eos is True
    assert settings.min_tokens == 3
    assert settings.max_tokens == 10
    assert sampling(min_tokens=7).min_tokens == 7  # num_predict -1: no upper bound to compare to
    assert sampling(min_tokens=-3).min_tokens == 0
    assert sampling(min_tokens=5, num_predict=5).min_tokens == 5


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"min_p": 1.1}, "min_p"),
        ({"presence_penalty": 3}, "presence_penalty"),
        ({"frequency_penalty": -2.5}, "frequency_penalty"),
        ({"repeat_penalty": 0}, "repeat_penalty"),
        ({"repeat_penalty": -1}, "repeat_penalty"),
        ({"min_tokens": 5, "num_predict": 3}, "min_tokens"),
    ],
)
def test_invalid_values(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        sampling(**options)
    assert needle in info.value.message
    assert info.value.status_code == 400


def test_out_of_range_message_names_the_range() -> None:
    with pytest.raises(InvalidRequest, match=r"temperature must be between 0 and 2, got 2\.5"):
        sampling(temperature=2.5)


def test_invalid_value_in_defaults_rejected_too() -> None:
    with pytest.raises(InvalidRequest, match="temperature"):
        options_to_sampling(None, model_defaults({}, {"temperature": 9}))


@pytest.mark.parametrize(
    "options",
    [{"temperature": 0}, {"temperature": 2}, {"top_p": 1}, {"min_p": 0}, {"presence_penalty": -2}, {"repeat_penalty": 1.5}],
)
def test_boundary_values_accepted(options: dict[str, Any]) -> None:
    settings = sampling(**options)
    assert isinstance(settings, SamplingSettings)


def test_types_are_vllm_ready() -> None:
    settings = sampling(temperature=1, top_p=1, repeat_penalty=1, num_predict=3.9, seed=7)
    assert type(settings.temperature) is float and type(settings.top_p) is float
    assert type(settings.repetition_penalty) is float
    assert settings.max_tokens == 3 and settings.seed == 7


# --- context_limits -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("num_ctx", "defaults", "expected"),
    [
        (None, {}, 4096),
        (1024, {}, 1024),
        (4096, {}, 4096),
        (100_000, {}, 4096),
        (None, {"num_ctx": 2048}, 2048),
        (1000, {"num_ctx": 2048}, 1000),
        (None, {"num_ctx": 99_999}, 4096),
    ],
)
def test_context_limits(num_ctx: int | None, defaults: dict[str, Any], expected: int) -> None:
    options = Options(num_ctx=num_ctx) if num_ctx is not None else None
    limits = context_limits(options, defaults, max_model_len=4096, truncate=None)
    assert limits == ContextLimits(num_ctx=expected, truncate=True)


def test_context_limits_cap_logs_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="vllama.translate.options"):
        context_limits(Options(num_ctx=8192), {}, max_model_len=4096, truncate=None)
    assert any("8192" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("num_ctx", [0, -1, -4096])
def test_context_limits_non_positive_rejected(num_ctx: int) -> None:
    with pytest.raises(InvalidRequest, match="num_ctx"):
        context_limits(Options(num_ctx=num_ctx), {}, max_model_len=4096, truncate=None)


@pytest.mark.parametrize("num_ctx", [0, -1])
def test_context_limits_non_positive_default_rejected(num_ctx: int) -> None:
    with pytest.raises(InvalidRequest, match="num_ctx"):
        context_limits(None, {"num_ctx": num_ctx}, max_model_len=4096, truncate=None)


@pytest.mark.parametrize(("truncate", "expected"), [(None, True), (True, True), (False, False)])
def test_context_limits_truncate(truncate: bool | None, expected: bool) -> None:
    assert context_limits(None, {}, max_model_len=128, truncate=truncate).truncate is expected


# --- format and logprobs -------------------------------------------------------------------------


SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


@pytest.mark.parametrize(
    ("format", "expected"),
    [(None, None), ("", None), ("json", StructuredOutput()), (SCHEMA, StructuredOutput(json_schema=SCHEMA))],
)
def test_structured_output(format: Any, expected: StructuredOutput | None) -> None:
    assert structured_output(format) == expected


@pytest.mark.parametrize("format", ["xml", "JSON", 3, ["json"]])
def test_structured_output_refuses_other_formats(format: Any) -> None:
    with pytest.raises(InvalidRequest, match='expected "json" or a valid JSON Schema object'):
        structured_output(format)


@pytest.mark.parametrize(
    ("logprobs", "top", "expected"),
    [(None, None, None), (False, None, None), (False, 0, None), (True, None, 0), (True, 0, 0), (True, 5, 5),
     (None, 3, 3), (True, 20, 20)],
)
def test_logprobs_wanted(logprobs: bool | None, top: int | None, expected: int | None) -> None:
    assert logprobs_wanted(logprobs, top) == expected


@pytest.mark.parametrize("top", [-1, 21])
def test_top_logprobs_range(top: int) -> None:
    with pytest.raises(InvalidRequest, match="^top_logprobs must be between 0 and 20$"):
        logprobs_wanted(True, top)
