"""The Bedrock instrumentor with the real boto3 client against a loopback server in Bedrock's wire format
(JSON for Converse and InvokeModel, the AWS event-stream framing for the two streams)."""

from __future__ import annotations

import gc
import json

import boto3
import botocore.client
import pytest
from botocore.config import Config
from botocore.eventstream import EventStream
from botocore.response import StreamingBody
from botocore.stub import Stubber
from genai_prices import Usage, calc_price
from opentelemetry.trace import SpanKind, StatusCode

from otel_llm import semconv as sc
from otel_llm.content import CaptureMode
from otel_llm.instrumentation.bedrock import BedrockInstrumentor
from tests.support import bedrock_server as wire
from tests.support.bedrock_server import BedrockServer

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
NOVA = "amazon.nova-lite-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": "Say hello to the tests"}]}]
SYSTEM = [{"text": "You are terse."}]


@pytest.fixture(scope="module")
def server():
    with BedrockServer() as started:
        yield started


def make_client(server):
    return boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=server.url,
        aws_access_key_id="test", aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}),
    )


@pytest.fixture(scope="module")
def client(server):
    return make_client(server)  # made once: a boto3 client takes a good part of a second to build


@pytest.fixture
def instrument(telemetry):
    instrumentor = BedrockInstrumentor()

    def start(capture=CaptureMode.NO_CONTENT):
        instrumentor.instrument(recorder=telemetry.recorder(capture=capture))

    yield start
    instrumentor.uninstrument()


def only_span(telemetry):
    spans = telemetry.spans()
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def without_metadata(response):
    """A response dict minus what differs between two identical requests (date, request id)."""
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def price(model, input_tokens, output_tokens, cache_read=0, cache_write=0):
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                  cache_read_tokens=cache_read, cache_write_tokens=cache_write)
    return float(calc_price(usage, model_ref=model, provider_id="aws").total_price)


# --- Converse ----------------------------------------------------------------------------------------


def test_converse_span_metrics_and_cost(instrument, telemetry, client, server):
    kwargs = dict(modelId=CLAUDE, messages=MESSAGES, system=SYSTEM,
                  inferenceConfig={"maxTokens": 200, "temperature": 0.4, "topP": 0.9, "stopSequences": ["END"]})
    baseline = client.converse(**kwargs)
    instrument()
    response = client.converse(**kwargs)
    assert without_metadata(response) == without_metadata(baseline)

    span = only_span(telemetry)
    assert span.name == f"chat {CLAUDE}" and span.kind is SpanKind.CLIENT
    assert span.instrumentation_scope.name == "otel_llm"
    attrs = dict(span.attributes)
    assert attrs[sc.OPERATION_NAME] == sc.OP_CHAT and attrs[sc.PROVIDER_NAME] == "aws.bedrock"
    assert attrs[sc.REQUEST_MODEL] == CLAUDE
    assert (attrs[sc.SERVER_ADDRESS], attrs[sc.SERVER_PORT]) == ("127.0.0.1", server.port)
    assert attrs[sc.REQUEST_MAX_TOKENS] == 200 and attrs[sc.REQUEST_TEMPERATURE] == 0.4 and attrs[sc.REQUEST_TOP_P] == 0.9
    assert attrs[sc.REQUEST_STOP_SEQUENCES] == ("END",)
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert attrs[sc.USAGE_INPUT_TOKENS] == response["usage"]["inputTokens"]
    assert attrs[sc.USAGE_OUTPUT_TOKENS] == response["usage"]["outputTokens"]
    assert sc.REQUEST_STREAM not in attrs and "gen_ai.system" not in attrs
    expected_cost = price(CLAUDE, wire.INPUT_TOKENS, wire.OUTPUT_TOKENS)
    assert attrs[sc.COST_USD] == pytest.approx(expected_cost)

    metrics = telemetry.collect()
    tokens = {p.attributes[sc.TOKEN_TYPE]: p for p in metrics["gen_ai.client.token.usage"]}
    assert (tokens["input"].sum, tokens["output"].sum) == (wire.INPUT_TOKENS, wire.OUTPUT_TOKENS)
    assert tokens["input"].attributes[sc.PROVIDER_NAME] == "aws.bedrock"
    (duration,) = metrics["gen_ai.client.operation.duration"]
    assert duration.count == 1 and 0 < duration.sum < 5 and sc.ERROR_TYPE not in duration.attributes
    (cost,) = metrics["llm.client.cost"]
    assert cost.value == pytest.approx(expected_cost)
    assert "gen_ai.client.operation.time_to_first_chunk" not in metrics


def test_converse_cached_input_is_added_to_the_input_count(instrument, telemetry, client):
    """Bedrock's inputTokens leaves the cache out; the conventions' input count has it."""
    model = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
    instrument()
    response = client.converse(modelId=model, messages=MESSAGES, system=[*SYSTEM, {"cachePoint": {"type": "default"}}])
    usage = response["usage"]
    assert usage["cacheReadInputTokens"] == wire.CACHE_READ_TOKENS
    attrs = only_span(telemetry).attributes
    total_input = usage["inputTokens"] + usage["cacheReadInputTokens"] + usage["cacheWriteInputTokens"]
    assert attrs[sc.USAGE_INPUT_TOKENS] == total_input
    assert total_input + usage["outputTokens"] == usage["totalTokens"]  # Bedrock's own total agrees
    assert attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == wire.CACHE_READ_TOKENS
    assert attrs[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == wire.CACHE_WRITE_TOKENS
    assert attrs[sc.COST_USD] == pytest.approx(
        price(model, total_input, usage["outputTokens"], wire.CACHE_READ_TOKENS, wire.CACHE_WRITE_TOKENS))


def test_regional_endpoint_is_the_server_address(instrument, telemetry):
    """Without endpoint_url the client talks to the region's endpoint (stubbed here: no network)."""
    client = boto3.client("bedrock-runtime", region_name="eu-west-3", aws_access_key_id="test",
                          aws_secret_access_key="test")
    instrument()
    with Stubber(client) as stubber:
        stubber.add_response("converse", wire.converse_body(cached=False))
        client.converse(modelId=NOVA, messages=MESSAGES)
    attrs = only_span(telemetry).attributes
    assert (attrs[sc.SERVER_ADDRESS], attrs[sc.SERVER_PORT]) == ("bedrock-runtime.eu-west-3.amazonaws.com", 443)


def test_malformed_json_response(instrument, telemetry, client):
    baseline = client.converse(modelId=wire.MALFORMED, messages=MESSAGES)
    instrument()
    response = client.converse(modelId=wire.MALFORMED, messages=MESSAGES)
    assert without_metadata(response) == without_metadata(baseline)
    span = only_span(telemetry)
    assert span.status.status_code is StatusCode.UNSET and span.end_time is not None
    assert sc.USAGE_INPUT_TOKENS not in span.attributes


# --- errors ------------------------------------------------------------------------------------------


def _raise(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001
        return exc
    raise AssertionError("did not fail")


@pytest.mark.parametrize(("model", "code", "class_name"), [
    ("fault-throttling", "ThrottlingException", "ThrottlingException"),
    ("fault-validation", "ValidationException", "ValidationException"),
    ("fault-unmodeled", "BrandNewException", "ClientError"),
])
@pytest.mark.parametrize("operation", ["converse", "converse_stream", "invoke_model"])
def test_errors_reraise_botocore_exception_untouched(instrument, telemetry, client, model, code, class_name, operation):
    def request():
        if operation == "invoke_model":
            return client.invoke_model(modelId=model, body=b"{}")
        return getattr(client, operation)(modelId=model, messages=MESSAGES)

    baseline = _raise(request)
    instrument()
    raised = _raise(request)
    assert type(raised) is type(baseline) and type(raised).__name__ == class_name
    assert str(raised) == str(baseline)
    assert raised.response["Error"] == baseline.response["Error"] == {"Code": code, "Message": raised.response["Error"]["Message"]}
    assert raised.__context__ is None and raised.__cause__ is None  # nothing of ours chained on
    span = only_span(telemetry)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes[sc.ERROR_TYPE] == code
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.attributes[sc.ERROR_TYPE] == code


# --- ConverseStream ----------------------------------------------------------------------------------


def test_converse_stream_events_unchanged_and_recorded(instrument, telemetry, client):
    baseline = list(client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
    instrument()
    response = client.converse_stream(modelId=NOVA, messages=MESSAGES, inferenceConfig={"maxTokens": 50})
    stream = response["stream"]
    assert isinstance(stream, EventStream)
    events = list(stream)
    assert events == baseline and [type(e) for e in events] == [type(e) for e in baseline]

    span = only_span(telemetry)
    attrs = span.attributes
    assert span.name == f"chat {NOVA}" and attrs[sc.REQUEST_STREAM] is True
    assert attrs[sc.REQUEST_MAX_TOKENS] == 50
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("end_turn",)
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (wire.INPUT_TOKENS, wire.OUTPUT_TOKENS)
    assert attrs[sc.COST_USD] == pytest.approx(price(NOVA, wire.INPUT_TOKENS, wire.OUTPUT_TOKENS))
    assert sc.CALL_CANCELLED not in attrs
    deltas = sum("contentBlockDelta" in e for e in events)
    (ttfc,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    (tpoc,) = telemetry.points("gen_ai.client.operation.time_per_output_chunk")
    assert ttfc.count == 1 and 0 < ttfc.sum < span.end_time - span.start_time
    assert tpoc.count == deltas - 1


@pytest.mark.parametrize("how", ["break", "close", "garbage_collected", "never_iterated", "break_then_resume"])
def test_converse_stream_left_early_ends_the_call_once(instrument, telemetry, client, how):
    instrument()
    response = client.converse_stream(modelId=NOVA, messages=MESSAGES)
    stream = response["stream"]
    if how == "break":
        for _event in stream:
            break
    elif how == "close":
        next(iter(stream))
        stream.close()
        stream.close()
    elif how == "break_then_resume":  # the same as botocore: the rest of the events are still there
        for _event in stream:
            break
        rest = list(stream)
        assert rest and "metadata" in rest[-1]
    elif how == "garbage_collected":
        next(iter(stream))
    del response, stream
    gc.collect()
    span = only_span(telemetry)
    assert span.end_time is not None and span.status.status_code is StatusCode.UNSET
    assert span.attributes[sc.CALL_CANCELLED] is True
    assert sc.USAGE_OUTPUT_TOKENS not in span.attributes
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.count == 1


@pytest.mark.parametrize(("model", "error_type"), [
    ("fault-bad-crc", "ChecksumMismatch"),
    ("fault-midstream-exception", "ModelStreamErrorException"),
    ("fault-truncated", None),
])
@pytest.mark.parametrize("operation", ["converse_stream", "invoke_model_with_response_stream"])
def test_stream_faults_reach_the_caller_as_without_us(instrument, telemetry, client, model, error_type, operation):
    def consume():
        if operation == "converse_stream":
            stream = client.converse_stream(modelId=model, messages=MESSAGES)["stream"]
        else:
            stream = client.invoke_model_with_response_stream(modelId=model, body=b"{}")["body"]
        seen = []
        try:
            for item in stream:
                seen.append(item)
        except Exception as exc:  # noqa: BLE001
            return seen, exc
        return seen, None

    baseline_events, baseline_error = consume()
    instrument()
    events, error = consume()
    assert events == baseline_events and len(events) == 2
    assert type(error) is type(baseline_error) and str(error) == str(baseline_error)
    span = only_span(telemetry)
    if error_type is None:  # botocore ends a cut-off stream quietly: so does the call, without usage
        assert error is None and span.status.status_code is StatusCode.UNSET
        assert sc.USAGE_INPUT_TOKENS not in span.attributes and sc.CALL_CANCELLED not in span.attributes
    else:
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes[sc.ERROR_TYPE] == error_type


# --- InvokeModel -------------------------------------------------------------------------------------

FAMILIES = [
    # model id, request body, operation, request attributes
    (CLAUDE, {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100, "temperature": 0.2,
              "messages": [{"role": "user", "content": "hi"}]}, sc.OP_CHAT, {sc.REQUEST_MAX_TOKENS: 100}),
    (NOVA, {"messages": [{"role": "user", "content": [{"text": "hi"}]}],
            "inferenceConfig": {"max_new_tokens": 80, "top_p": 0.5}}, sc.OP_CHAT, {sc.REQUEST_MAX_TOKENS: 80, sc.REQUEST_TOP_P: 0.5}),
    ("amazon.titan-text-express-v1", {"inputText": "hi", "textGenerationConfig": {"maxTokenCount": 70, "stopSequences": ["|"]}},
     sc.OP_TEXT_COMPLETION, {sc.REQUEST_MAX_TOKENS: 70, sc.REQUEST_STOP_SEQUENCES: ("|",)}),
    ("meta.llama3-8b-instruct-v1:0", {"prompt": "hi", "max_gen_len": 60, "temperature": 0.1}, sc.OP_TEXT_COMPLETION,
     {sc.REQUEST_MAX_TOKENS: 60, sc.REQUEST_TEMPERATURE: 0.1}),
    ("mistral.mistral-7b-instruct-v0:2", {"prompt": "<s>[INST] hi [/INST]", "max_tokens": 50, "top_k": 5},
     sc.OP_TEXT_COMPLETION, {sc.REQUEST_MAX_TOKENS: 50, sc.REQUEST_TOP_K: 5}),
    ("cohere.command-r-v1:0", {"message": "hi", "max_tokens": 40, "p": 0.7}, sc.OP_CHAT,
     {sc.REQUEST_MAX_TOKENS: 40, sc.REQUEST_TOP_P: 0.7}),
]
EMBEDDINGS = [
    ("amazon.titan-embed-text-v2:0", {"inputText": "hi"}),
    ("cohere.embed-english-v3", {"texts": ["hi"], "input_type": "search_document"}),
]


@pytest.mark.parametrize(("model", "body", "operation", "request_attributes"), FAMILIES + [
    (model, body, sc.OP_EMBEDDINGS, {}) for model, body in EMBEDDINGS])
def test_invoke_model_body_is_the_callers_and_tokens_come_from_headers(
        instrument, telemetry, client, model, body, operation, request_attributes):
    baseline = client.invoke_model(modelId=model, body=json.dumps(body))
    baseline_bytes = baseline["body"].read()
    instrument()
    response = client.invoke_model(modelId=model, body=json.dumps(body))
    assert type(response["body"]) is StreamingBody  # not a proxy, not a re-buffered copy
    assert response["body"]._amount_read == 0  # nothing of it read before the caller
    assert response["body"].read() == baseline_bytes == json.dumps(wire.invoke_body(model)).encode()
    assert without_metadata({**response, "body": None}) == without_metadata({**baseline, "body": None})

    span = only_span(telemetry)
    attrs = dict(span.attributes)
    assert span.name == f"{operation} {model}"
    assert attrs[sc.OPERATION_NAME] == operation
    assert {k: attrs.get(k) for k in request_attributes} == request_attributes
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (wire.INPUT_TOKENS, wire.OUTPUT_TOKENS)
    if model != "cohere.command-r-v1:0" and not model.startswith("cohere.embed"):  # genai-prices has no price for these
        assert attrs[sc.COST_USD] == pytest.approx(price(model, wire.INPUT_TOKENS, wire.OUTPUT_TOKENS))


def test_invoke_model_file_body_is_left_unread(instrument, telemetry, client, server, tmp_path):
    path = tmp_path / "body.json"
    path.write_text(json.dumps({"prompt": "hi", "max_gen_len": 5}))
    instrument()
    with path.open("rb") as body:
        client.invoke_model(modelId="meta.llama3-8b-instruct-v1:0", body=body)
    assert server.requests[-1][3] == path.read_bytes()
    attrs = only_span(telemetry).attributes
    assert attrs[sc.OPERATION_NAME] == sc.OP_CHAT and sc.REQUEST_MAX_TOKENS not in attrs  # unknown: not read
    assert attrs[sc.USAGE_OUTPUT_TOKENS] == wire.OUTPUT_TOKENS


def test_invoke_model_malformed_body_reaches_the_caller(instrument, telemetry, client):
    instrument()
    response = client.invoke_model(modelId=wire.MALFORMED, body=b'{"prompt": "hi"}')
    assert response["body"].read() == b'{"generation": "Hel'
    assert only_span(telemetry).attributes[sc.USAGE_INPUT_TOKENS] == wire.INPUT_TOKENS


# --- InvokeModelWithResponseStream ---------------------------------------------------------------


@pytest.mark.parametrize(("model", "body", "operation", "request_attributes"), FAMILIES)
def test_invoke_stream_per_family(instrument, telemetry, client, model, body, operation, request_attributes):
    baseline = list(client.invoke_model_with_response_stream(modelId=model, body=json.dumps(body))["body"])
    instrument()
    response = client.invoke_model_with_response_stream(modelId=model, body=json.dumps(body))
    assert isinstance(response["body"], EventStream)
    events = list(response["body"])
    assert events == baseline
    chunks = [json.loads(e["chunk"]["bytes"]) for e in events]
    assert chunks == wire.invoke_stream_chunks(model)

    span = only_span(telemetry)
    attrs = dict(span.attributes)
    assert attrs[sc.OPERATION_NAME] == operation and attrs[sc.REQUEST_STREAM] is True
    assert {k: attrs.get(k) for k in request_attributes} == request_attributes
    metrics = chunks[-1]["amazon-bedrock-invocationMetrics"]
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (
        metrics["inputTokenCount"], metrics["outputTokenCount"])
    expected_reason = {CLAUDE: "end_turn", NOVA: "end_turn", "amazon.titan-text-express-v1": "FINISH",
                       "cohere.command-r-v1:0": "COMPLETE"}.get(model, "stop")
    assert attrs[sc.RESPONSE_FINISH_REASONS] == (expected_reason,)
    (ttfc,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    tpoc = telemetry.points("gen_ai.client.operation.time_per_output_chunk")
    assert ttfc.count == 1 and tpoc[0].count == len(wire.TEXT_PIECES) - 1  # one chunk per output text piece
    if model == CLAUDE:
        assert (attrs[sc.RESPONSE_ID], attrs[sc.RESPONSE_MODEL]) == ("msg_bdrk_02", "claude-3-haiku-20240307")
        assert attrs[sc.COST_USD] == pytest.approx(price(CLAUDE, wire.INPUT_TOKENS, wire.OUTPUT_TOKENS))


def test_invoke_stream_malformed_chunk(instrument, telemetry, client):
    baseline = list(client.invoke_model_with_response_stream(modelId=wire.MALFORMED, body=b"{}")["body"])
    instrument()
    events = list(client.invoke_model_with_response_stream(modelId=wire.MALFORMED, body=b"{}")["body"])
    assert events == baseline and events[0]["chunk"]["bytes"] == b'{"generation": "Hel'
    attrs = only_span(telemetry).attributes
    assert attrs[sc.USAGE_OUTPUT_TOKENS] == wire.OUTPUT_TOKENS  # the later, whole chunks still count


def test_invoke_stream_left_early(instrument, telemetry, client):
    instrument()
    stream = client.invoke_model_with_response_stream(modelId=CLAUDE, body=b"{}")["body"]
    for _event in stream:
        break
    span = only_span(telemetry)
    assert span.attributes[sc.CALL_CANCELLED] is True
    assert span.attributes[sc.RESPONSE_ID] == "msg_bdrk_02"


# --- content, interception point ---------------------------------------------------------------------


def test_no_content_unless_opted_in(instrument, telemetry, client):
    instrument()
    client.converse(modelId=NOVA, messages=MESSAGES, system=SYSTEM)
    list(client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
    list(client.invoke_model_with_response_stream(
        modelId=CLAUDE, body=json.dumps({"messages": [{"role": "user", "content": "Say hello"}]}))["body"])
    for span in telemetry.spans():
        values = " ".join(str(v) for v in span.attributes.values())
        assert "Hello" not in values and "Say hello" not in values and "terse" not in values
        assert not {sc.INPUT_MESSAGES, sc.OUTPUT_MESSAGES, sc.SYSTEM_INSTRUCTIONS} & set(span.attributes)


def test_content_opt_in(instrument, telemetry, client):
    instrument(capture=CaptureMode.SPAN_ONLY)
    client.converse(modelId=NOVA, messages=MESSAGES, system=SYSTEM)
    list(client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
    list(client.invoke_model_with_response_stream(
        modelId=CLAUDE, body=json.dumps({"messages": [{"role": "user", "content": "Say hello"}]}))["body"])
    converse, streamed, invoked = telemetry.spans()
    assert json.loads(converse.attributes[sc.INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Say hello to the tests"}]}]
    assert "You are terse." in converse.attributes[sc.SYSTEM_INSTRUCTIONS]
    for span in (converse, streamed, invoked):
        (message,) = json.loads(span.attributes[sc.OUTPUT_MESSAGES])
        assert message["parts"] == [{"type": "text", "content": wire.TEXT}]
        assert message["finish_reason"] == "end_turn"
    assert "Say hello" in invoked.attributes[sc.INPUT_MESSAGES]


def test_clients_made_before_instrument_are_covered_and_uninstrument_restores(telemetry, server):
    original = botocore.client.BaseClient.__dict__["_make_api_call"]
    client = make_client(server)
    instrumentor = BedrockInstrumentor()
    instrumentor.instrument(recorder=telemetry.recorder())
    try:
        assert botocore.client.BaseClient.__dict__["_make_api_call"] is not original
        client.converse(modelId=NOVA, messages=MESSAGES)
        assert len(telemetry.spans()) == 1
    finally:
        instrumentor.uninstrument()
    assert botocore.client.BaseClient.__dict__["_make_api_call"] is original
    client.converse(modelId=NOVA, messages=MESSAGES)
    assert len(telemetry.spans()) == 1


def test_other_services_and_operations_pass_through(instrument, telemetry, client, server):
    instrument()
    control_plane = boto3.client("bedrock", region_name="us-east-1", endpoint_url=server.url,
                                 aws_access_key_id="test", aws_secret_access_key="test",
                                 config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    for request in (lambda: control_plane.list_foundation_models(),
                    lambda: client.count_tokens(modelId=NOVA, input={"converse": {"messages": MESSAGES}})):
        _raise(request)  # the loopback server has no such routes
    assert telemetry.spans() == []


def test_entry_point_loads_the_instrumentor():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="opentelemetry_instrumentor") if e.name == "otel_llm_bedrock"]
    instrumentor_class = entry.load()
    assert instrumentor_class is BedrockInstrumentor
    from opentelemetry.instrumentation.dependencies import get_dependency_conflicts

    assert get_dependency_conflicts(instrumentor_class().instrumentation_dependencies()) is None


def test_a_bug_of_ours_never_reaches_the_caller(instrument, telemetry, client, monkeypatch):
    from otel_llm.instrumentation import bedrock

    def broken(*args, **kwargs):
        raise RuntimeError("bug in otel-llm")

    instrument()
    monkeypatch.setattr(bedrock, "_record_converse", broken)
    monkeypatch.setattr(bedrock, "_chunk_text", broken)
    response = client.converse(modelId=NOVA, messages=MESSAGES)
    assert response["output"]["message"]["content"] == [{"text": wire.TEXT}]
    events = list(client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
    assert len(events) == len(wire.converse_stream_events(cached=False))
    invoked = list(client.invoke_model_with_response_stream(modelId=CLAUDE, body=b"{}")["body"])
    assert len(invoked) == len(wire.invoke_stream_chunks(CLAUDE))
    monkeypatch.setattr(bedrock, "_converse_attributes", broken)  # fails before the request: passed through
    assert client.converse(modelId=NOVA, messages=MESSAGES)["stopReason"] == "end_turn"
    spans = telemetry.spans()
    assert len(spans) == 3 and all(s.end_time is not None for s in spans)
