"""pydantic-ai ``Agent`` with its OpenAI (chat completions) and Anthropic models through otel-llm: each
scenario runs without and with instrumentation (see harness.py for what is compared).

pydantic-ai's Anthropic model always calls ``client.beta.messages.create(..., stream=True)``, even for a
plain ``run``; its OpenAI model asks for ``stream_options.include_usage`` itself when it streams."""

from __future__ import annotations

import asyncio
import contextlib

import anthropic
import openai
import pytest
from pydantic import BaseModel
from pydantic_ai import Agent, NativeOutput
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.openai import OpenAIProvider

from tests.libraries.harness import SERVER_MODES, Endpoint, covers

pytestmark = pytest.mark.slow

PROMPT = "Say hello there"
WEATHER = "What is the weather in Paris?"


class City(BaseModel):
    name: str
    country: str
    population: int


def get_weather(location: str) -> str:
    """The current weather at a location."""
    return f"Sunny and 21 degrees in {location}"


@contextlib.asynccontextmanager
async def openai_model(ep: Endpoint, name: str = "gpt-4o-mini"):
    async with openai.AsyncOpenAI(base_url=ep.openai_url, api_key=ep.openai_key, max_retries=0, timeout=10) as c:
        yield OpenAIChatModel(name, provider=OpenAIProvider(openai_client=c))


@contextlib.asynccontextmanager
async def anthropic_model(ep: Endpoint, name: str = "claude-haiku-4-5"):
    async with anthropic.AsyncAnthropic(base_url=ep.anthropic_url, api_key=ep.anthropic_key, max_retries=0,
                                        timeout=10) as c:
        yield AnthropicModel(name, provider=AnthropicProvider(anthropic_client=c))


def _result(result):
    return result.output, result.usage, result.all_messages()


def run_sync(model):
    def scenario(ep):
        loop = asyncio.new_event_loop()  # run_sync runs the agent in a loop of its own
        try:
            manager = model(ep)
            made = loop.run_until_complete(manager.__aenter__())
            try:
                return _result(Agent(made).run_sync(PROMPT))
            finally:
                loop.run_until_complete(manager.__aexit__(None, None, None))
        finally:
            loop.close()
    return scenario


def run_async(model):
    async def scenario(ep):
        async with model(ep) as m:
            return _result(await Agent(m).run(PROMPT))
    return scenario


# ``debounce_by=None``: one text delta per model chunk. pydantic-ai's default groups the chunks that
# arrive within 0.1 s, so what a delta holds would depend on timing, not on the stream.


def streamed(model):
    async def scenario(ep):
        async with model(ep) as m, Agent(m).run_stream(PROMPT) as result:
            deltas = [text async for text in result.stream_text(delta=True, debounce_by=None)]
        return deltas, result.usage, result.all_messages()
    return scenario


def abandoned(model):
    async def scenario(ep):
        async with model(ep) as m, Agent(m).run_stream(PROMPT) as result:
            async for text in result.stream_text(delta=True, debounce_by=None):
                return text  # leaves the stream after its first text
    return scenario


def tool_loop(model):
    async def scenario(ep):
        async with model(ep) as m:
            result = await Agent(m, tools=[get_weather]).run(WEATHER)
        assert result.usage.tool_calls == 1, "the simulated model calls the tool, then answers"
        return _result(result)
    return scenario


def structured(model, output_type=City):
    async def scenario(ep):
        async with model(ep) as m:
            result = await Agent(m, output_type=output_type).run("Name a big city")
        assert isinstance(result.output, City)
        return _result(result)
    return scenario


def failing(model, failure):
    """The server fails (the simulator's ``error-*`` models): the exception pydantic-ai raises."""
    async def scenario(ep):
        async with model(ep, failure) as m:
            return _result(await Agent(m).run(PROMPT))  # raises
    return scenario


SCENARIOS = {
    "run_sync": run_sync,
    "run": run_async,
    "run_stream": streamed,
    "tool_loop": tool_loop,
    "structured_tool_output": structured,
}


@pytest.mark.parametrize("server", SERVER_MODES)
@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_openai_model(harness, scenario, server):
    harness.compare(scenario(openai_model), server)


@pytest.mark.parametrize("server", SERVER_MODES)
def test_openai_model_native_structured_output(harness, server):
    harness.compare(structured(openai_model, NativeOutput(City)), server)


# Leaving ``run_stream`` early: pydantic-ai cancels its in-flight pull of the model's stream and closes
# it, unless it had already read it to the end; which one depends on timing (under load it differs), so
# the span's counts must be either the final ones or those of a stream left early.


@pytest.mark.parametrize("server", SERVER_MODES)
def test_openai_model_stream_abandoned(harness, server):
    harness.compare(abandoned(openai_model), server, consumed=None)


@covers(3, "pydantic-ai calls client.beta.messages.create, which was not instrumented (no span)")
@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_anthropic_model(harness, scenario):
    harness.compare(scenario(anthropic_model))


@covers(3, "pydantic-ai calls client.beta.messages.create, which was not instrumented (no span)")
def test_anthropic_model_stream_abandoned(harness):
    harness.compare(abandoned(anthropic_model), consumed=None)


@pytest.mark.parametrize("failure", ["error-429", "error-500"])
def test_openai_model_server_failure(harness, failure):
    harness.compare(failing(openai_model, failure))


@covers(3, "pydantic-ai calls client.beta.messages.create, which was not instrumented (no span)")
@pytest.mark.parametrize("failure", ["error-529", "error-500"])
def test_anthropic_model_server_failure(harness, failure):
    harness.compare(failing(anthropic_model, failure))
