"""The OpenAI instrumentor with the real ``openai`` SDK against the upstream simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import importlib

import openai
import pytest
from opentelemetry.trace import StatusCode

from otel_llm import semconv as sc
from otel_llm.content import CaptureMode
from otel_llm.demo.upstream import LatencyProfile, UpstreamSimulator
from otel_llm.instrumentation import openai as openai_instrumentation
from otel_llm.instrumentation._wrapping import request_patches, response_header_patches
from otel_llm.instrumentation.openai import OpenAIInstrumentor

from .conftest import API_KEY

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to the tests"}]


def chat_spans(telemetry):
    return [s for s in telemetry.spans() if s.attributes.get(sc.OPERATION_NAME) == "chat"]


def only_span(telemetry):
    spans = telemetry.spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def chunk_view(chunks):
    return [(len(c.choices), c.choices[0].delta.content if c.choices else None, c.usage is not None) for c in chunks]


# --- plain calls ----------------------------------------------------------------------------------


def test_chat_completion_span_and_metrics(instrument, telemetry, client, upstream):
    instrument()
    result = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, temperature=0.3, top_p=0.9, max_tokens=50, seed=42,
        stop=["\n\n"], n=2, frequency_penalty=0.1, presence_penalty=0.2,
    )
    assert type(result) is openai.types.chat.ChatCompletion
    span = only_span(telemetry)
    attrs = dict(span.attributes)
    assert span.name == "chat gpt-4o-mini"
    assert attrs[sc.PROVIDER_NAME] == "openai"
    assert attrs[sc.SERVER_ADDRESS] == "127.0.0.1"
    assert attrs[sc.SERVER_PORT] == upstream.port
    assert attrs[sc.REQUEST_TEMPERATURE] == 0.3
    assert attrs[sc.REQUEST_TOP_P] == 0.9
    assert attrs[sc.REQUEST_MAX_TOKENS] == 50
    assert attrs[sc.REQUEST_SEED] == 42
    assert attrs[sc.REQUEST_STOP_SEQUENCES] == ("\n\n",)
    assert attrs[sc.REQUEST_CHOICE_COUNT] == 2
    assert attrs[sc.REQUEST_FREQUENCY_PENALTY] == 0.1
    assert attrs[sc.REQUEST_PRESENCE_PENALTY] == 0.2
    assert attrs[sc.OPENAI_API_TYPE] == "chat_completions"
    assert attrs[sc.RESPONSE_MODEL] == result.model
    assert attrs[sc.RESPONSE_ID] == result.id
    assert attrs[sc.RESPONSE_FINISH_REASONS] == tuple(c.finish_reason for c in result.choices)
    assert attrs[sc.USAGE_INPUT_TOKENS] == result.usage.prompt_tokens
    assert attrs[sc.USAGE_OUTPUT_TOKENS] == result.usage.completion_tokens
    assert attrs[sc.OPENAI_RESPONSE_SYSTEM_FINGERPRINT] == result.system_fingerprint
    assert attrs[sc.COST_USD] > 0
    assert sc.REQUEST_STREAM not in attrs
    usage = {p.attributes[sc.TOKEN_TYPE]: p.sum for p in telemetry.points("gen_ai.client.token.usage")}
    assert usage == {"input": result.usage.prompt_tokens, "output": result.usage.completion_tokens}
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.count == 1 and sc.ERROR_TYPE not in duration.attributes


async def test_async_chat_completion(instrument, telemetry, async_client):
    instrument()
    result = await async_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    span = only_span(telemetry)
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == result.usage.completion_tokens
    assert span.attributes[sc.RESPONSE_MODEL] == result.model


def test_embeddings(instrument, telemetry, client):
    instrument()
    result = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], encoding_format="float")
    span = only_span(telemetry)
    assert span.name == "embeddings text-embedding-3-small"
    assert span.attributes[sc.OPERATION_NAME] == "embeddings"
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == result.usage.prompt_tokens
    assert span.attributes[sc.REQUEST_ENCODING_FORMATS] == ("float",)
    assert sc.USAGE_OUTPUT_TOKENS not in span.attributes
    assert {p.attributes[sc.TOKEN_TYPE] for p in telemetry.points("gen_ai.client.token.usage")} == {"input"}


async def test_async_embeddings(instrument, telemetry, async_client):
    instrument()
    result = await async_client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert only_span(telemetry).attributes[sc.USAGE_INPUT_TOKENS] == result.usage.prompt_tokens


def test_responses_api(instrument, telemetry, client):
    instrument()
    result = client.responses.create(model="gpt-4.1-mini", input="Hello", max_output_tokens=40, temperature=0.5)
    span = only_span(telemetry)
    assert span.name == "chat gpt-4.1-mini"
    assert span.attributes[sc.OPENAI_API_TYPE] == "responses"
    assert span.attributes[sc.REQUEST_MAX_TOKENS] == 40
    assert span.attributes[sc.RESPONSE_ID] == result.id
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == result.usage.input_tokens
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == result.usage.output_tokens
    assert span.attributes[sc.RESPONSE_FINISH_REASONS] == ("stop",)


def test_responses_stream(instrument, telemetry, client):
    instrument()
    events = list(client.responses.create(model="gpt-4.1-mini", input="Hello there", stream=True))
    completed = events[-1].response
    assert events[-1].type == "response.completed"
    span = only_span(telemetry)
    assert span.attributes[sc.REQUEST_STREAM] is True
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == completed.usage.output_tokens
    deltas = sum(1 for e in events if e.type.endswith(".delta"))
    (ttfc,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    (tpoc,) = telemetry.points("gen_ai.client.operation.time_per_output_chunk")
    assert ttfc.count == 1 and tpoc.count == deltas - 1


async def test_async_responses_stream(instrument, telemetry, async_client):
    instrument()
    stream = await async_client.responses.create(model="gpt-4.1-mini", input="Hi", stream=True)
    events = [event async for event in stream]
    assert only_span(telemetry).attributes[sc.USAGE_OUTPUT_TOKENS] == events[-1].response.usage.output_tokens


# --- streams --------------------------------------------------------------------------------------


def test_stream_usage_is_requested_and_its_chunk_hidden(instrument, telemetry, client, upstream):
    uninstrumented = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    instrument()
    upstream.reset_log()
    instrumented = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert chunk_view(instrumented) == chunk_view(uninstrumented)
    assert all(chunk.usage is None for chunk in instrumented)
    (request,) = [r for r in upstream.request_log if r.path.endswith("/chat/completions")]
    assert request.body["stream_options"] == {"include_usage": True}
    span = only_span(telemetry)
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] > 0
    assert span.attributes[sc.USAGE_INPUT_TOKENS] > 0
    assert span.attributes[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    content_chunks = len(instrumented)
    (ttfc,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    (tpoc,) = telemetry.points("gen_ai.client.operation.time_per_output_chunk")
    assert ttfc.count == 1 and tpoc.count == content_chunks - 1


def test_stream_usage_chunk_kept_when_the_caller_asked_for_it(instrument, telemetry, client):
    instrument()
    chunks = list(client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    ))
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert only_span(telemetry).attributes[sc.USAGE_OUTPUT_TOKENS] == chunks[-1].usage.completion_tokens


def test_stream_usage_injection_can_be_turned_off(instrument, telemetry, client, upstream, monkeypatch):
    monkeypatch.setenv(sc.ENV_STREAM_USAGE, "false")
    instrument()
    upstream.reset_log()
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    (request,) = [r for r in upstream.request_log if r.path.endswith("/chat/completions")]
    assert "stream_options" not in request.body
    span = only_span(telemetry)
    assert sc.USAGE_OUTPUT_TOKENS not in span.attributes  # never estimated
    assert telemetry.points("gen_ai.client.token.usage") == []


async def test_async_stream(instrument, telemetry, async_client):
    instrument()
    stream = await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    assert all(chunk.usage is None for chunk in chunks)
    assert only_span(telemetry).attributes[sc.USAGE_OUTPUT_TOKENS] > 0


def test_stream_context_manager_and_object_behaviour(instrument, telemetry, client):
    instrument()
    with client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as stream:
        assert isinstance(stream, openai.Stream)  # the proxy passes isinstance checks
        assert stream.response.status_code == 200
        first = next(stream)
        assert first.choices[0].delta.role == "assistant"
        rest = list(stream)
    assert rest and len(chat_spans(telemetry)) == 1


@pytest.mark.parametrize("how", ["close", "break_in_with", "garbage_collected"])
def test_stream_left_early_ends_the_call_once(instrument, telemetry, client, how):
    instrument()
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    if how == "close":
        next(stream)
        stream.close()
        stream.close()
    elif how == "break_in_with":
        with stream:
            for _chunk in stream:
                break
    else:
        next(stream)
        del stream
        gc.collect()
    span = only_span(telemetry)
    assert span.status.status_code is StatusCode.UNSET
    assert span.end_time is not None
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.count == 1


def test_stream_error_midway_is_reraised_and_recorded(instrument, telemetry, client):
    instrument()
    stream = client.chat.completions.create(model="error-midstream", messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(Exception) as raised:
        for chunk in stream:
            received.append(chunk)
    assert received, "the simulator sends some chunks before dropping the connection"
    span = only_span(telemetry)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == type(raised.value).__qualname__
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.attributes[sc.ERROR_TYPE] == type(raised.value).__qualname__


async def test_async_stream_cancelled(instrument, telemetry):
    instrument()
    slow = UpstreamSimulator(latency=LatencyProfile(first_chunk=0.0, per_chunk=0.5)).start()
    try:
        client = openai.AsyncOpenAI(base_url=slow.base_url, api_key=API_KEY, max_retries=0)
        started = asyncio.Event()

        async def consume():
            stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            async for _chunk in stream:
                started.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        slow.stop()
    span = only_span(telemetry)  # the consumer stopped: not a failure of the provider
    assert sc.ERROR_TYPE not in span.attributes
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes[sc.CALL_CANCELLED] is True
    (duration,) = telemetry.points(sc.METRIC_OPERATION_DURATION[0])
    assert sc.ERROR_TYPE not in duration.attributes


async def test_async_stream_closed_early(instrument, telemetry, async_client):
    instrument()
    stream = await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    async with stream:
        async for _chunk in stream:
            break
    await stream.close()
    assert only_span(telemetry).status.status_code is StatusCode.UNSET


# --- raw and streaming-response variants ----------------------------------------------------------


def test_with_raw_response(instrument, telemetry, client):
    instrument()
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers["x-ratelimit-remaining-requests"]
    completion = raw.parse()
    assert only_span(telemetry).attributes[sc.USAGE_OUTPUT_TOKENS] == completion.usage.completion_tokens


def test_with_raw_response_stream(instrument, telemetry, client):
    instrument()
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    stream = raw.parse()
    assert raw.parse() is stream
    chunks = list(stream)
    assert all(c.usage is None for c in chunks)
    assert only_span(telemetry).attributes[sc.USAGE_OUTPUT_TOKENS] > 0


def test_with_streaming_response(instrument, telemetry, client):
    instrument()
    with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MESSAGES) as response:
        completion = response.parse()
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as response:
        chunks = list(response.parse())
    with client.embeddings.with_streaming_response.create(model="text-embedding-3-small", input="x") as response:
        assert response.http_response.status_code == 200
        lines = list(response.iter_lines())  # never parsed: the call still ends when the response closes
    assert lines
    first, second, third = telemetry.spans()
    assert first.attributes[sc.USAGE_OUTPUT_TOKENS] == completion.usage.completion_tokens
    assert second.attributes[sc.USAGE_OUTPUT_TOKENS] > 0 and all(c.usage is None for c in chunks)
    assert third.attributes[sc.OPERATION_NAME] == "embeddings" and third.end_time is not None


async def test_async_with_streaming_response(instrument, telemetry, async_client):
    instrument()
    async with async_client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as response:
        stream = await response.parse()
        chunks = [chunk async for chunk in stream]
    assert chunks and only_span(telemetry).attributes[sc.USAGE_OUTPUT_TOKENS] > 0


# --- failures -------------------------------------------------------------------------------------


def _raise(client, model, **kwargs):
    try:
        client.chat.completions.create(model=model, messages=MESSAGES, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the test compares what the caller sees
        return exc
    raise AssertionError(f"{model} did not fail")


@pytest.mark.parametrize(
    ("model", "error", "kwargs"),
    [
        ("error-500", openai.InternalServerError, {}),
        ("error-429", openai.RateLimitError, {}),
        ("bad-model", openai.BadRequestError, {}),
        ("error-disconnect", openai.APIConnectionError, {}),
        ("error-timeout", openai.APITimeoutError, {"timeout": 0.3}),
    ],
)
def test_failures_reraise_the_sdk_error_untouched(instrument, telemetry, client, model, error, kwargs):
    baseline = _raise(client, model, **kwargs)
    instrument()
    instrumented = _raise(client, model, **kwargs)
    assert type(instrumented) is type(baseline) is error
    assert str(instrumented) == str(baseline)
    assert getattr(instrumented, "status_code", None) == getattr(baseline, "status_code", None)
    assert type(instrumented.__cause__) is type(baseline.__cause__)
    span = only_span(telemetry)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == error.__qualname__
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.attributes[sc.ERROR_TYPE] == error.__qualname__


def test_malformed_body(instrument, telemetry, client):
    baseline = _raise(client, "error-malformed")
    instrument()
    instrumented = _raise(client, "error-malformed")
    assert type(instrumented) is type(baseline)
    assert only_span(telemetry).attributes[sc.ERROR_TYPE] == type(baseline).__qualname__


def test_our_bugs_never_reach_the_caller(instrument, telemetry, client, monkeypatch):
    instrument()

    def broken(*args, **kwargs):
        raise KeyError("bug in otel-llm")

    monkeypatch.setattr(openai_instrumentation, "_record_completion", broken)
    result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert result.choices[0].message.content
    assert only_span(telemetry).end_time is not None

    monkeypatch.setattr(openai_instrumentation, "_plan", broken)
    assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).usage.total_tokens > 0
    chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert chunks


def test_no_api_key_in_any_span(instrument, telemetry, client, upstream):
    instrument(capture=CaptureMode.SPAN_ONLY)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    _raise(client, "error-500")
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    text = repr([(s.name, dict(s.attributes), s.status.description, s.events) for s in telemetry.spans()])
    assert API_KEY not in text
    assert "Bearer" not in text


# --- provider detection, content, instrument/uninstrument -----------------------------------------


def test_azure_client_is_recognised(instrument, telemetry, upstream):
    instrument()
    azure = openai.AzureOpenAI(
        azure_endpoint=f"http://127.0.0.1:{upstream.port}", api_key=API_KEY, api_version="2024-10-21", max_retries=0
    )
    with pytest.raises(openai.APIStatusError):
        azure.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert only_span(telemetry).attributes[sc.PROVIDER_NAME] == "azure.ai.openai"


def test_known_hosts_and_overrides():
    from otel_llm.instrumentation._common import provider_for

    assert provider_for("api.openai.com", 443, "openai", {}) == "openai"
    assert provider_for("myres.openai.azure.com", 443, "openai", {}) == "azure.ai.openai"
    assert provider_for("api.groq.com", 443, "openai", {}) == "groq"
    assert provider_for("vllm.internal", 8000, "openai", {}) == "openai"
    assert provider_for("vllm.internal", 8000, "openai", {"vllm.internal:8000": "vllm"}) == "vllm"


def test_provider_override_from_env(instrument, telemetry, client, monkeypatch):
    monkeypatch.setenv(sc.ENV_PROVIDERS, "127.0.0.1=local-vllm")
    instrument()
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert only_span(telemetry).attributes[sc.PROVIDER_NAME] == "local-vllm"


def test_content_is_captured_only_when_opted_in(instrument, telemetry, client):
    recorder = instrument(capture=CaptureMode.SPAN_ONLY)
    result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    OpenAIInstrumentor().uninstrument()
    instrument(capture=CaptureMode.NO_CONTENT)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with_content, without = telemetry.spans()
    assert '"Say hello to the tests"' in with_content.attributes[sc.INPUT_MESSAGES]
    assert '"Be brief."' in with_content.attributes[sc.SYSTEM_INSTRUCTIONS]
    assert result.choices[0].message.content in with_content.attributes[sc.OUTPUT_MESSAGES]
    assert not {sc.INPUT_MESSAGES, sc.OUTPUT_MESSAGES, sc.SYSTEM_INSTRUCTIONS} & set(without.attributes)
    assert recorder.capture is CaptureMode.SPAN_ONLY


def test_uninstrument_restores_the_sdk_exactly(telemetry, client):
    def current():
        found = {}
        for module, name in [(m, n) for m, n, _a in request_patches("openai")] + list(response_header_patches("openai")):
            owner, method = name.split(".")
            found[(module, name)] = getattr(importlib.import_module(module), owner).__dict__[method]
        return found

    before = current()
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(recorder=telemetry.recorder())
    patched = current()
    assert all(patched[key] is not before[key] for key in before)
    instrumentor.uninstrument()
    assert current() == before
    assert all(current()[key] is before[key] for key in before)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert telemetry.spans() == []


def test_http_client_spans_nest_under_the_llm_span(instrument, telemetry, client):
    from opentelemetry import trace

    recorder = instrument()
    seen = []
    original = client._client.send

    def send(*args, **kwargs):
        seen.append(trace.get_current_span().get_span_context().span_id)
        return original(*args, **kwargs)

    client._client.send = send
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert seen == [only_span(telemetry).context.span_id]
    assert recorder is not None


def test_structured_output_parse_and_stream_helper(instrument, telemetry, client):
    instrument()
    parsed = client.chat.completions.parse(
        model="gpt-4o-mini", messages=MESSAGES, response_format={"type": "json_object"}
    )
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
        final = stream.get_final_completion()
    first, second = telemetry.spans()
    assert first.attributes[sc.USAGE_OUTPUT_TOKENS] == parsed.usage.completion_tokens
    assert first.attributes[sc.OUTPUT_TYPE] == "json"
    assert second.attributes[sc.REQUEST_STREAM] is True
    assert second.attributes[sc.USAGE_OUTPUT_TOKENS] > 0
    assert final.usage is None  # the caller did not ask for usage: the hidden chunk stays hidden


def test_response_headers_are_kept_on_the_call(instrument, client):
    recorder = instrument()
    ended = []
    recorder.add_listener(ended.append)
    started = []
    recorder.add_listener(started.append, on_start=True)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    _raise(client, "error-429")
    assert started == ended and len(ended) == 3
    ok, streamed, limited = ended
    assert int(ok.response_headers["x-ratelimit-remaining-requests"]) > 0
    assert streamed.response_headers["x-ratelimit-limit-tokens"]
    assert limited.error_type == "RateLimitError"
    assert limited.response_headers["x-ratelimit-remaining-requests"] == "0"
