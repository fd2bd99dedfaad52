"""Opt-in message content: modes, shapes (text, tool calls, tool results), redaction, truncation, events."""

from __future__ import annotations

import json

import pytest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)

from otel_llm import semconv as sc
from otel_llm.content import (
    CaptureMode,
    ContentConfigError,
    ContentPolicy,
    set_redactor,
)

MESSAGES = [{"role": "user", "content": "hello"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                                            "parameters": {"type": "object", "properties": {}}}}]


@pytest.fixture
def logs():
    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    return provider, exporter


def start(instrument, telemetry, logs, mode, **policy):
    provider, _exporter = logs
    recorder = telemetry.recorder(capture=mode, logger_provider=provider, content_policy=ContentPolicy(**policy))
    return instrument(recorder=recorder)


def test_tool_calls_and_results_in_the_semconv_shape(instrument, telemetry, logs, client):
    start(instrument, telemetry, logs, CaptureMode.SPAN_ONLY)
    first = client.chat.completions.create(
        model="gpt-4o-mini", tools=TOOLS,
        messages=[{"role": "system", "content": "Use tools."}, {"role": "user", "content": "What is the weather in Oslo?"}],
    )
    tool_call = first.choices[0].message.tool_calls[0]
    client.chat.completions.create(model="gpt-4o-mini", tools=TOOLS, messages=[
        {"role": "user", "content": "What is the weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [tool_call.model_dump()]},
        {"role": "tool", "tool_call_id": tool_call.id, "content": "12C and rain"},
    ])
    asked, answered = telemetry.spans()
    output = json.loads(asked.attributes[sc.OUTPUT_MESSAGES])
    assert output[0]["finish_reason"] == "tool_calls"
    assert {"type": "tool_call", "id": tool_call.id, "name": "get_weather",
            "arguments": tool_call.function.arguments} in output[0]["parts"]
    assert json.loads(asked.attributes[sc.SYSTEM_INSTRUCTIONS]) == [{"type": "text", "content": "Use tools."}]
    assert json.loads(asked.attributes[sc.TOOL_DEFINITIONS]) == [
        {"type": "function", "name": "get_weather", "description": "Weather by city"}
    ]
    inputs = json.loads(answered.attributes[sc.INPUT_MESSAGES])
    assert inputs[1]["parts"] == [{"type": "tool_call", "id": tool_call.id, "name": "get_weather",
                                   "arguments": tool_call.function.arguments}]
    assert inputs[2] == {"role": "tool", "parts": [
        {"type": "tool_call_response", "id": tool_call.id, "response": "12C and rain"}]}


def test_anthropic_tool_use_and_results(instrument_anthropic, telemetry, anthropic_client):
    instrument_anthropic(recorder=telemetry.recorder(capture=CaptureMode.SPAN_ONLY))
    tools = [{"name": "get_weather", "description": "Weather by city", "input_schema": {"type": "object"}}]
    first = anthropic_client.messages.create(
        model="claude-haiku-4-5", max_tokens=200, tools=tools,
        messages=[{"role": "user", "content": "What is the weather in Oslo?"}],
    )
    tool_use = next(block for block in first.content if block.type == "tool_use")
    anthropic_client.messages.create(model="claude-haiku-4-5", max_tokens=200, tools=tools, messages=[
        {"role": "user", "content": "What is the weather in Oslo?"},
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "12C"}]},
    ])
    asked, answered = [s for s in telemetry.spans() if s.instrumentation_scope.name == "otel_llm"]
    output = json.loads(asked.attributes[sc.OUTPUT_MESSAGES])
    assert output[0]["finish_reason"] == "tool_use"
    assert {"type": "tool_call", "id": tool_use.id, "name": "get_weather", "arguments": tool_use.input} in output[0]["parts"]
    inputs = json.loads(answered.attributes[sc.INPUT_MESSAGES])
    assert inputs[2]["parts"] == [{"type": "tool_call_response", "id": tool_use.id, "response": "12C"}]
    assert json.loads(asked.attributes[sc.TOOL_DEFINITIONS])[0]["name"] == "get_weather"


@pytest.mark.parametrize("mode", [CaptureMode.EVENT_ONLY, CaptureMode.SPAN_AND_EVENT])
def test_content_event_is_tied_to_the_span(instrument, telemetry, logs, client, mode):
    start(instrument, telemetry, logs, mode)
    result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (span,) = telemetry.spans()
    (record,) = [r.log_record for r in logs[1].get_finished_logs()]
    assert record.event_name == sc.EVENT_INFERENCE_DETAILS
    assert record.trace_id == span.context.trace_id and record.span_id == span.context.span_id
    assert json.loads(record.attributes[sc.INPUT_MESSAGES])[0]["parts"][0]["content"] == "hello"
    assert result.choices[0].message.content in record.attributes[sc.OUTPUT_MESSAGES]
    assert record.attributes[sc.PROVIDER_NAME] == "openai"
    assert (sc.INPUT_MESSAGES in span.attributes) is (mode is CaptureMode.SPAN_AND_EVENT)


def test_no_event_and_no_content_by_default(instrument, telemetry, logs, client):
    start(instrument, telemetry, logs, CaptureMode.NO_CONTENT)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert logs[1].get_finished_logs() == ()
    assert not any(key.startswith("gen_ai.input") for key in telemetry.spans()[0].attributes)


def test_redaction_patterns_keys_and_truncation(instrument, telemetry, logs, client):
    start(instrument, telemetry, logs, CaptureMode.SPAN_ONLY, redact=("key", "email", "card"), max_length=60)
    secret = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": (
        f"mail jane.doe@example.com, card 4111 1111 1111 1111, key {secret} " + "x" * 200)}])
    (span,) = telemetry.spans()
    text = json.loads(span.attributes[sc.INPUT_MESSAGES])[0]["parts"][0]["content"]
    assert "jane.doe@example.com" not in text and "4111" not in text and secret not in text
    assert text.count("[REDACTED]") == 3
    assert text.endswith("…[truncated]") and len(text) == 60 + len("…[truncated]")
    assert span.attributes[sc.CONTENT_TRUNCATED] is True


def test_redaction_configured_from_env(monkeypatch):
    monkeypatch.setenv("OTEL_LLM_CONTENT_REDACT", "email,phone")
    monkeypatch.setenv("OTEL_LLM_CONTENT_REDACT_REGEX", r"ACME-\d+")
    monkeypatch.setenv("OTEL_LLM_CONTENT_MAX_LENGTH", "0")
    policy = ContentPolicy.from_env()
    cleaned, cut = policy.text("ticket ACME-1234 from bob@corp.io, call +47 22 33 44 55, Bearer abc.def " + "y" * 20000)
    assert "ACME-1234" not in cleaned and "bob@corp.io" not in cleaned and "22 33 44" not in cleaned
    assert "abc.def" not in cleaned  # keys and tokens are always redacted
    assert not cut and len(cleaned) > 20000


def test_custom_redactor_callable(instrument, telemetry, logs, client):
    set_redactor(lambda text: text.replace("Oslo", "<city>"))
    try:
        start(instrument, telemetry, logs, CaptureMode.SPAN_ONLY)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Weather in Oslo"}])
    finally:
        set_redactor(None)
    assert "Oslo" not in telemetry.spans()[0].attributes[sc.INPUT_MESSAGES]
    assert "<city>" in telemetry.spans()[0].attributes[sc.INPUT_MESSAGES]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_LLM_CONTENT_REDACT": "email,passport"}, "unknown pattern passport"),
        ({"OTEL_LLM_CONTENT_REDACT_REGEX": "(unclosed"}, "not a valid regular expression"),
        ({"OTEL_LLM_CONTENT_MAX_LENGTH": "lots"}, "is not a whole number"),
        ({"OTEL_LLM_CONTENT_MAX_LENGTH": "-5"}, "must be >= 0"),
    ],
)
def test_bad_content_settings_say_what_to_fix(monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ContentConfigError, match=message):
        ContentPolicy.from_env()


def test_bad_content_settings_fail_closed(monkeypatch, telemetry, caplog):
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    monkeypatch.setenv("OTEL_LLM_CONTENT_REDACT", "nonsense")
    from otel_llm.recorder import Recorder

    recorder = Recorder(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    assert recorder.capture is CaptureMode.NO_CONTENT
    assert "unknown pattern nonsense" in caplog.text


def test_set_redactor_rejects_non_callables():
    with pytest.raises(ContentConfigError, match="needs a callable"):
        set_redactor("not callable")
