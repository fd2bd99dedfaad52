"""The one interception point per SDK (the client's ``request``): what it catches that patching
resource methods missed, what it changes on the wire (only what the README documents), and how a
caller's stop is recorded. Real SDK clients against the upstream simulator."""

from __future__ import annotations

import gc

import httpx2
import openai
import pytest
from opentelemetry.trace import StatusCode

from otel_llm import semconv as sc
from otel_llm.demo.upstream import STREAM_USAGE_HEADER, STREAM_USAGE_LAST_CHOICE_CHUNK, STREAM_USAGE_SEPARATE_CHUNK
from otel_llm.instrumentation.anthropic import AnthropicInstrumentor
from otel_llm.instrumentation.openai import OpenAIInstrumentor

MESSAGES = [{"role": "user", "content": "Say hello to the tests"}]
CLAUDE = "claude-sonnet-4-6"


def llm_spans(telemetry):
    return [s for s in telemetry.spans() if s.instrumentation_scope.name == "otel_llm"]


def only_span(telemetry):
    spans = llm_spans(telemetry)
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def last_request(upstream, path):
    return [r for r in upstream.request_log if r.path.endswith(path)][-1]


# --- what the interception point catches ----------------------------------------------------------


def test_generic_post_to_chat_completions_is_one_call(instrument, telemetry, client, upstream):
    """LiteLLM's way: ``client.post`` with a body, no resource method involved."""
    instrument()
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20}
    completion = client.post("/chat/completions", body=body, cast_to=openai.types.chat.ChatCompletion)
    span = only_span(telemetry)
    assert span.name == "chat gpt-4o-mini"
    assert span.attributes[sc.REQUEST_MAX_TOKENS] == 20
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == completion.usage.prompt_tokens
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == completion.usage.completion_tokens
    assert body == {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 20}  # the caller's dict untouched


def test_generic_post_returning_the_http_response(instrument, telemetry, client):
    instrument()
    response = client.post("/chat/completions", body={"model": "gpt-4o-mini", "messages": MESSAGES},
                           cast_to=httpx2.Response)
    answer = response.json()
    span = only_span(telemetry)
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == answer["usage"]["completion_tokens"]
    assert span.attributes[sc.RESPONSE_ID] == answer["id"]


def test_generic_post_streamed_with_dict_chunks(instrument, telemetry, client):
    instrument()
    stream = client.post("/chat/completions", body={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
                         cast_to=object, stream=True, stream_cls=openai.Stream[object])
    chunks = list(stream)
    assert chunks and all(isinstance(c, dict) for c in chunks)
    assert not any("usage" in c for c in chunks)  # the caller did not ask for usage: none shows
    span = only_span(telemetry)
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] > 0
    assert span.attributes[sc.RESPONSE_FINISH_REASONS] == ("stop",)


def test_text_completions_are_recorded(instrument, telemetry):
    answer = {"id": "cmpl-1", "object": "text_completion", "model": "gpt-3.5-turbo-instruct",
              "choices": [{"index": 0, "text": "hi", "finish_reason": "length"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, json=answer))
    client = openai.OpenAI(api_key="sk-test", base_url="http://llm.test/v1", max_retries=0,
                           http_client=httpx2.Client(transport=transport))
    instrument()
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi", max_tokens=1)
    assert completion.choices[0].text == "hi"
    span = only_span(telemetry)
    assert span.name == "text_completion gpt-3.5-turbo-instruct"
    assert span.attributes[sc.OPERATION_NAME] == sc.OP_TEXT_COMPLETION
    assert span.attributes[sc.RESPONSE_FINISH_REASONS] == ("length",)
    assert (span.attributes[sc.USAGE_INPUT_TOKENS], span.attributes[sc.USAGE_OUTPUT_TOKENS]) == (3, 1)


def test_a_changed_base_url_is_seen(instrument, telemetry, client, upstream):
    instrument()
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    client.base_url = upstream.base_url.replace("127.0.0.1", "localhost")
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    first, second = llm_spans(telemetry)
    assert (first.attributes[sc.SERVER_ADDRESS], second.attributes[sc.SERVER_ADDRESS]) == ("127.0.0.1", "localhost")
    assert first.attributes[sc.SERVER_PORT] == second.attributes[sc.SERVER_PORT] == upstream.port


def test_other_paths_pass_through_untouched(instrument, telemetry, client):
    instrument()
    models = client.models.list()
    assert list(models)
    assert not llm_spans(telemetry)


def test_anthropic_beta_messages_are_one_call_each(instrument_anthropic, telemetry, anthropic_client):
    """pydantic-ai always calls ``client.beta.messages``; langchain-anthropic does with ``betas=``."""
    instrument_anthropic()
    message = anthropic_client.beta.messages.create(
        model=CLAUDE, max_tokens=50, messages=MESSAGES, betas=["token-efficient-tools-2025-02-19"]
    )
    with anthropic_client.beta.messages.stream(model=CLAUDE, max_tokens=50, messages=MESSAGES) as stream:
        streamed = stream.get_final_message()
    plain, from_stream = llm_spans(telemetry)
    assert plain.attributes[sc.USAGE_OUTPUT_TOKENS] == message.usage.output_tokens
    assert plain.attributes[sc.RESPONSE_ID] == message.id
    assert from_stream.attributes[sc.USAGE_OUTPUT_TOKENS] == streamed.usage.output_tokens
    assert from_stream.attributes[sc.REQUEST_STREAM] is True
    assert telemetry.points(sc.METRIC_TOKEN_USAGE[0])


def test_count_tokens_is_not_an_inference(instrument_anthropic, telemetry, anthropic_client):
    instrument_anthropic()
    anthropic_client.messages.count_tokens(model=CLAUDE, messages=MESSAGES)
    assert not [s for s in llm_spans(telemetry)]


def test_methods_bound_before_instrument_are_recorded_and_uninstrument_stops(telemetry, client):
    """The SDKs cache ``with_raw_response`` (it captures ``create``) on first use."""
    raw_create = client.chat.completions.with_raw_response.create
    raw_create(model="gpt-4o-mini", messages=MESSAGES).parse()
    bound_create = client.chat.completions.create
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(recorder=telemetry.recorder())
    try:
        raw_create(model="gpt-4o-mini", messages=MESSAGES).parse()
        bound_create(model="gpt-4o-mini", messages=MESSAGES)
        assert len(llm_spans(telemetry)) == 2
    finally:
        instrumentor.uninstrument()
    raw_create(model="gpt-4o-mini", messages=MESSAGES).parse()
    bound_create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(llm_spans(telemetry)) == 2


def test_anthropic_methods_bound_before_instrument(telemetry, anthropic_client):
    raw_create = anthropic_client.messages.with_raw_response.create
    instrumentor = AnthropicInstrumentor()
    instrumentor.instrument(recorder=telemetry.recorder())
    try:
        raw_create(model=CLAUDE, max_tokens=20, messages=MESSAGES).parse()
        assert len(llm_spans(telemetry)) == 1
    finally:
        instrumentor.uninstrument()
    raw_create(model=CLAUDE, max_tokens=20, messages=MESSAGES).parse()
    assert len(llm_spans(telemetry)) == 1


# --- streams: the request and the stream the caller asked for -------------------------------------


def shape(chunks):
    """What a caller sees of each chunk, without what differs between two answers (ids, times, text)."""
    def strip(value, key=None):
        if key in ("id", "created", "content"):
            return type(value).__name__
        if isinstance(value, dict):
            return {k: strip(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return [(strip(c.to_dict()), strip(c.model_dump())) for c in chunks]


def _chunks(client, mode, **kwargs):
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={STREAM_USAGE_HEADER: mode}, **kwargs
    )
    return list(stream)


@pytest.mark.parametrize("mode", [STREAM_USAGE_SEPARATE_CHUNK, STREAM_USAGE_LAST_CHOICE_CHUNK])
def test_usage_asked_on_the_callers_behalf_never_shows(telemetry, client, upstream, mode):
    plain = _chunks(client, mode)
    plain_body = last_request(upstream, "/chat/completions").body
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(recorder=telemetry.recorder())
    try:
        seen = _chunks(client, mode)
    finally:
        instrumentor.uninstrument()
    sent = last_request(upstream, "/chat/completions").body
    assert sent == {**plain_body, "stream_options": {"include_usage": True}}  # the one documented change
    assert shape(seen) == shape(plain)
    assert all(c.usage is None for c in seen)
    span = only_span(telemetry)
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] > 0
    assert span.attributes[sc.USAGE_INPUT_TOKENS] > 0


@pytest.mark.parametrize("mode", [STREAM_USAGE_SEPARATE_CHUNK, STREAM_USAGE_LAST_CHOICE_CHUNK])
@pytest.mark.parametrize("stream_options", [{"include_usage": False}, {"include_usage": True}])
def test_an_explicit_include_usage_is_left_as_it_is(telemetry, client, upstream, mode, stream_options):
    plain = _chunks(client, mode, stream_options=stream_options)
    plain_body = last_request(upstream, "/chat/completions").body
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(recorder=telemetry.recorder())
    try:
        seen = _chunks(client, mode, stream_options=stream_options)
    finally:
        instrumentor.uninstrument()
    assert last_request(upstream, "/chat/completions").body == plain_body
    assert shape(seen) == shape(plain)
    span = only_span(telemetry)
    if stream_options["include_usage"]:
        usage = next(c.usage for c in seen if c.usage is not None)
        assert span.attributes[sc.USAGE_OUTPUT_TOKENS] == usage.completion_tokens
    else:  # the caller said no: no tokens, never estimated
        assert sc.USAGE_OUTPUT_TOKENS not in span.attributes


def test_other_stream_options_of_the_caller_are_kept(instrument, telemetry, client, upstream):
    instrument()
    _chunks(client, STREAM_USAGE_SEPARATE_CHUNK, stream_options={"include_obfuscation": False})
    sent = last_request(upstream, "/chat/completions").body
    assert sent["stream_options"] == {"include_obfuscation": False, "include_usage": True}


# --- a caller's stop is a cancellation, not an error ----------------------------------------------


def test_stream_left_by_break_is_cancelled_not_failed(instrument, telemetry, client):
    instrument()
    for _chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        break
    gc.collect()
    span = only_span(telemetry)
    assert span.attributes[sc.CALL_CANCELLED] is True
    assert span.status.status_code is StatusCode.UNSET
    assert sc.ERROR_TYPE not in span.attributes
    assert sc.USAGE_OUTPUT_TOKENS not in span.attributes


def test_stream_read_to_the_end_is_not_cancelled(instrument, telemetry, client):
    instrument()
    with client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as stream:
        list(stream)
    assert sc.CALL_CANCELLED not in only_span(telemetry).attributes


def test_abandoned_anthropic_stream_records_no_placeholder_tokens(instrument_anthropic, telemetry, anthropic_client):
    instrument_anthropic()
    stream = anthropic_client.messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES, stream=True)
    first = next(iter(stream))
    assert first.type == "message_start" and first.message.usage.output_tokens is not None
    stream.close()
    span = only_span(telemetry)
    assert span.attributes[sc.CALL_CANCELLED] is True
    assert sc.USAGE_OUTPUT_TOKENS not in span.attributes
    # message_start's input count is final and recorded; its output count is a placeholder and is not
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == first.message.usage.input_tokens
    token_types = {p.attributes[sc.TOKEN_TYPE] for p in telemetry.points(sc.METRIC_TOKEN_USAGE[0])}
    assert token_types == {sc.TOKEN_TYPE_INPUT}


def test_provider_errors_are_still_errors(instrument, telemetry, client):
    instrument()
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="error-500", messages=MESSAGES)
    span = only_span(telemetry)
    assert span.attributes[sc.ERROR_TYPE] == "InternalServerError"
    assert sc.CALL_CANCELLED not in span.attributes


def test_keyboard_interrupt_mid_stream_is_a_cancel(instrument, telemetry, client):
    instrument()
    with pytest.raises(KeyboardInterrupt):
        for _chunk in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            raise KeyboardInterrupt
    gc.collect()
    span = only_span(telemetry)
    assert span.attributes[sc.CALL_CANCELLED] is True
    assert sc.ERROR_TYPE not in span.attributes


def test_raw_stream_parsed_then_dropped_keeps_its_call(instrument, telemetry, client):
    """LiteLLM's way: ``parse()`` a raw streamed response, drop the raw response, then read."""
    instrument()
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    stream = raw.parse()
    del raw
    gc.collect()
    assert not llm_spans(telemetry)  # still open: the stream has not been read
    chunks = list(stream)
    span = only_span(telemetry)
    assert span.attributes[sc.RESPONSE_ID] == chunks[0].id
    assert span.attributes[sc.USAGE_OUTPUT_TOKENS] > 0
    assert sc.CALL_CANCELLED not in span.attributes


def test_responses_stream_left_early_keeps_its_id_and_model(instrument, telemetry, client):
    instrument()
    stream = client.responses.create(model="gpt-4o-mini", input="Say hello", stream=True)
    first = next(iter(stream))
    assert first.type == "response.created"
    stream.close()
    span = only_span(telemetry)
    assert span.attributes[sc.RESPONSE_ID] == first.response.id
    assert span.attributes[sc.RESPONSE_MODEL] == first.response.model
    assert span.attributes[sc.CALL_CANCELLED] is True
