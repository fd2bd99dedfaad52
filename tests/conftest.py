from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_llm.content import CaptureMode
from otel_llm.demo.upstream import UpstreamSimulator
from otel_llm.instrumentation.anthropic import AnthropicInstrumentor
from otel_llm.instrumentation.openai import OpenAIInstrumentor
from otel_llm.pricing import PriceTable
from otel_llm.recorder import Recorder
from tests.support.fixtures import *  # noqa: F403

API_KEY = "sk-test-0123456789abcdefSECRET"
ANTHROPIC_KEY = "sk-ant-api03-test-0123456789SECRET"


class Telemetry:
    """In-memory SDK pipeline: finished spans and collected metric points as plain data."""

    def __init__(self) -> None:
        self.span_exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.span_exporter))
        self.metric_reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metric_reader])

    def recorder(self, **kwargs: Any) -> Recorder:
        kwargs.setdefault("prices", PriceTable())
        kwargs.setdefault("capture", CaptureMode.NO_CONTENT)
        return Recorder(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **kwargs)

    def spans(self) -> list[Any]:
        gc.collect()
        return list(self.span_exporter.get_finished_spans())

    def collect(self) -> dict[str, list[Any]]:
        """One collection: every metric's points by name (exemplars appear in one collection only)."""
        data = self.metric_reader.get_metrics_data()
        found: dict[str, list[Any]] = {}
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found

    def points(self, name: str) -> list[Any]:
        data = self.metric_reader.get_metrics_data()
        found = []
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def metric(self, name: str) -> Any:
        data = self.metric_reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else ():
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        return metric
        return None


@pytest.fixture
def telemetry() -> Telemetry:
    return Telemetry()


@pytest.fixture(scope="session")
def upstream() -> Iterator[UpstreamSimulator]:
    with UpstreamSimulator(timeout_sleep=2.0, seed=7) as sim:
        yield sim


def _instrumenting(telemetry: Telemetry, instrumentor: Any) -> Iterator[Any]:
    """``start(capture=..., recorder=..., **options) -> Recorder`` into the in-memory pipeline;
    uninstrumented at teardown."""

    def start(**kwargs: Any) -> Recorder:
        recorder = kwargs.pop("recorder", None) or telemetry.recorder(capture=kwargs.pop("capture", CaptureMode.NO_CONTENT))
        instrumentor.instrument(recorder=recorder, **kwargs)
        return recorder

    yield start
    instrumentor.uninstrument()


@pytest.fixture
def instrument(telemetry: Telemetry) -> Iterator[Any]:
    """Instrument the openai SDK into the in-memory pipeline."""
    yield from _instrumenting(telemetry, OpenAIInstrumentor())


@pytest.fixture
def client(upstream: UpstreamSimulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0, timeout=10)


@pytest.fixture
def async_client(upstream: UpstreamSimulator) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=upstream.base_url, api_key=API_KEY, max_retries=0, timeout=10)


@pytest.fixture
def instrument_anthropic(telemetry: Telemetry) -> Iterator[Any]:
    """Instrument the anthropic SDK into the in-memory pipeline."""
    yield from _instrumenting(telemetry, AnthropicInstrumentor())


@pytest.fixture
def anthropic_client(upstream: UpstreamSimulator, telemetry: Telemetry) -> anthropic.Anthropic:
    """The SDK's own tracing is on, into the same tracer provider: one call must still be one GenAI span."""
    return anthropic.Anthropic(
        base_url=upstream.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, timeout=10,
        open_telemetry={"tracer_provider": telemetry.tracer_provider},
    )


@pytest.fixture
def async_anthropic_client(upstream: UpstreamSimulator, telemetry: Telemetry) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        base_url=upstream.anthropic_base_url, api_key=ANTHROPIC_KEY, max_retries=0, timeout=10,
        open_telemetry={"tracer_provider": telemetry.tracer_provider},
    )
