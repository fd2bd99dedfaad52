"""OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental: the names merged changes renamed after v1.41.0."""

from __future__ import annotations

from typing import Any

import pytest

from otel_llm import semconv as sc
from otel_llm.server._routes import route_table
from otel_llm.server.recorder import ServerRecorder

OLD, NEW = "gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_write.input_tokens"


@pytest.mark.parametrize(("value", "latest"), [
    (None, False), ("", False), ("http", False), ("gen_ai_latest_experimental", True),
    ("http, GEN_AI_LATEST_EXPERIMENTAL", True), ("database/dup,gen_ai_latest_experimental", True),
])
def test_the_opt_in_is_read_like_the_official_packages_read_it(value: str | None, latest: bool) -> None:
    environ = {} if value is None else {sc.ENV_SEMCONV_STABILITY_OPT_IN: value}
    assert sc.latest_opted_in(environ) is latest


def test_the_mapping_holds_the_merged_rename_only() -> None:
    assert sc.LATEST_NAMES == {OLD: NEW}
    assert sc.attribute_names(False) == {OLD: OLD}
    assert sc.attribute_names(True) == {OLD: NEW}


def _client_span(telemetry: Any) -> Any:
    recorder = telemetry.recorder()
    with recorder.start_call("chat", "anthropic", "claude-x") as call:
        call.set_usage(100, 5, cache_read_tokens=10, cache_creation_tokens=40)
    (span,) = telemetry.spans()
    return span


def _server_span(telemetry: Any) -> Any:
    from otel_llm.server._parse import ResponseFields

    recorder = ServerRecorder(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    request = recorder.start(route_table(["/v1"])["/v1/messages"], "POST", [])
    response = ResponseFields()
    response.input_tokens, response.output_tokens, response.cache_creation_tokens = 100, 5, 40
    request.finish("completed", response)
    (span,) = telemetry.spans()
    return span


@pytest.mark.parametrize("side", [_client_span, _server_span])
def test_default_is_v1_41_0(telemetry: Any, monkeypatch: pytest.MonkeyPatch, side: Any) -> None:
    monkeypatch.delenv(sc.ENV_SEMCONV_STABILITY_OPT_IN, raising=False)
    span = side(telemetry)
    assert span.attributes[OLD] == 40 and NEW not in span.attributes


@pytest.mark.parametrize("side", [_client_span, _server_span])
def test_opted_in_emits_the_latest_name_only(telemetry: Any, monkeypatch: pytest.MonkeyPatch, side: Any) -> None:
    monkeypatch.setenv(sc.ENV_SEMCONV_STABILITY_OPT_IN, "gen_ai_latest_experimental")
    span = side(telemetry)
    assert span.attributes[NEW] == 40 and OLD not in span.attributes
