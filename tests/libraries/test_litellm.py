"""LiteLLM ``completion`` / ``acompletion`` with ``openai/...`` models pointed at the simulator, through
otel-llm: each scenario runs without and with instrumentation (see harness.py for what is compared).

LiteLLM's OpenAI provider builds an ``openai`` client but calls ``client.post("/chat/completions", ...)``
itself (with_raw_response), not ``chat.completions.create``."""

from __future__ import annotations

import json

import litellm
import pytest
from pydantic import BaseModel

from tests.libraries.harness import SERVER_MODES, Endpoint, covers

pytestmark = [
    pytest.mark.slow,
    covers(4, "LiteLLM calls the openai client's generic post() for /chat/completions, which was not "
              "instrumented (no span)"),
]
# Its streams: LiteLLM calls parse() on the raw response and drops it, keeping only the stream (the
# span used to end there, before the first chunk).
STREAM_ENDED_EARLY = covers(4, "LiteLLM drops the raw response after parse(): the stream's proxy owns the call")

PROMPT = [{"role": "user", "content": "Say hello there"}]
WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather at a location.",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}


class City(BaseModel):
    name: str
    country: str
    population: int


def _options(ep: Endpoint, model: str = "gpt-4o-mini") -> dict:
    return {"model": f"openai/{model}", "api_base": ep.openai_url, "api_key": ep.openai_key, "num_retries": 0,
            "timeout": 10}


def plain(ep):
    return litellm.completion(messages=PROMPT, **_options(ep))


def streamed(ep):
    return list(litellm.completion(messages=PROMPT, stream=True, **_options(ep)))


def streamed_usage_asked(ep):
    return list(litellm.completion(messages=PROMPT, stream=True, stream_options={"include_usage": True},
                                   **_options(ep)))


def streamed_usage_refused(ep):
    return list(litellm.completion(messages=PROMPT, stream=True, stream_options={"include_usage": False},
                                   **_options(ep)))


def abandoned(ep):
    for chunk in litellm.completion(messages=PROMPT, stream=True, **_options(ep)):
        return chunk


async def async_calls(ep):
    response = await litellm.acompletion(messages=PROMPT, **_options(ep))
    chunks = [chunk async for chunk in await litellm.acompletion(messages=PROMPT, stream=True, **_options(ep))]
    return response, chunks


def tool_loop(ep):
    messages = list(WEATHER)
    first = litellm.completion(messages=messages, tools=[WEATHER_TOOL], **_options(ep))
    message = first.choices[0].message
    assert message.tool_calls, "the simulated model calls the tool"
    messages.append(message.model_dump())
    for call in message.tool_calls:
        where = json.loads(call.function.arguments)["location"]
        messages.append({"role": "tool", "tool_call_id": call.id, "content": f"Sunny in {where}"})
    final = litellm.completion(messages=messages, tools=[WEATHER_TOOL], **_options(ep))
    return first, final


def structured(ep):
    response = litellm.completion(messages=[{"role": "user", "content": "Name a big city"}], response_format=City,
                                  **_options(ep))
    city = City.model_validate_json(response.choices[0].message.content)
    return response, city


def failing(ep):
    """The server fails (the simulator's ``error-*`` models): LiteLLM's exceptions, plain and streamed."""
    raised = []
    for failure, stream in (("error-429", False), ("error-500", True)):
        try:
            list(litellm.completion(messages=PROMPT, stream=True, **_options(ep, failure))) if stream else \
                litellm.completion(messages=PROMPT, **_options(ep, failure))
        except Exception as exc:
            raised.append(exc)
    assert len(raised) == 2
    return raised


SCENARIOS = [  # (name, scenario, streams read to their end, marks)
    ("completion", plain, True, ()),
    ("stream", streamed, True, STREAM_ENDED_EARLY),
    ("stream_include_usage", streamed_usage_asked, True, STREAM_ENDED_EARLY),
    ("stream_include_usage_false", streamed_usage_refused, True, STREAM_ENDED_EARLY),
    ("stream_abandoned", abandoned, False, ()),
    ("acompletion", async_calls, True, STREAM_ENDED_EARLY),
    ("tool_loop", tool_loop, True, ()),
    ("structured_output", structured, True, ()),
    ("server_failure", failing, True, ()),
]


@pytest.mark.parametrize("server", SERVER_MODES)
@pytest.mark.parametrize("scenario, consumed", [pytest.param(run, consumed, marks=marks, id=name)
                                                for name, run, consumed, marks in SCENARIOS])
def test_litellm(harness, scenario, consumed, server):
    harness.compare(scenario, server, consumed=consumed, warm_up=True)
