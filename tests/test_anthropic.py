"""The Anthropic instrumentor with the real ``anthropic`` SDK against the upstream simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import importlib
import re

import anthropic
import pytest
from opentelemetry.trace import StatusCode

from otel_llm import semconv as sc
from otel_llm.content import CaptureMode
from otel_llm.demo.upstream import LatencyProfile, UpstreamSimulator
from otel_llm.instrumentation._wrapping import request_patches, response_header_patches
from otel_llm.instrumentation.anthropic import AnthropicInstrumentor

from .conftest import ANTHROPIC_KEY

MODEL = "claude-sonnet-4-6"
MESSAGES = [{"role": "user", "content": "Say hello to the tests"}]
LONG_SYSTEM = [{"type": "text", "text": "policy " * 1500, "cache_control": {"type": "ephemeral"}}]


def llm_spans(telemetry):
    return [s for s in telemetry.spans() if s.attributes.get(sc.PROVIDER_NAME)]


def only_span(telemetry):
    spans = llm_spans(telemetry)
    assert len(spans) == 1, [(s.name, s.instrumentation_scope.name) for s in spans]
    return spans[0]


def test_message_span_metrics_and_cache_token_rule(instrument_anthropic, telemetry, anthropic_client):
    instrument_anthropic()
    kwargs = dict(model=MODEL, max_tokens=200, system=LONG_SYSTEM, messages=MESSAGES,
                  stop_sequences=["END"], extra_body={"temperature": 0.4, "top_k": 20, "top_p": 0.9})
    first = anthropic_client.messages.create(**kwargs)
    second = anthropic_client.messages.create(**kwargs)
    assert first.usage.cache_creation_input_tokens > 0 and second.usage.cache_read_input_tokens > 0
    one, two = llm_spans(telemetry)
    assert one.name == "chat claude-sonnet-4-6"
    assert one.instrumentation_scope.name == "otel_llm"
    attrs = dict(two.attributes)
    assert attrs[sc.PROVIDER_NAME] == "anthropic"
    assert attrs[sc.REQUEST_TEMPERATURE] == 0.4 and attrs[sc.REQUEST_TOP_K] == 20 and attrs[sc.REQUEST_TOP_P] == 0.9
    assert attrs[sc.REQUEST_MAX_TOKENS] == 200
    assert attrs[sc.REQUEST_STOP_SEQUENCES] == ("END",)
    assert attrs[sc.RESPONSE_MODEL] == second.model
    assert attrs[sc.RESPONSE_ID] == second.id
    assert attrs[sc.RESPONSE_FINISH_REASONS] == (second.stop_reason,)
    usage = second.usage
    assert attrs[sc.USAGE_INPUT_TOKENS] == (
        usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    )
    assert attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == usage.cache_read_input_tokens
    assert attrs[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == usage.cache_creation_input_tokens
    assert attrs[sc.USAGE_OUTPUT_TOKENS] == usage.output_tokens
    # claude-sonnet-4-6: $3 input, $0.30 cache read, $3.75 cache write, $15 output per MTok
    expected = (usage.input_tokens * 3 + usage.cache_read_input_tokens * 0.3
                + usage.cache_creation_input_tokens * 3.75 + usage.output_tokens * 15) / 1e6
    assert attrs[sc.COST_USD] == pytest.approx(expected)
    first_usage = first.usage
    assert dict(one.attributes)[sc.COST_USD] == pytest.approx(
        (first_usage.input_tokens * 3 + first_usage.cache_creation_input_tokens * 3.75 + first_usage.output_tokens * 15) / 1e6
    )
    tokens = {(p.attributes[sc.TOKEN_TYPE]): p for p in telemetry.points("gen_ai.client.token.usage")}
    assert tokens["input"].sum == dict(one.attributes)[sc.USAGE_INPUT_TOKENS] + attrs[sc.USAGE_INPUT_TOKENS]


async def test_async_message(instrument_anthropic, telemetry, async_anthropic_client):
    instrument_anthropic()
    message = await async_anthropic_client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    assert only_span(telemetry).attributes[sc.USAGE_OUTPUT_TOKENS] == message.usage.output_tokens


def test_raw_event_stream(instrument_anthropic, telemetry, anthropic_client):
    baseline = [e.type for e in anthropic_client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)]
    telemetry.span_exporter.clear()
    instrument_anthropic()
    events = list(anthropic_client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True))
    assert [e.type for e in events] == baseline
    span = only_span(telemetry)
    delta = next(e for e in events if e.type == "message_delta")
    assert span.attributes[sc.REQUEST_STREAM] is True
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == delta.usage.output_tokens
    assert span.attributes[sc.RESPONSE_FINISH_REASONS] == (delta.delta.stop_reason,)
    deltas = sum(1 for e in events if e.type == "content_block_delta")
    (ttfc,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    (tpoc,) = telemetry.points("gen_ai.client.operation.time_per_output_chunk")
    assert ttfc.count == 1 and tpoc.count == deltas - 1


def test_stream_helper_text_stream_and_final_message(instrument_anthropic, telemetry, anthropic_client):
    instrument_anthropic()
    with anthropic_client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == final.content[0].text
    span = only_span(telemetry)
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == final.usage.output_tokens
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == final.usage.input_tokens
    assert span.attributes[sc.RESPONSE_MODEL] == final.model


async def test_async_stream_helper(instrument_anthropic, telemetry, async_anthropic_client):
    instrument_anthropic()
    async with async_anthropic_client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        pieces = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert "".join(pieces) == final.content[0].text
    assert only_span(telemetry).attributes[sc.USAGE_OUTPUT_TOKENS] == final.usage.output_tokens


def test_stream_helper_never_entered_records_nothing(instrument_anthropic, telemetry, anthropic_client):
    instrument_anthropic()
    anthropic_client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES)
    gc.collect()
    assert llm_spans(telemetry) == []


@pytest.mark.parametrize("how", ["close", "break_in_with", "garbage_collected", "helper_break"])
def test_stream_left_early_ends_the_call_once(instrument_anthropic, telemetry, anthropic_client, how):
    instrument_anthropic()
    if how == "helper_break":
        with anthropic_client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
            for _text in stream.text_stream:
                break
    else:
        stream = anthropic_client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
        if how == "close":
            next(iter(stream))
            stream.close()
            stream.close()
        elif how == "break_in_with":
            with stream:
                for _event in stream:
                    break
        else:
            next(iter(stream))
            del stream
            gc.collect()
    span = only_span(telemetry)
    assert span.status.status_code is StatusCode.UNSET and span.end_time is not None
    assert telemetry.points("gen_ai.client.operation.duration")[0].count == 1


@pytest.mark.parametrize("model", ["error-midstream", "error-overloaded-midstream"])
def test_stream_error_midway(instrument_anthropic, telemetry, anthropic_client, model):
    instrument_anthropic()
    seen = []
    with pytest.raises(Exception) as raised:
        for event in anthropic_client.messages.create(model=model, max_tokens=100, messages=MESSAGES, stream=True):
            seen.append(event)
    assert seen
    span = only_span(telemetry)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == type(raised.value).__qualname__


async def test_async_stream_cancelled(instrument_anthropic, telemetry):
    instrument_anthropic()
    slow = UpstreamSimulator(latency=LatencyProfile(per_chunk=0.5)).start()
    try:
        client = anthropic.AsyncAnthropic(base_url=slow.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0)
        started = asyncio.Event()

        async def consume():
            async with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
                async for _text in stream.text_stream:
                    started.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        slow.stop()
    span = only_span(telemetry)  # the consumer stopped: cancelled, not failed, and no token count yet
    assert sc.ERROR_TYPE not in span.attributes
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes[sc.CALL_CANCELLED] is True
    assert sc.USAGE_OUTPUT_TOKENS not in span.attributes  # message_start's count is a placeholder
    assert span.attributes[sc.USAGE_INPUT_TOKENS] > 0  # its input count is final
    token_types = {p.attributes[sc.TOKEN_TYPE] for p in telemetry.points(sc.METRIC_TOKEN_USAGE[0])}
    assert token_types == {sc.TOKEN_TYPE_INPUT}


def test_raw_and_streaming_responses(instrument_anthropic, telemetry, anthropic_client):
    instrument_anthropic()
    raw = anthropic_client.messages.with_raw_response.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    assert raw.headers["anthropic-ratelimit-requests-remaining"]
    message = raw.parse()
    with anthropic_client.messages.with_streaming_response.create(
        model=MODEL, max_tokens=100, messages=MESSAGES, stream=True
    ) as response:
        events = list(response.parse())
    first, second = llm_spans(telemetry)
    assert first.attributes[sc.USAGE_OUTPUT_TOKENS] == message.usage.output_tokens
    assert second.attributes[sc.USAGE_OUTPUT_TOKENS] == next(e for e in events if e.type == "message_delta").usage.output_tokens


def _raise(client, model, **kwargs):
    try:
        client.messages.create(model=model, max_tokens=50, messages=MESSAGES, **kwargs)
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError(f"{model} did not fail")


@pytest.mark.parametrize(
    ("model", "error", "kwargs"),
    [
        ("error-500", anthropic.InternalServerError, {}),
        ("error-529", anthropic.APIStatusError, {}),
        ("error-429", anthropic.RateLimitError, {}),
        ("bad-model", anthropic.NotFoundError, {}),
        ("error-disconnect", anthropic.APIConnectionError, {}),
        ("error-timeout", anthropic.APITimeoutError, {"timeout": 0.3}),
    ],
)
def test_failures_reraise_the_sdk_error_untouched(instrument_anthropic, telemetry, anthropic_client, model, error, kwargs):
    baseline = _raise(anthropic_client, model, **kwargs)
    telemetry.span_exporter.clear()
    instrument_anthropic()
    instrumented = _raise(anthropic_client, model, **kwargs)
    assert type(instrumented) is type(baseline)
    assert isinstance(instrumented, error)
    assert re.sub(r"req_\w+", "req_", str(instrumented)) == re.sub(r"req_\w+", "req_", str(baseline))
    assert getattr(instrumented, "status_code", None) == getattr(baseline, "status_code", None)
    span = only_span(telemetry)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == type(baseline).__qualname__


def test_one_genai_span_per_call_and_our_trace_context_propagates(instrument_anthropic, telemetry, anthropic_client, upstream):
    """The SDK traces its calls itself; with otel-llm on, one call is still one GenAI span."""
    anthropic_client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    (sdk_span,) = llm_spans(telemetry)
    assert sdk_span.instrumentation_scope.name == "com.anthropic.sdk.python"  # the SDK does trace on its own
    telemetry.span_exporter.clear()

    instrument_anthropic()
    upstream.reset_log()
    anthropic_client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    with anthropic_client.messages.stream(model=MODEL, max_tokens=50, messages=MESSAGES) as stream:
        stream.until_done()
    anthropic_client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    spans = llm_spans(telemetry)
    ours = [s for s in spans if s.instrumentation_scope.name == "otel_llm"]
    theirs = [s for s in spans if s.instrumentation_scope.name == "com.anthropic.sdk.python"]
    assert len(ours) == 2
    assert [s.name for s in theirs] == ["anthropic.messages.count_tokens"]  # not instrumented by us: theirs stays
    sent = [r.headers.get("traceparent")[:52] for r in upstream.request_log if r.path == "/v1/messages"]
    assert sent == [f"00-{s.context.trace_id:032x}-{s.context.span_id:016x}" for s in ours]

    AnthropicInstrumentor().uninstrument()
    telemetry.span_exporter.clear()
    anthropic_client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    assert [s.instrumentation_scope.name for s in llm_spans(telemetry)] == ["com.anthropic.sdk.python"]


def test_content_capture_opt_in(instrument_anthropic, telemetry, anthropic_client):
    instrument_anthropic(capture=CaptureMode.SPAN_ONLY)
    message = anthropic_client.messages.create(
        model=MODEL, max_tokens=100, system="You are terse.", messages=MESSAGES,
    )
    AnthropicInstrumentor().uninstrument()
    instrument_anthropic()
    anthropic_client.messages.create(model=MODEL, max_tokens=100, system="You are terse.", messages=MESSAGES)
    with_content, without = llm_spans(telemetry)
    assert "Say hello to the tests" in with_content.attributes[sc.INPUT_MESSAGES]
    assert "You are terse." in with_content.attributes[sc.SYSTEM_INSTRUCTIONS]
    assert message.content[0].text in with_content.attributes[sc.OUTPUT_MESSAGES]
    assert not {sc.INPUT_MESSAGES, sc.OUTPUT_MESSAGES, sc.SYSTEM_INSTRUCTIONS} & set(without.attributes)


def test_uninstrument_restores_the_sdk_exactly(telemetry):
    from anthropic import _base_client

    def current():
        found = {name: getattr(importlib.import_module(module), name.split(".")[0]).__dict__[name.split(".")[1]]
                 for module, name in [(m, n) for m, n, _ in request_patches("anthropic")]
                 + list(response_header_patches("anthropic"))}
        found["_tracer"] = _base_client.BaseClient.__dict__["_tracer"]
        return found

    before = current()
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(recorder=telemetry.recorder())
    assert all(current()[key] is not before[key] for key in before)
    instrumentor.uninstrument()
    assert all(current()[key] is before[key] for key in before)


def test_response_headers_are_kept_on_the_call(instrument_anthropic, anthropic_client):
    recorder = instrument_anthropic()
    ended = []
    recorder.add_listener(ended.append)
    anthropic_client.messages.create(model=MODEL, max_tokens=50, messages=MESSAGES)
    with anthropic_client.messages.stream(model=MODEL, max_tokens=50, messages=MESSAGES) as stream:
        stream.until_done()
    _raise(anthropic_client, "error-429")
    plain, streamed, limited = ended
    assert plain.response_headers["anthropic-ratelimit-requests-remaining"]
    assert streamed.response_headers["anthropic-ratelimit-tokens-remaining"]
    assert limited.response_headers["anthropic-ratelimit-requests-remaining"] == "0"
