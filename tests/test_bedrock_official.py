"""otel-llm's Bedrock instrumentor next to the official one (opentelemetry-instrumentation-botocore 0.66b2,
its Bedrock extension): the same scenarios against the loopback Bedrock server, each instrumentor alone,
and the differences asserted one by one so that the list in the README stays true."""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.config import Config
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.trace import SpanKind, StatusCode

from otel_llm import semconv as sc
from otel_llm.instrumentation.bedrock import BedrockInstrumentor
from tests.support import bedrock_server as wire
from tests.support.bedrock_server import BedrockServer

from .conftest import Telemetry

CACHED_CLAUDE = "us.anthropic.claude-3-5-haiku-20241022-v1:0"
NOVA = "amazon.nova-lite-v1:0"
NOVA_LEFT_EARLY = "amazon.nova-pro-v1:0"
LLAMA = "meta.llama3-8b-instruct-v1:0"
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": "Say hello"}]}]


@dataclass
class Run:
    """What one instrumentor recorded for the scenarios, and what the caller saw."""

    spans: dict[str, Any] = field(default_factory=dict)  # request model -> finished span
    metrics: dict[str, list[Any]] = field(default_factory=dict)
    seen: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # request model -> request headers


def _failure(call: Any) -> Exception | None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001
        return exc
    return None


def _scenarios(server: BedrockServer) -> dict[str, Any]:
    client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=server.url,
                          aws_access_key_id="test", aws_secret_access_key="test",
                          config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    seen: dict[str, Any] = {}
    seen["converse"] = client.converse(
        modelId=CACHED_CLAUDE, messages=MESSAGES, system=[{"text": "Be terse."}, {"cachePoint": {"type": "default"}}])
    seen["converse_stream"] = list(client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
    stream = client.converse_stream(modelId=NOVA_LEFT_EARLY, messages=MESSAGES)["stream"]
    for _event in stream:
        break
    del stream
    invoked = client.invoke_model(modelId=LLAMA, body=json.dumps({"prompt": "Say hello", "max_gen_len": 20}))
    seen["invoke_body_source"] = type(invoked["body"]._raw_stream).__name__
    seen["invoke_model"] = invoked["body"].read()
    seen["invoke_stream"] = list(client.invoke_model_with_response_stream(
        modelId=CLAUDE, body=json.dumps({"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 20}))["body"])
    seen["throttling"] = _failure(lambda: client.converse(modelId="fault-throttling", messages=MESSAGES))
    seen["unmodeled"] = _failure(lambda: client.converse(modelId="fault-unmodeled", messages=MESSAGES))
    seen["bad_crc"] = _failure(lambda: list(client.converse_stream(modelId="fault-bad-crc", messages=MESSAGES)["stream"]))
    seen["midstream"] = _failure(
        lambda: list(client.converse_stream(modelId="fault-midstream-exception", messages=MESSAGES)["stream"]))
    gc.collect()
    return seen


def _run(instrumentor: Any, server: BedrockServer) -> Run:
    telemetry = Telemetry()
    instrumentor.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    start = len(server.requests)
    try:
        seen = _scenarios(server)
    finally:
        instrumentor.uninstrument()
    run = Run(seen=seen, metrics=telemetry.collect())
    for span in telemetry.spans():
        run.spans[span.attributes[sc.REQUEST_MODEL]] = span
    for _action, model, headers, _body in server.requests[start:]:
        run.headers[model] = headers
    return run


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    """Each instrumentor alone, on the same providers' kind of pipeline."""
    with BedrockServer() as server:
        return {"ours": _run(BedrockInstrumentor(), server), "official": _run(BotocoreInstrumentor(), server)}


def _points(run: Run, name: str, model: str) -> list[Any]:
    return [p for p in run.metrics.get(name, []) if p.attributes.get(sc.REQUEST_MODEL) == model]


def test_the_caller_sees_the_same_with_either(runs):
    ours, official = runs["ours"].seen, runs["official"].seen
    for key in ("converse_stream", "invoke_model", "invoke_stream"):
        assert ours[key] == official[key]
    assert {k: v for k, v in ours["converse"].items() if k != "ResponseMetadata"} == {
        k: v for k, v in official["converse"].items() if k != "ResponseMetadata"}
    for key in ("throttling", "unmodeled", "bad_crc", "midstream"):
        assert type(ours[key]) is type(official[key]) and str(ours[key]) == str(official[key])


def test_span_name_kind_and_identity_attributes(runs):
    ours, official = runs["ours"].spans[NOVA], runs["official"].spans[NOVA]
    assert ours.name == official.name == f"chat {NOVA}"
    assert ours.kind is official.kind is SpanKind.CLIENT
    assert ours.instrumentation_scope.name == "otel_llm"
    assert official.instrumentation_scope.name == "opentelemetry.instrumentation.botocore.bedrock-runtime"
    # provider: the conventions' gen_ai.provider.name (ours) vs the pre-1.37 gen_ai.system (official)
    assert ours.attributes[sc.PROVIDER_NAME] == "aws.bedrock" and "gen_ai.system" not in ours.attributes
    assert official.attributes["gen_ai.system"] == "aws.bedrock" and sc.PROVIDER_NAME not in official.attributes
    # the official span is also the AWS SDK call span: rpc.*, cloud.region, aws.request_id
    assert official.attributes["rpc.method"] == "ConverseStream" and official.attributes["cloud.region"] == "us-east-1"
    assert "aws.request_id" in official.attributes
    assert not {"rpc.method", "cloud.region", "aws.request_id"} & set(ours.attributes)
    # streamed calls: gen_ai.request.stream only on ours
    assert ours.attributes[sc.REQUEST_STREAM] is True and sc.REQUEST_STREAM not in official.attributes


def test_cached_input_tokens(runs):
    """Bedrock's inputTokens leaves the cache out: the official span reports it as the input count,
    ours adds cache read and write (the conventions' input count includes cached input)."""
    ours, official = runs["ours"].spans[CACHED_CLAUDE], runs["official"].spans[CACHED_CLAUDE]
    cached = wire.CACHE_READ_TOKENS + wire.CACHE_WRITE_TOKENS
    assert official.attributes[sc.USAGE_INPUT_TOKENS] == wire.INPUT_TOKENS
    assert ours.attributes[sc.USAGE_INPUT_TOKENS] == wire.INPUT_TOKENS + cached
    for span in (ours, official):
        assert span.attributes[sc.USAGE_CACHE_READ_INPUT_TOKENS] == wire.CACHE_READ_TOKENS
        assert span.attributes[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] == wire.CACHE_WRITE_TOKENS
    (ours_input,) = [p for p in _points(runs["ours"], "gen_ai.client.token.usage", CACHED_CLAUDE)
                     if p.attributes[sc.TOKEN_TYPE] == "input"]
    (official_input,) = [p for p in _points(runs["official"], "gen_ai.client.token.usage", CACHED_CLAUDE)
                         if p.attributes[sc.TOKEN_TYPE] == "input"]
    assert (ours_input.sum, official_input.sum) == (wire.INPUT_TOKENS + cached, wire.INPUT_TOKENS)


def test_invoke_model(runs):
    ours, official = runs["ours"], runs["official"]
    # a Llama prompt body: text_completion (ours) vs chat (official, for every family but Titan)
    assert ours.spans[LLAMA].attributes[sc.OPERATION_NAME] == sc.OP_TEXT_COMPLETION
    assert official.spans[LLAMA].attributes[sc.OPERATION_NAME] == sc.OP_CHAT
    # both count the same tokens: ours from Bedrock's headers, the official from the body
    for run in (ours, official):
        attrs = run.spans[LLAMA].attributes
        assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (wire.INPUT_TOKENS, wire.OUTPUT_TOKENS)
    # the official one reads the whole body before returning and hands the caller an in-memory copy;
    # ours returns botocore's StreamingBody on the live response, unread, and so has no finish reason
    assert official.seen["invoke_body_source"] == "BytesIO"
    assert ours.seen["invoke_body_source"] == "HTTPResponse"
    assert official.spans[LLAMA].attributes[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert sc.RESPONSE_FINISH_REASONS not in ours.spans[LLAMA].attributes
    # the official Llama handler records no metrics for InvokeModel
    for name in ("gen_ai.client.operation.duration", "gen_ai.client.token.usage"):
        assert _points(official, name, LLAMA) == []
        assert _points(ours, name, LLAMA)


def test_stream_metrics_and_early_exit(runs):
    ours, official = runs["ours"], runs["official"]
    # time to first chunk and per chunk: ours only
    assert _points(ours, "gen_ai.client.operation.time_to_first_chunk", NOVA)[0].count == 1
    assert "gen_ai.client.operation.time_to_first_chunk" not in official.metrics
    assert "gen_ai.client.operation.time_per_output_chunk" not in official.metrics
    # a stream left by break and dropped: ours ends the call (cancelled); the official span never ends
    assert ours.spans[NOVA_LEFT_EARLY].attributes[sc.CALL_CANCELLED] is True
    assert NOVA_LEFT_EARLY not in official.spans
    # the complete invoke stream: the same tokens and finish reason from both
    for run in (ours, official):
        attrs = run.spans[CLAUDE].attributes
        assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (wire.INPUT_TOKENS, wire.OUTPUT_TOKENS)
        assert attrs[sc.RESPONSE_FINISH_REASONS] == ("end_turn",)


def test_errors(runs):
    ours, official = runs["ours"].spans, runs["official"].spans
    # a code botocore models: the same error.type from both (its class name is the code)
    assert ours["fault-throttling"].attributes[sc.ERROR_TYPE] == "ThrottlingException"
    assert official["fault-throttling"].attributes[sc.ERROR_TYPE] == "ThrottlingException"
    # a code it does not model is raised as ClientError: ours records the code
    assert ours["fault-unmodeled"].attributes[sc.ERROR_TYPE] == "BrandNewException"
    assert official["fault-unmodeled"].attributes[sc.ERROR_TYPE] == "ClientError"
    # an exception event mid-stream: the event's code (ours) vs the EventStreamError class (official)
    assert ours["fault-midstream-exception"].attributes[sc.ERROR_TYPE] == "ModelStreamErrorException"
    assert official["fault-midstream-exception"].attributes[sc.ERROR_TYPE] == "EventStreamError"
    # a stream broken by a bad CRC: ours fails the call; the official span never ends
    assert ours["fault-bad-crc"].status.status_code is StatusCode.ERROR
    assert ours["fault-bad-crc"].attributes[sc.ERROR_TYPE] == "ChecksumMismatch"
    assert "fault-bad-crc" not in official


def test_metric_attributes_cost_and_propagation(runs):
    ours, official = runs["ours"], runs["official"]
    (ours_duration,) = _points(ours, "gen_ai.client.operation.duration", NOVA)
    (official_duration,) = _points(official, "gen_ai.client.operation.duration", NOVA)
    assert ours_duration.attributes[sc.PROVIDER_NAME] == "aws.bedrock"
    assert official_duration.attributes["gen_ai.system"] == "aws.bedrock"
    assert "llm.client.cost" in ours.metrics and "llm.client.cost" not in official.metrics
    # the official instrumentation injects X-Ray trace context into the request; ours changes nothing sent
    assert "X-Amzn-Trace-Id" in official.headers[NOVA]
    assert "X-Amzn-Trace-Id" not in ours.headers[NOVA] and "traceparent" not in ours.headers[NOVA]


def test_both_on_at_once_two_spans_and_an_unchanged_response():
    """``opentelemetry-instrument`` with both installed loads both: each records its own span."""
    telemetry = Telemetry()
    ours, official = BedrockInstrumentor(), BotocoreInstrumentor()
    with BedrockServer() as server:
        client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=server.url,
                              aws_access_key_id="test", aws_secret_access_key="test")
        baseline = client.converse(modelId=NOVA, messages=MESSAGES)
        for instrumentor in (official, ours):
            instrumentor.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
        try:
            response = client.converse(modelId=NOVA, messages=MESSAGES)
            events = list(client.converse_stream(modelId=NOVA, messages=MESSAGES)["stream"])
        finally:
            ours.uninstrument()
            official.uninstrument()
    assert response["output"] == baseline["output"] and len(events) == len(wire.converse_stream_events(cached=False))
    scopes = sorted(s.instrumentation_scope.name for s in telemetry.spans())
    assert scopes == ["opentelemetry.instrumentation.botocore.bedrock-runtime"] * 2 + ["otel_llm"] * 2
