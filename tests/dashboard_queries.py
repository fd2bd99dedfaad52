"""Every PromQL expression the product ships, and a check that each returns data.

Reusable outside pytest:

    from tests.dashboard_queries import extract_queries, queries_without_data
    for empty in queries_without_data("http://127.0.0.1:9090"):
        print(empty.dashboard, "|", empty.panel, "|", empty.expr)

What is collected (``extract_queries``):

* every Prometheus target of every panel of ``grafana/dashboards/*.json``
  (rows and collapsed rows included),
* every Prometheus query variable of those dashboards (``label_values(sel, label)``
  is checked as ``group by (label) (sel)``, which is what Grafana asks for),
* every recording and alerting rule of ``grafana/rules/*.yaml``,
* the traces-to-metrics queries of the Tempo datasource in
  ``grafana/provisioning/datasources/*.yaml``.

Grafana's variables are substituted first (``$__rate_interval``, ``$__interval``,
``$__range``, ``$provider``, ``$model`` ... see ``DEFAULT_VARIABLES``); an
unknown variable is an error, not a silent pass.

"Returns data" means at least one series with a finite value. An alert's
expression normally returns nothing (it is quiet), so an alert is checked through
its *probes*: the expression with its threshold comparisons taken off
(``x > 0.05`` -> ``x``), both sides of ``and``/``unless``/``or``, and the argument
of ``absent(...)``/``absent_over_time(...)``. A probe that returns nothing is an
alert that can never fire (wrong metric or label name), or an absence alert that
fires for good.

``optional_source(expr)`` names the producer of series that the instrumented
service itself does not emit (the gateway metrics of issue 5, the collector's
own telemetry and its spanmetrics connector); callers decide whether those may
be empty.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

import promql_parser
import yaml

REPO = Path(__file__).resolve().parents[1]
DASHBOARDS = REPO / "grafana" / "dashboards"
RULES = REPO / "grafana" / "rules"
DATASOURCES = REPO / "grafana" / "provisioning" / "datasources"

# Values for Grafana's built-in and the dashboards' own variables. A multi-value
# variable set to "All" is replaced by its allValue (`.+` in our dashboards).
DEFAULT_VARIABLES: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "provider": ".+",
    "model": ".+",
    # Tempo's traces-to-metrics links: the span's tags as label matchers.
    "__tags": 'gen_ai_provider_name=~".+"',
}

# Series not produced by the instrumented service itself. Key: who produces them.
OPTIONAL_SOURCES: Mapping[str, re.Pattern[str]] = {
    "gateway metrics (issue 5: llm.gateway.*, llm.client.active_requests)": re.compile(
        r"llm_gateway_|llm_client_active_requests"
    ),
    "OpenTelemetry Collector (own telemetry, spanmetrics connector)": re.compile(
        r'otelcol_|traces_span_metrics_|job=~?"otelcol'
    ),
}

_COMPARISONS = {">", "<", ">=", "<=", "==", "!="}
_SET_OPERATORS = {"and", "or", "unless"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\[\[(\w+)(?::\w+)?\]\]|\$(\w+)")


@dataclass(frozen=True)
class Query:
    """One PromQL expression shipped in a dashboard, rule file or datasource."""

    source: str  # path relative to the repository
    dashboard: str  # dashboard title, rule group, or datasource name
    panel: str  # panel title, variable name, rule name
    kind: str  # "panel" | "variable" | "recording" | "alert" | "datasource"
    expr: str  # as written in the file
    rendered: str = ""  # variables substituted
    probes: tuple[str, ...] = field(default=())  # what must return data

    def __str__(self) -> str:
        return f"{self.source}: {self.dashboard} / {self.panel} ({self.kind})"


class EmptyPanel(NamedTuple):
    """A query that returned no data: (dashboard, panel title, expr)."""

    dashboard: str
    panel: str
    expr: str


class QueryError(ValueError):
    pass


# ---------------------------------------------------------------------- extraction


def render(expr: str, variables: Mapping[str, str] = DEFAULT_VARIABLES) -> str:
    """Substitute Grafana variables ($x, ${x}, ${x:fmt}, [[x]]); unknown ones raise QueryError."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in variables:
            raise QueryError(f"unknown variable ${name} in {expr!r}")
        return variables[name]

    return _VARIABLE.sub(replace, expr)


def probes_of(expr: str, kind: str) -> tuple[str, ...]:
    """The queries that must return data for ``expr`` to be useful (see module doc)."""
    if kind != "alert":
        return (expr,)
    return tuple(dict.fromkeys(_alert_probes(promql_parser.parse(expr))))


def _alert_probes(node: object) -> list[str]:
    if isinstance(node, promql_parser.ParenExpr):
        return _alert_probes(node.expr)
    if isinstance(node, promql_parser.BinaryExpr):
        op = str(node.op)
        if op in _SET_OPERATORS:
            return _alert_probes(node.lhs) + _alert_probes(node.rhs)
        if op in _COMPARISONS:
            sides = [side for side in (node.lhs, node.rhs) if not _is_scalar(side)]
            return [probe for side in sides for probe in _alert_probes(side)]
    if isinstance(node, promql_parser.Call) and node.func.name in ("absent", "absent_over_time"):
        (argument,) = node.args
        inner = str(argument)
        return [f"present_over_time({inner})" if node.func.name == "absent_over_time" else inner]
    return [str(node)]


def _is_scalar(node: object) -> bool:
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    return isinstance(node, (promql_parser.NumberLiteral, promql_parser.StringLiteral))


def _variable_query(query: str) -> str | None:
    """The PromQL that a Grafana Prometheus query variable runs, or None if it runs none."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query, re.S)
    if match:
        selector, label = match.groups()
        return f"group by ({label}) ({selector})"
    match = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.S)
    if match:
        return match.group(1)
    return None  # label_names(), metrics(), label_values(label): no selector to check


def _walk_panels(panels: Iterable[dict]) -> Iterable[dict]:
    for panel in panels:
        yield panel
        yield from _walk_panels(panel.get("panels", []))


def _is_prometheus(datasource: object, variables: Mapping[str, dict]) -> bool:
    if isinstance(datasource, dict):
        ds_type = datasource.get("type")
        uid = str(datasource.get("uid", ""))
        if ds_type:
            return ds_type == "prometheus"
        name = uid.strip("${}")
        return variables.get(name, {}).get("query") == "prometheus"
    return False


def dashboard_queries(path: Path) -> list[Query]:
    board = json.loads(path.read_text())
    source = str(path.relative_to(REPO))
    title = board["title"]
    variables = {v["name"]: v for v in board.get("templating", {}).get("list", [])}
    found: list[Query] = []
    for variable in variables.values():
        if variable.get("type") != "query" or not _is_prometheus(variable.get("datasource"), variables):
            continue
        definition = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        promql = _variable_query(definition)
        if promql is not None:
            found.append(Query(source, title, f"${variable['name']}", "variable", promql))
    for panel in _walk_panels(board.get("panels", [])):
        for target in panel.get("targets", []):
            datasource = target.get("datasource", panel.get("datasource"))
            if "expr" in target and _is_prometheus(datasource, variables):
                found.append(Query(source, title, panel.get("title", f"panel {panel.get('id')}"), "panel", target["expr"]))
    return found


def rule_queries(path: Path) -> list[Query]:
    document = yaml.safe_load(path.read_text())
    source = str(path.relative_to(REPO))
    found = []
    for group in document.get("groups", []):
        for rule in group.get("rules", []):
            kind = "alert" if "alert" in rule else "recording"
            found.append(Query(source, group["name"], rule.get("alert") or rule["record"], kind, rule["expr"].strip()))
    return found


def datasource_queries(path: Path) -> list[Query]:
    document = yaml.safe_load(path.read_text())
    source = str(path.relative_to(REPO))
    found = []
    for datasource in document.get("datasources", []):
        links = datasource.get("jsonData", {}).get("tracesToMetrics", {})
        for query in links.get("queries", []):
            # provisioning files escape `$` as `$$`
            found.append(Query(source, datasource["name"], query["name"], "datasource", query["query"].replace("$$", "$")))
    return found


def extract_queries(
    root: Path = REPO,
    variables: Mapping[str, str] = DEFAULT_VARIABLES,
) -> list[Query]:
    """Every PromQL expression of every dashboard, rule file and datasource, rendered and probed.

    Raises QueryError naming the query when a variable is unknown or the PromQL does not parse.
    """
    grafana = root / "grafana"
    raw: list[Query] = []
    for path in sorted((grafana / "dashboards").glob("*.json")):
        raw += dashboard_queries(path)
    for path in sorted((grafana / "rules").glob("*.y*ml")):
        raw += rule_queries(path)
    for path in sorted((grafana / "provisioning" / "datasources").glob("*.y*ml")):
        raw += datasource_queries(path)
    rendered = []
    for query in raw:
        try:
            text = render(query.expr, variables)
            promql_parser.parse(text)
            probes = probes_of(text, query.kind)
            for probe in probes:
                promql_parser.parse(probe)
        except (ValueError, QueryError) as error:
            raise QueryError(f"{query}: {error}\n  expr: {query.expr}") from error
        rendered.append(Query(query.source, query.dashboard, query.panel, query.kind, query.expr, text, probes))
    return rendered


def optional_source(expr: str) -> str | None:
    """Who produces the series of ``expr`` when it is not the instrumented service, else None."""
    for producer, pattern in OPTIONAL_SOURCES.items():
        if pattern.search(expr):
            return producer
    return None


# ---------------------------------------------------------------------- execution


def instant_query(base_url: str, promql: str, at: float | None = None, timeout: float = 10.0) -> list[dict]:
    """GET {base_url}/api/v1/query; the result list. ``base_url`` is Prometheus' root, or
    Mimir's ``http://host:9009/prometheus``."""
    params = {"query": promql}
    if at is not None:
        params["time"] = f"{at:.3f}"
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as error:
        body = json.loads(error.read().decode() or "{}")
    if body.get("status") != "success":
        raise QueryError(f"{body.get('errorType')}: {body.get('error')} (query: {promql})")
    data = body["data"]
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    return data["result"]


def has_data(result: Sequence[dict]) -> bool:
    """At least one series with a finite sample (NaN, as from histogram_quantile of nothing, is no data)."""
    for series in result:
        values = series.get("values") or ([series["value"]] if "value" in series else [])
        if any(math.isfinite(float(value)) for _, value in values):
            return True
    return False


def queries_without_data(
    base_url: str,
    queries: Sequence[Query] | None = None,
    at: float | None = None,
) -> list[EmptyPanel]:
    """Run every probe of every query against ``base_url``; the (dashboard, panel, expr) that returned nothing.

    A query the server rejects is reported too (its expr then starts with "ERROR").
    """
    if queries is None:
        queries = extract_queries()
    empty = []
    for query in queries:
        for probe in query.probes:
            try:
                ok = has_data(instant_query(base_url, probe, at))
            except QueryError as error:
                empty.append(EmptyPanel(query.dashboard, query.panel, f"ERROR {error}"))
                continue
            if not ok:
                empty.append(EmptyPanel(query.dashboard, query.panel, probe))
    return empty


def format_report(empty: Sequence[EmptyPanel]) -> str:
    return "\n".join(f"  - {e.dashboard} / {e.panel}:\n      {' '.join(e.expr.split())}" for e in empty)
