"""OpenAI Agents SDK (``openai-agents``) ``Runner`` through otel-llm, with its Chat Completions model (both
server behaviours for streamed usage) and its Responses model: each scenario runs without and with
instrumentation (see harness.py for what is compared). The SDK's own tracing (exported to OpenAI by
default) is off.

For a client that is not OpenAI's, the Chat Completions model sends ``stream_options`` only when
``ModelSettings.include_usage`` is set; it reads ``usage`` from whichever chunk carries it."""

from __future__ import annotations

import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from pydantic import BaseModel

from tests.libraries.harness import SERVER_MODES, Endpoint, covers

pytestmark = pytest.mark.slow

set_tracing_disabled(True)

PROMPT = "Say hello there"
WEATHER = "What is the weather in Paris?"


class City(BaseModel):
    name: str
    country: str
    population: int


@function_tool
def get_weather(location: str) -> str:
    """The current weather at a location."""
    return f"Sunny and 21 degrees in {location}"


def _client(ep: Endpoint) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=ep.openai_url, api_key=ep.openai_key, max_retries=0, timeout=10)


def chat_model(client: openai.AsyncOpenAI, name: str = "gpt-4o-mini") -> OpenAIChatCompletionsModel:
    return OpenAIChatCompletionsModel(name, client)


def responses_model(client: openai.AsyncOpenAI) -> OpenAIResponsesModel:
    return OpenAIResponsesModel("gpt-4o-mini", client)


def _result(result) -> dict:
    """What a run gave its caller, without the agent objects (tools hold functions)."""
    return {
        "final_output": result.final_output,
        "items": [(type(item).__name__, item.raw_item) for item in result.new_items],
        "responses": [(r.output, r.usage, r.response_id) for r in result.raw_responses],
        "usage": result.context_wrapper.usage,
    }


def _event(event) -> tuple:
    if event.type == "raw_response_event":
        return event.type, event.data
    if event.type == "run_item_stream_event":
        return event.type, event.name, event.item.raw_item
    return event.type, event.new_agent.name


def agent(model, client: openai.AsyncOpenAI, **kwargs) -> Agent:
    settings = kwargs.pop("model_settings", ModelSettings())
    return Agent(name="assistant", instructions="Be brief.", model=model(client), model_settings=settings, **kwargs)


def run(model, **kwargs):
    async def scenario(ep):
        async with _client(ep) as client:
            return _result(await Runner.run(agent(model, client, **kwargs), PROMPT))
    return scenario


def tool_loop(model):
    async def scenario(ep):
        async with _client(ep) as client:
            result = await Runner.run(agent(model, client, tools=[get_weather]), WEATHER)
        assert len(result.raw_responses) == 2, "the simulated model calls the tool, then answers"
        return _result(result)
    return scenario


def structured(model):
    async def scenario(ep):
        async with _client(ep) as client:
            result = await Runner.run(agent(model, client, output_type=City), "Name a big city")
        assert isinstance(result.final_output, City)
        return _result(result)
    return scenario


def streamed(model, **settings):
    async def scenario(ep):
        async with _client(ep) as client:
            result = Runner.run_streamed(agent(model, client, model_settings=ModelSettings(**settings)), PROMPT)
            events = [_event(event) async for event in result.stream_events()]
        return events, _result(result)
    return scenario


def failing(failure):
    """The server fails (the simulator's ``error-*`` models): what ``Runner.run`` and ``run_streamed`` raise."""
    async def scenario(ep):
        raised = []
        async with _client(ep) as client:
            failing_agent = agent(lambda c: chat_model(c, failure), client)
            try:
                await Runner.run(failing_agent, PROMPT)
            except Exception as exc:
                raised.append(exc)
            try:
                async for _ in Runner.run_streamed(failing_agent, PROMPT).stream_events():
                    pass
            except Exception as exc:
                raised.append(exc)
        assert len(raised) == 2
        return raised
    return scenario


def cancelled(model, **settings):
    """``RunResultStreaming.cancel()`` after the first event of the model's stream."""
    async def scenario(ep):
        async with _client(ep) as client:
            result = Runner.run_streamed(agent(model, client, model_settings=ModelSettings(**settings)), PROMPT)
            seen = []
            async for event in result.stream_events():
                seen.append(_event(event))
                if event.type == "raw_response_event":
                    result.cancel()
                    break
        return seen, result.is_complete, result.final_output
    return scenario


LEAK = covers(1, "usage asked for on the caller's behalf reached the caller when the server puts it on the "
                "last chunk with choices (the run's usage accounting changed)")
EXPLICIT_CHOICE = covers(1, "an explicit ModelSettings(include_usage=False) was rewritten to include_usage=True on the wire")
CANCEL = covers(6, "RunResultStreaming.cancel() ended the span with ERROR / error.type=CancelledError")


# -- Chat Completions model ---------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVER_MODES)
@pytest.mark.parametrize("scenario", [run, tool_loop, structured], ids=["run", "tool_loop", "structured_output"])
def test_chat_completions_model(harness, scenario, server):
    harness.compare(scenario(chat_model), server)


@pytest.mark.parametrize("server", [pytest.param("separate-chunk"), pytest.param("last-choice-chunk", marks=LEAK)])
def test_chat_completions_model_run_streamed(harness, server):
    harness.compare(streamed(chat_model), server)


@pytest.mark.parametrize("server", SERVER_MODES)
def test_chat_completions_model_run_streamed_include_usage(harness, server):
    """``include_usage=True``: the SDK asks for the usage itself; nothing to add or hide."""
    harness.compare(streamed(chat_model, include_usage=True), server)


@EXPLICIT_CHOICE
@pytest.mark.parametrize("server", SERVER_MODES)
def test_chat_completions_model_include_usage_false_is_respected(harness, server):
    harness.compare(streamed(chat_model, include_usage=False), server)


@pytest.mark.parametrize("failure", ["error-429", "error-midstream"])
def test_chat_completions_model_server_failure(harness, failure):
    harness.compare(failing(failure))


@CANCEL
@pytest.mark.parametrize("server", SERVER_MODES)
def test_chat_completions_model_run_streamed_cancelled(paced_harness, server):
    paced_harness.compare(cancelled(chat_model), server, consumed=False, cancelled=True)


# -- Responses model ----------------------------------------------------------------------------


def test_responses_model_run(harness):
    harness.compare(run(responses_model))


def test_responses_model_run_streamed(harness):
    harness.compare(streamed(responses_model))


@CANCEL
def test_responses_model_run_streamed_cancelled(paced_harness):
    paced_harness.compare(cancelled(responses_model), consumed=False, cancelled=True)
