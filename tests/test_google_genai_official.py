"""otel-llm's google-genai instrumentor next to the official one (opentelemetry-instrumentation-google-genai
1.3b0), each alone, on the same scenarios against the loopback Gemini server. Every assertion here is
a measured difference (or sameness) that the README states; when one changes, this file says so."""

from __future__ import annotations

import gc
import os

import pytest
from google.genai import types
from opentelemetry.instrumentation.google_genai import GoogleGenAiSdkInstrumentor
from opentelemetry.trace import StatusCode

from otel_llm import semconv as sc
from otel_llm.instrumentation.google_genai import GoogleGenAIInstrumentor
from tests.support import gemini_server as wire

from .test_google_genai import MODEL, EMBEDDER, OUTPUT_TOKENS, _OneAnswer, client, make_client, server  # noqa: F401

EMIT_EVENT = "OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT"
OFFICIAL_SCOPE = "opentelemetry.instrumentation.google_genai"


@pytest.fixture(params=["official", "ours"])
def run(request, telemetry, monkeypatch):
    """Instrument with one of the two (never both), return its name; uninstrumented at teardown."""
    monkeypatch.delenv(EMIT_EVENT, raising=False)  # the official one sets it; monkeypatch restores it
    instrumentor = start(request.param, telemetry)
    yield request.param
    instrumentor.uninstrument()


def start(which, telemetry):
    if which == "official":
        instrumentor = GoogleGenAiSdkInstrumentor()
        instrumentor.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider,
                                skip_dep_check=True)  # see test_official_does_not_activate_on_google_genai_3
    else:
        instrumentor = GoogleGenAIInstrumentor()
        instrumentor.instrument(recorder=telemetry.recorder())
    return instrumentor


def genai_spans(telemetry):
    return [s for s in telemetry.spans() if s.attributes.get(sc.OPERATION_NAME)]


def client_spans(telemetry):
    return [s for s in genai_spans(telemetry) if s.attributes.get(sc.PROVIDER_NAME)]


def only(telemetry):
    spans = client_spans(telemetry)
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def metric_points(telemetry):
    return telemetry.collect()


# --- activation ----------------------------------------------------------------------------------


def test_official_does_not_activate_on_google_genai_3(telemetry, server, client):  # noqa: F811
    """Its dependency range is ``google-genai>=1.32.0,<3``: on 3.3.0 ``instrument()`` (and so
    ``opentelemetry-instrument``) does nothing unless told ``skip_dep_check=True``. Ours: ``>=2.0,<4``."""
    official = GoogleGenAiSdkInstrumentor()
    assert official.instrumentation_dependencies() == ["google-genai>=1.32.0,<3"]
    official.instrument(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    try:
        client.models.generate_content(model=MODEL, contents="hi")
        assert genai_spans(telemetry) == []
    finally:
        official.uninstrument()
    assert GoogleGenAIInstrumentor().instrumentation_dependencies() == ("google-genai >= 2.0, < 4",)


def test_only_the_official_one_sets_an_environment_variable(run, server):  # noqa: F811
    """The official instrument() writes OTEL_INSTRUMENTATION_GENAI_EMIT_EVENT=true into os.environ."""
    assert os.environ.get(EMIT_EVENT) == ("true" if run == "official" else None)


# --- plain, stream, embeddings, error ---------------------------------------------------------------


def test_plain(run, telemetry, server, client):  # noqa: F811
    client.models.generate_content(
        model=MODEL, contents="hi", config=types.GenerateContentConfig(temperature=0.3, max_output_tokens=100))
    span = only(telemetry)
    attrs = dict(span.attributes)
    assert span.name == "generate_content gemini-2.5-flash"  # same
    # same: thoughts counted in output, reasoning and cache read reported, finish reason lowercased
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (12, OUTPUT_TOKENS)
    assert attrs[sc.USAGE_REASONING_OUTPUT_TOKENS] == 7 and attrs[sc.USAGE_CACHE_READ_INPUT_TOKENS] == 4
    assert attrs[sc.RESPONSE_FINISH_REASONS] == ("stop",)
    assert attrs[sc.REQUEST_TEMPERATURE] == 0.3 and attrs[sc.REQUEST_MAX_TOKENS] == 100
    metrics = metric_points(telemetry)
    (duration,) = metrics["gen_ai.client.operation.duration"]
    if run == "official":
        assert span.instrumentation_scope.name == OFFICIAL_SCOPE
        assert attrs[sc.PROVIDER_NAME] == "gemini"  # not the conventions' gcp.gemini
        assert sc.SERVER_PORT not in attrs and sc.SERVER_PORT not in duration.attributes
        assert sc.COST_USD not in attrs and "llm.client.cost" not in metrics
    else:
        assert attrs[sc.PROVIDER_NAME] == "gcp.gemini"
        assert attrs[sc.SERVER_PORT] == duration.attributes[sc.SERVER_PORT] == server.port
        assert attrs[sc.COST_USD] > 0 and metrics["llm.client.cost"][0].value == pytest.approx(attrs[sc.COST_USD])


def test_vertex_provider_name(run, telemetry, server):  # noqa: F811
    from google import genai

    vertex = genai.Client(vertexai=True, api_key="k", http_options={"base_url": server.base_url})
    vertex.models.generate_content(model=MODEL, contents="hi")
    assert only(telemetry).attributes[sc.PROVIDER_NAME] == ("vertex_ai" if run == "official" else "gcp.vertex_ai")


def test_stream(run, telemetry, server, client):  # noqa: F811
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="hi"))
    span = only(telemetry)
    attrs = dict(span.attributes)
    assert attrs[sc.REQUEST_STREAM] is True
    assert (attrs[sc.USAGE_INPUT_TOKENS], attrs[sc.USAGE_OUTPUT_TOKENS]) == (12, OUTPUT_TOKENS)  # same
    metrics = metric_points(telemetry)
    (ttfc,) = metrics["gen_ai.client.operation.time_to_first_chunk"]
    (per_chunk,) = metrics["gen_ai.client.operation.time_per_output_chunk"]
    assert ttfc.count == 1 and per_chunk.count == len(chunks) - 1  # same
    if run == "official":
        assert attrs["gen_ai.response.time_to_first_chunk"] > 0  # also a span attribute there
    else:
        assert "gen_ai.response.time_to_first_chunk" not in attrs


def test_stream_left_early(run, telemetry, server, client):  # noqa: F811
    stream = client.models.generate_content_stream(model=MODEL, contents="hi")
    for _chunk in stream:
        break
    del stream
    gc.collect()
    span = only(telemetry)
    (duration,) = metric_points(telemetry)["gen_ai.client.operation.duration"]
    if run == "official":  # a consumer's stop is recorded as a failure of unknown type
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes[sc.ERROR_TYPE] == duration.attributes[sc.ERROR_TYPE] == "_OTHER"
    else:  # a consumer's stop is not an error
        assert span.status.status_code is StatusCode.UNSET
        assert sc.ERROR_TYPE not in span.attributes and sc.ERROR_TYPE not in duration.attributes
        assert span.attributes[sc.CALL_CANCELLED] is True


def test_embeddings(run, telemetry, server, client):  # noqa: F811
    client.models.embed_content(model=EMBEDDER, contents=["a", "b"])
    span = only(telemetry)
    assert span.name == "embeddings gemini-embedding-001"  # same
    assert span.attributes[sc.USAGE_INPUT_TOKENS] == 6  # same
    if run == "official":
        assert span.attributes["gen_ai.embeddings.dimension.count"] == 3
    else:
        assert "gen_ai.embeddings.dimension.count" not in span.attributes
        assert span.attributes[sc.COST_USD] > 0


def test_vertex_predict_embeddings_tokens(run, telemetry, server):  # noqa: F811
    """Vertex AI's :predict (gemini-embedding-001) counts tokens per embedding, not in usage_metadata."""
    from google import genai

    vertex = genai.Client(vertexai=True, api_key="k", http_options={"base_url": server.base_url})
    vertex.models.embed_content(model=EMBEDDER, contents=["a", "b"])
    attrs = only(telemetry).attributes
    if run == "official":
        assert sc.USAGE_INPUT_TOKENS not in attrs
    else:
        assert attrs[sc.USAGE_INPUT_TOKENS] == 2 * wire.EMBEDDING_TOKENS_PER_TEXT


def test_error(run, telemetry, server, client):  # noqa: F811
    from google.genai import errors

    with pytest.raises(errors.ClientError):
        client.models.generate_content(model="error-429", contents="hi")
    span = only(telemetry)
    (duration,) = metric_points(telemetry)["gen_ai.client.operation.duration"]
    assert span.status.status_code is StatusCode.ERROR  # same
    # official: the HTTP status code; ours: Google's status (the exception class, ClientError, covers every 4xx)
    expected = "429" if run == "official" else "RESOURCE_EXHAUSTED"
    assert span.attributes[sc.ERROR_TYPE] == duration.attributes[sc.ERROR_TYPE] == expected


# --- where the two intercept -------------------------------------------------------------------------


def test_automatic_function_calling(run, telemetry, server, client):  # noqa: F811
    """Two requests to the model: ours one CLIENT span each; the official one span for the public
    call (with the last request's usage) plus an execute_tool span for the Python function."""

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "sunny"

    before = len(server.requests)
    client.models.generate_content(model="call-a-tool", contents="Weather?",
                                                config=types.GenerateContentConfig(tools=[get_weather]))
    assert len(server.requests) - before == 2
    clients = client_spans(telemetry)
    tools = [s for s in genai_spans(telemetry) if s.attributes[sc.OPERATION_NAME] == "execute_tool"]
    input_tokens = sum(p.sum for p in metric_points(telemetry)["gen_ai.client.token.usage"]
                       if p.attributes[sc.TOKEN_TYPE] == "input")
    if run == "official":
        assert len(clients) == 1 and [s.name for s in tools] == ["execute_tool get_weather"]
        assert input_tokens == 12  # the first request's input is not counted
    else:
        assert len(clients) == 2 and tools == []
        assert input_tokens == 24


@pytest.mark.parametrize("which", ["official", "ours"])
def test_methods_bound_before_instrument(which, telemetry, server, monkeypatch, client):  # noqa: F811
    """The official one wraps the public methods: a method bound before instrument() is not seen."""
    monkeypatch.delenv(EMIT_EVENT, raising=False)
    generate = client.models.generate_content
    instrumentor = start(which, telemetry)
    try:
        generate(model=MODEL, contents="hi")
    finally:
        instrumentor.uninstrument()
    assert len(client_spans(telemetry)) == (0 if which == "official" else 1)


def test_tool_use_prompt_tokens(run, telemetry):
    """Gemini's total = prompt + tool use prompt + candidates + thoughts; ours counts the tool use
    prompt (built-in tools' results fed back, billed as input) as input, the official one drops it."""
    answer = {"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
              "usageMetadata": {"promptTokenCount": 10, "toolUsePromptTokenCount": 30, "candidatesTokenCount": 2,
                                "totalTokenCount": 42}}
    from google import genai

    with _OneAnswer(answer) as url:
        one_answer = genai.Client(api_key="k", http_options={"base_url": url})
        one_answer.models.generate_content(model=MODEL, contents="x")
    assert only(telemetry).attributes[sc.USAGE_INPUT_TOKENS] == (10 if run == "official" else 40)
