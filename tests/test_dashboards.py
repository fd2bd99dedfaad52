"""Offline checks of grafana/: dashboards JSON, datasource provisioning, and every query in them.

Executing the PromQL against a real Prometheus is tests/test_dashboards_live.py;
here every expression is parsed (promql-parser), every variable resolved, and
the naming rule of docs/naming.md enforced: our metrics are selected in a way
that matches both naming schemes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.dashboard_queries import DEFAULT_VARIABLES, extract_queries

REPO = Path(__file__).resolve().parents[1]
DASHBOARD_FILES = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = REPO / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
RULE_FILES = sorted((REPO / "grafana" / "rules").glob("*.yaml"))

# Span attributes the instrumentation writes (tests check TraceQL only uses these).
SPAN_ATTRIBUTES = {
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
    "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "error.type", "llm.cost.usd",
    "server.address", "server.port", "gen_ai.response.finish_reasons", "gen_ai.response.id",
}
TRACEQL_INTRINSICS = {"duration", "status", "name", "kind"}

# Our metrics, by the base name both schemes share, and the suffix only one scheme has.
SUFFIXED_METRICS = {
    "gen_ai_client_operation_duration": "_seconds",
    "gen_ai_client_operation_time_to_first_chunk": "_seconds",
    "gen_ai_client_operation_time_per_output_chunk": "_seconds",
    "llm_client_cost": "_total",
    "llm_gateway_circuit_breaker_transitions": "_total",
    "llm_gateway_key_pool_rotations": "_total",
    "llm_gateway_key_pool_validations": "_total",
    "llm_gateway_anomalies": "_total",
    "llm_client_streams": "_total",
    "llm_gateway_provider_health": "_ratio",
    "llm_gateway_model_availability": "_ratio",
    "gen_ai_server_request_duration": "_seconds",
    "gen_ai_server_time_to_first_token": "_seconds",
    "gen_ai_server_time_per_output_token": "_seconds",
    "llm_server_cost": "_total",
    "llm_server_streams": "_total",
}


def provisioned_uids() -> dict[str, str]:
    return {d["uid"]: d["type"] for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}


def walk(panels: list[dict]):
    for panel in panels:
        yield panel
        yield from walk(panel.get("panels", []))


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_is_valid_and_self_consistent(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["uid"].startswith("otel-llm-") and board["title"] and board["schemaVersion"] >= 39
    panels = list(walk(board["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    uids = provisioned_uids()
    for variable in variables.values():
        if variable["type"] == "datasource":  # its default must be a provisioned datasource of its type
            assert uids.get(variable["current"]["value"]) == variable["query"], variable["name"]
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel.get("title"), f"untitled panel {panel['id']}"
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        for target in [panel] + panel.get("targets", []):
            datasource = target.get("datasource")
            if not datasource:
                continue
            uid = datasource["uid"]
            name = uid.strip("${}")
            resolved = variables[name]["current"]["value"] if uid.startswith("$") else uid
            assert uids.get(resolved) == datasource["type"], f"{path.name} / {panel['title']}: datasource {uid} is not provisioned"
        assert panel.get("targets"), f"{path.name} / {panel['title']}: no query"


def test_dashboard_uids_are_unique() -> None:
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARD_FILES]
    assert len(uids) == len(set(uids)) == 3


def test_every_promql_expression_parses_with_known_variables() -> None:
    queries = extract_queries()  # raises, naming the query, on a parse error or unknown variable
    kinds = {q.kind for q in queries}
    assert kinds == {"panel", "variable", "recording", "alert", "datasource"}
    panels = [q for q in queries if q.kind == "panel"]
    assert len(panels) >= 25
    # The overview has every panel the issue asks for.
    titles = {q.panel for q in panels if q.dashboard == "LLM overview"}
    for needed in ("Request rate", "Error rate", "Call duration p50 / p95 / p99 (all selected)",
                   "Time to first token p50 / p95 by model", "Tokens per minute by type", "Cost per hour by model"):
        assert needed in titles
    for query in panels:
        if query.dashboard in ("LLM overview", "LLM traces") and "gen_ai_client" in query.expr:
            assert '$provider' in query.expr and '$model' in query.expr, f"{query}: not filtered by $provider/$model"


def test_metrics_are_selected_in_both_naming_schemes() -> None:
    """The static half of the naming proof: no query names a metric in one scheme only."""
    texts = [q.expr for q in extract_queries()]
    for text in texts:
        for base, suffix in SUFFIXED_METRICS.items():
            # a bare name with or without the suffix is a one-scheme selector
            for name in (base, base + suffix):
                for bucket in ("", "_bucket", "_sum", "_count"):
                    bare = re.findall(rf"(?<!\w){re.escape(name + bucket)}(?![\w(])", text)
                    assert not bare, f"one-scheme metric name {name + bucket} in {text!r}: use {{__name__=~\"{base}({suffix})?...\"}}"


TRACEQL = re.compile(r"\{(.*)\}", re.S)


def traceql_targets():
    for path in DASHBOARD_FILES:
        board = json.loads(path.read_text())
        variables = {v["name"] for v in board["templating"]["list"]}
        for panel in walk(board["panels"]):
            for target in panel.get("targets", []):
                if target.get("queryType") == "traceql":
                    yield path.name, panel["title"], target, variables


def test_traceql_queries_search_gen_ai_span_attributes() -> None:
    found = list(traceql_targets())
    assert len(found) >= 3
    for name, title, target, variables in found:
        query = target["query"]
        assert query.count("{") - query.count("${") == query.count("}") - query.count("${"), f"{name} / {title}: unbalanced"
        assert query.count("(") == query.count(")")
        for variable in re.findall(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", query):
            assert (variable[0] or variable[1]) in variables, f"{name} / {title}: unknown variable {variable}"
        for attribute in re.findall(r"\bspan\.([\w.]+)", query):
            assert attribute in SPAN_ATTRIBUTES, f"{name} / {title}: span.{attribute} is not written by otel_llm"
        for intrinsic in re.findall(r"\bspan:(\w+)", query):
            assert intrinsic in TRACEQL_INTRINSICS
        assert "span.gen_ai." in query and target["datasource"]["type"] == "tempo"


def test_datasource_links_close_the_loop() -> None:
    datasources = {d["uid"]: d for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    mimir, tempo, loki = datasources["mimir"]["jsonData"], datasources["tempo"]["jsonData"], datasources["loki"]["jsonData"]
    assert {d["name"] for d in mimir["exemplarTraceIdDestinations"]} == {"trace_id", "traceID"}
    assert {d["datasourceUid"] for d in mimir["exemplarTraceIdDestinations"]} == {"tempo"}
    assert tempo["tracesToLogsV2"]["datasourceUid"] == "loki"
    assert tempo["tracesToMetrics"]["datasourceUid"] == "mimir" and tempo["serviceMap"]["datasourceUid"] == "mimir"
    assert {t["key"] for t in tempo["tracesToMetrics"]["tags"]} == {"gen_ai.provider.name", "gen_ai.request.model"}
    (derived,) = loki["derivedFields"]
    assert (derived["datasourceUid"], derived["matcherType"], derived["matcherRegex"]) == ("tempo", "label", "trace_id")
    # Grafana expands $VAR in provisioning files: every literal $ must be written $$.
    for match in re.finditer(r"(?<!\$)\$(?!\$)", DATASOURCES.read_text()):
        pytest.fail(f"single $ at offset {match.start()} in {DATASOURCES.name}: write $$")


def test_checker_knows_every_variable_the_dashboards_use() -> None:
    for path in DASHBOARD_FILES:
        board = json.loads(path.read_text())
        for variable in board["templating"]["list"]:
            if variable["type"] == "query":
                assert variable["name"] in DEFAULT_VARIABLES, f"add ${variable['name']} to DEFAULT_VARIABLES"
