"""Tool calling, through the real clients: the model's template renders the tools, vLLM's
tool-call grammar makes the random model call one (`tool_choice`, vllama's extension of Ollama's
API), and vLLM's hermes parser finds the call, which comes back in Ollama's shape (arguments as
an object) or OpenAI's (arguments as a JSON string)."""

from __future__ import annotations

import json

import ollama
import openai
import pytest

from tests.e2e.conftest import PRIMARY, SECOND, VISION

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        # A bounded string: the random model would otherwise write the city's name until it runs
        # out of tokens (the schema is enforced: vllama makes every call follow its tool's schema).
        "parameters": {
            "type": "object", "properties": {"city": {"type": "string", "maxLength": 12}}, "required": ["city"],
        },
    },
}
CLOCK = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET", "PST"]}},
            "required": ["zone"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
OPTIONS = {"temperature": 0, "num_predict": 120}


@pytest.fixture(scope="module")
def client(base_url: str) -> ollama.Client:
    return ollama.Client(host=base_url)


def _valid(call: ollama.Message.ToolCall) -> None:
    """A call of one of the tools, its arguments an object that follows that tool's schema."""
    arguments = call.function.arguments
    assert isinstance(arguments, dict)
    if call.function.name == "get_weather":
        assert set(arguments) == {"city"} and isinstance(arguments["city"], str) and len(arguments["city"]) <= 12
    else:
        assert call.function.name == "get_time" and arguments["zone"] in ("UTC", "CET", "PST")


@pytest.mark.parametrize("model", [PRIMARY, SECOND])
def test_required_tool_call_whole(client: ollama.Client, model: str) -> None:
    answer = client.chat(model=model, messages=ASK, tools=[WEATHER, CLOCK], options={**OPTIONS, "tool_choice": "required"})
    assert answer.message.content == "" and answer.message.tool_calls
    for call in answer.message.tool_calls:  # the random model may go on calling: each whole call
        _valid(call)
    parts = list(client.chat(model=model, messages=ASK, tools=[WEATHER, CLOCK], stream=True,
                             options={**OPTIONS, "tool_choice": "required"}))
    streamed = [c for p in parts for c in p.message.tool_calls or ()]
    assert [c.function for c in streamed] == [c.function for c in answer.message.tool_calls]


def test_named_tool_call_streamed_whole_in_one_chunk(client: ollama.Client) -> None:
    options = {**OPTIONS, "tool_choice": "get_time"}
    parts = list(client.chat(model=PRIMARY, messages=ASK, tools=[WEATHER, CLOCK], options=options, stream=True))
    with_calls = [p for p in parts if p.message.tool_calls]
    assert with_calls and not any(p.done for p in with_calls)  # a call comes whole, before the end
    call = with_calls[0].message.tool_calls[0]
    assert call.function.name == "get_time"
    _valid(call)
    assert parts[-1].done and parts[-1].eval_count and not parts[-1].message.tool_calls
    whole = client.chat(model=PRIMARY, messages=ASK, tools=[WEATHER, CLOCK], options=options)
    assert whole.message.tool_calls[0].function == call.function  # same greedy call, parsed whole


def test_tool_result_goes_back_to_the_model(client: ollama.Client) -> None:
    first = client.chat(model=PRIMARY, messages=ASK, tools=[CLOCK], options={**OPTIONS, "tool_choice": "required"})
    assert first.message.tool_calls, first
    call = first.message.tool_calls[0]
    conversation = [
        *ASK,
        {"role": "assistant", "content": "", "tool_calls": [call]},  # the call, arguments as an object
        {"role": "tool", "tool_name": "get_time", "content": '{"time": "12:00"}'},
    ]
    second = client.chat(model=PRIMARY, messages=conversation, tools=[CLOCK], options={"temperature": 0, "num_predict": 5})
    assert second.done and second.message.role == "assistant"
    # The call and the result went through the template: the prompt grew by both.
    assert second.prompt_eval_count > first.prompt_eval_count + len(json.dumps(call.function.arguments)) // 4


def test_auto_lets_the_model_answer_in_text(client: ollama.Client) -> None:
    answer = client.chat(model=PRIMARY, messages=ASK, tools=[WEATHER], options={"temperature": 0, "num_predict": 8})
    # The random model never opens a call by itself: the tools are offered, the answer is text.
    assert answer.message.content and not answer.message.tool_calls
    assert answer.prompt_eval_count > client.chat(model=PRIMARY, messages=ASK, options={"num_predict": 1}).prompt_eval_count


def test_tools_on_a_model_without_tool_calling(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model=VISION, messages=ASK, tools=[WEATHER])
    assert refused.value.status_code == 400 and refused.value.error == f"{VISION} does not support tools"
    assert "tools" in client.show(PRIMARY).capabilities and "tools" not in client.show(VISION).capabilities


def test_openai_tool_calls(base_url: str) -> None:
    api = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused")
    answer = api.chat.completions.create(
        model=PRIMARY, messages=ASK, tools=[WEATHER, CLOCK], tool_choice="required", temperature=0, max_tokens=120,
        parallel_tool_calls=False,  # one call, then the grammar ends the answer
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id
    assert call.function.name in ("get_weather", "get_time") and isinstance(json.loads(call.function.arguments), dict)

    stream = api.chat.completions.create(
        model=PRIMARY, messages=ASK, tools=[WEATHER], temperature=0, max_tokens=120, stream=True,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    name, arguments = "", ""
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
            name += delta.function.name or ""
            arguments += delta.function.arguments or ""
    assert name == "get_weather" and set(json.loads(arguments)) == {"city"}


def test_a_conversation_longer_than_the_context_is_fitted_with_its_tools(client: ollama.Client) -> None:
    """Open WebUI sends dozens of tools with every chat; vLLM's chat layer refuses a prompt over
    the context with its own message. Ollama drops the oldest turns instead, and so do we; when
    the tools alone do not fit, Ollama's words, never vLLM's."""
    history = [{"role": ("user", "assistant")[i % 2], "content": f"turn {i}: " + "words " * 40} for i in range(59)]
    history.append({"role": "user", "content": "What is the weather in Paris?"})
    answer = client.chat(model=PRIMARY, messages=history, tools=[WEATHER, CLOCK], options={"num_predict": 4})
    assert answer.done and 0 < answer.prompt_eval_count < 2048

    huge = {"type": "function", "function": {**WEATHER["function"], "description": "weather " * 3000}}
    with pytest.raises(ollama.ResponseError) as refused:
        client.chat(model=PRIMARY, messages=ASK, tools=[huge], options={"num_predict": 4})
    assert refused.value.status_code == 400
    assert refused.value.error.startswith("the input length exceeds the context length"), refused.value.error
