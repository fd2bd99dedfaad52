"""LangChain (langchain-openai ``ChatOpenAI``, langchain-anthropic ``ChatAnthropic``) through otel-llm:
each scenario runs without and with instrumentation (see harness.py for what is compared)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel

from otel_llm import semconv as sc
from otel_llm.instrumentation.anthropic import AnthropicInstrumentor
from otel_llm.instrumentation.openai import OpenAIInstrumentor
from tests.conftest import Telemetry
from tests.libraries.harness import SERVER_MODES, Endpoint, covers

pytestmark = pytest.mark.slow

PROMPT = "Say hello there"
WEATHER = "What is the weather in Paris?"


class City(BaseModel):
    name: str
    country: str
    population: int


@tool
def get_weather(location: str) -> str:
    """The current weather at a location."""
    return f"Sunny and 21 degrees in {location}"


def openai_model(ep: Endpoint, **kwargs) -> ChatOpenAI:
    kwargs.setdefault("model", "gpt-4o-mini")
    return ChatOpenAI(base_url=ep.openai_url, api_key=ep.openai_key, max_retries=0, timeout=10, **kwargs)


def anthropic_model(ep: Endpoint, **kwargs) -> ChatAnthropic:
    kwargs.setdefault("model", "claude-haiku-4-5")
    return ChatAnthropic(base_url=ep.anthropic_url, api_key=ep.anthropic_key, max_retries=0, timeout=10,
                         max_tokens=200, **kwargs)


def plain(model):
    return lambda ep: model(ep).invoke(PROMPT)


def streamed(model):
    return lambda ep: list(model(ep).stream(PROMPT))


def abandoned(model):
    def scenario(ep):
        for chunk in model(ep).stream(PROMPT):
            return chunk  # leaves the stream after its first chunk
    return scenario


def async_calls(model):
    async def scenario(ep):
        m = model(ep)
        message = await m.ainvoke(PROMPT)
        chunks = [chunk async for chunk in m.astream(PROMPT)]
        both = await asyncio.gather(m.ainvoke(PROMPT), m.ainvoke(WEATHER))
        return message, chunks, both
    return scenario


def tool_loop(model):
    def scenario(ep):
        m = model(ep).bind_tools([get_weather])
        messages = [HumanMessage(WEATHER)]
        first = m.invoke(messages)
        assert first.tool_calls, "the simulated model calls the tool"
        messages.append(first)
        for call in first.tool_calls:
            messages.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
        final = m.invoke(messages)
        streamed_final = list(m.stream(messages))
        return messages, final, streamed_final
    return scenario


def structured(model, **options):
    def scenario(ep):
        city = model(ep).with_structured_output(City, **options).invoke("Name a big city")
        assert isinstance(city, City)
        return city
    return scenario


def structured_streamed(model):
    """``with_structured_output(...).stream()``: ChatOpenAI goes through ``beta.chat.completions.stream``."""
    def scenario(ep):
        parts = list(model(ep).with_structured_output(City, method="json_schema").stream("Name a big city"))
        assert parts and isinstance(parts[-1], City)
        return parts
    return scenario


def failing(model, failure):
    """The server fails (the simulator's ``error-*`` models): the library's exception, plain and streamed."""
    def scenario(ep):
        m = model(ep, model=failure)
        raised = []
        for call in (lambda: m.invoke(PROMPT), lambda: list(m.stream(PROMPT))):
            try:
                call()
            except Exception as exc:
                raised.append(exc)
        assert len(raised) == 2
        return raised
    return scenario


def cancelled_task(model):
    """The consumer's task is cancelled while it reads a stream (after the first chunk)."""
    async def scenario(ep):
        first: list = []
        seen = asyncio.Event()

        async def consume():
            async for chunk in model(ep).astream(PROMPT):
                first.append(chunk)
                seen.set()

        task = asyncio.create_task(consume())
        await seen.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return first[:1], task.cancelled()
    return scenario


LEAK = covers(1, "usage asked for on the caller's behalf reached the caller when the server puts it on the "
                "last chunk with choices (usage_metadata appeared)")
NO_BETA = covers(3, "client.beta.messages was not instrumented (no span)")
PLACEHOLDER = covers(2, "an abandoned Anthropic stream recorded message_start's placeholder as output tokens")
CANCEL = covers(6, "a cancelled stream ended its span with ERROR / error.type=CancelledError")


def _server_marks(last_choice_mark):
    return [pytest.param("separate-chunk"), pytest.param("last-choice-chunk", marks=last_choice_mark)]


# -- ChatOpenAI ---------------------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVER_MODES)
def test_chat_openai_invoke(harness, server):
    harness.compare(plain(openai_model), server)


@pytest.mark.parametrize("server", _server_marks(LEAK))
def test_chat_openai_stream(harness, server):
    harness.compare(streamed(openai_model), server)


@pytest.mark.parametrize("server", SERVER_MODES)
def test_chat_openai_stream_abandoned(harness, server):
    harness.compare(abandoned(openai_model), server, consumed=False)


@pytest.mark.parametrize("server", _server_marks(LEAK))
def test_chat_openai_async(harness, server):
    harness.compare(async_calls(openai_model), server)


@pytest.mark.parametrize("server", _server_marks(LEAK))
def test_chat_openai_tool_loop(harness, server):
    harness.compare(tool_loop(openai_model), server)


@pytest.mark.parametrize("server", SERVER_MODES)
@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_chat_openai_structured_output(harness, server, method):
    harness.compare(structured(openai_model, method=method), server)


@pytest.mark.parametrize("server", SERVER_MODES)
def test_chat_openai_structured_output_streamed(harness, server):
    harness.compare(structured_streamed(openai_model), server)


@pytest.mark.parametrize("server", SERVER_MODES)
def test_chat_openai_stream_usage_asked_by_the_library(harness, server):
    """``stream_usage=True``: LangChain asks for the usage itself; nothing to add or hide."""
    harness.compare(streamed(lambda ep: openai_model(ep, stream_usage=True)), server)


@pytest.mark.parametrize("server", SERVER_MODES)
@covers(1, "an explicit stream_options.include_usage=False was rewritten to True on the wire")
def test_chat_openai_explicit_include_usage_false_is_respected(harness, server):
    model = lambda ep: openai_model(ep, model_kwargs={"stream_options": {"include_usage": False}})  # noqa: E731
    harness.compare(streamed(model), server)


@pytest.mark.parametrize("failure", ["error-429", "error-500", "error-midstream"])
def test_chat_openai_server_failure(harness, failure):
    harness.compare(failing(openai_model, failure))


@CANCEL
def test_chat_openai_async_task_cancelled_mid_stream(paced_harness):
    paced_harness.compare(cancelled_task(openai_model), consumed=False, cancelled=True)


# -- ChatAnthropic ------------------------------------------------------------------------------


def test_chat_anthropic_invoke(harness):
    harness.compare(plain(anthropic_model))


def test_chat_anthropic_stream(harness):
    harness.compare(streamed(anthropic_model))


@PLACEHOLDER
def test_chat_anthropic_stream_abandoned(harness):
    harness.compare(abandoned(anthropic_model), consumed=False)


def test_chat_anthropic_async(harness):
    harness.compare(async_calls(anthropic_model))


def test_chat_anthropic_tool_loop(harness):
    harness.compare(tool_loop(anthropic_model))


def test_chat_anthropic_structured_output(harness):
    harness.compare(structured(anthropic_model))


@pytest.mark.parametrize("failure", ["error-529", pytest.param("error-overloaded-midstream", marks=covers(
    2, "a stream broken off by an error event recorded message_start's placeholder as output tokens"))])
def test_chat_anthropic_server_failure(harness, failure):
    harness.compare(failing(anthropic_model, failure))


@NO_BETA
@pytest.mark.parametrize("scenario", [plain, streamed], ids=["invoke", "stream"])
def test_chat_anthropic_with_betas(harness, scenario):
    harness.compare(scenario(lambda ep: anthropic_model(ep, betas=["context-1m-2025-08-07"])))


@covers(6, "a cancelled stream ended its span with ERROR / error.type=CancelledError (and point 2: the "
           "placeholder output count of message_start was recorded)")
def test_chat_anthropic_async_task_cancelled_mid_stream(paced_harness):
    paced_harness.compare(cancelled_task(anthropic_model), consumed=False, cancelled=True)


# -- instrumenting models that already exist -----------------------------------------------------


@contextlib.contextmanager
def instrumented():
    telemetry = Telemetry()
    recorder = telemetry.recorder()
    instrumentors = (OpenAIInstrumentor(), AnthropicInstrumentor())
    for instrumentor in instrumentors:
        instrumentor.instrument(recorder=recorder)
    try:
        yield telemetry
    finally:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()


def _llm_spans(telemetry):
    return [s for s in telemetry.spans() if s.instrumentation_scope.name == sc.INSTRUMENTATION_SCOPE]


MODELS = {"ChatOpenAI": openai_model, "ChatAnthropic": anthropic_model}


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
@covers(5, "a client used before instrument() kept the create method its with_raw_response captured")
def test_instrument_after_the_model_was_used(wire, make):
    """A module-level model called once at start-up, then ``instrument()`` (e.g. by ``configure()``)."""
    proxy = wire.proxies["separate-chunk"]
    model = make(wire.endpoint())
    model.invoke(PROMPT)
    with instrumented() as telemetry:
        proxy.reset()
        model.invoke(PROMPT)
        list(model.stream(PROMPT))
        calls = proxy.exchanges()
    spans = _llm_spans(telemetry)
    assert len(calls) == 2 and len(spans) == 2
    assert {s.attributes.get(sc.RESPONSE_ID) for s in spans} == {e.response_id() for e in calls}


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
@covers(5, "a client used while instrumented still produced spans after uninstrument()")
def test_uninstrument_stops_spans_of_a_model_in_use(wire, make):
    model = make(wire.endpoint())
    with instrumented() as telemetry:
        model.invoke(PROMPT)
        assert len(_llm_spans(telemetry)) == 1
    model.invoke(PROMPT)
    list(model.stream(PROMPT))
    assert len(_llm_spans(telemetry)) == 1, "spans after uninstrument()"
