"""Metric families read from a Prometheus registry: categories, ``name[]`` / ``match[]`` filters,
Prometheus text / OpenMetrics / CSV rendering, and the self-describing catalog."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.metrics_core import Metric

from .. import semconv as sc
from ..gateway import names as gw

# -- categories ----------------------------------------------------------------------------------
# A family belongs to every category whose pattern matches its name; ``target_info`` (the resource)
# belongs to all. ``system`` is everything that is not an LLM metric (process, runtime, HTTP server,
# the SDK's own metrics).
_LLM = re.compile(r"^(gen_ai_|llm_)")
CATEGORY_PATTERNS: dict[str, re.Pattern[str]] = {
    "providers": re.compile(r"^(llm_gateway_(provider_|circuit_breaker_|rate_limit_|key_pool_|anomalies)"
                            r"|llm_client_active_requests)"),
    "models": re.compile(r"^(gen_ai_client_|llm_gateway_model_|llm_client_cost|llm_client_stream_output"
                         r"|gen_ai_server_|llm_server_(token_usage|cost))"),
    "business": re.compile(r"^(llm_client_cost|gen_ai_client_token_usage|llm_gateway_key_pool_"
                           r"|llm_server_(cost|token_usage))"),
    "performance": re.compile(r"^(gen_ai_client_operation_|llm_client_(active_|stream)|llm_gateway_anomalies"
                              r"|llm_gateway_provider_health|http_server_|gen_ai_server_|llm_server_(active_|streams))"),
}
CATEGORIES = ("system", *CATEGORY_PATTERNS)
CATEGORY_MEANINGS = {
    "system": "process, runtime, HTTP server and SDK metrics (everything that is not an LLM metric)",
    "providers": "provider health, circuit breakers, rate limits, key pools, anomalies, calls in flight",
    "models": "per-model GenAI client metrics (latency, tokens, time to first chunk, cost, availability) and "
              "the server side's (requests served, time to first token, time per output token, tokens, cost)",
    "business": "tokens, cost and key pools",
    "performance": "latency, time to first chunk, calls in flight, streams, anomalies, health",
}


def categories_of(family: str) -> list[str]:
    if family in ("target", "target_info"):  # the resource (an info family named "target")
        return list(CATEGORIES)
    found = [name for name, pattern in CATEGORY_PATTERNS.items() if pattern.search(family)]
    if not _LLM.search(family):
        found.insert(0, "system")
    return found


class FilterError(ValueError):
    """A bad ``category``, ``name[]`` or ``match[]``; the message says what is allowed."""


# -- series selectors (``match[]``), as Prometheus' federation endpoint takes them --------------
_SELECTOR = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(?:\{(.*)\})?\s*$", re.S)
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)', re.S)


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str
    regex: re.Pattern[str] | None

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit


def parse_selector(text: str) -> list[Matcher]:
    """``name{label="v", other=~"re"}`` -> matchers (``__name__`` for the name)."""
    found = _SELECTOR.match(text)
    if not found or not text.strip():
        raise FilterError(f"match[]={text!r} is not a series selector; write e.g. "
                          f'match[]=gen_ai_client_token_usage_sum or match[]={{__name__=~"llm_gateway_.+"}}')
    name, body = found.group(1), found.group(2)
    matchers: list[Matcher] = []
    if name:
        matchers.append(Matcher("__name__", "=", name, None))
    rest = (body or "").strip()
    while rest:
        item = _MATCHER.match(rest)
        if not item:
            raise FilterError(f"match[]={text!r}: cannot read the label matcher {rest!r}; write label=\"value\" "
                              f"(operators = != =~ !~)")
        label, op, raw, _ = item.groups()
        value = raw.encode().decode("unicode_escape") if "\\" in raw else raw
        try:
            regex = re.compile(value) if op in ("=~", "!~") else None
        except re.error as exc:
            raise FilterError(f"match[]={text!r}: bad regular expression {value!r}: {exc}") from None
        matchers.append(Matcher(label, op, value, regex))
        rest = rest[item.end():].strip()
    if not any(m.op in ("=", "=~") and not (m.regex and m.regex.fullmatch("")) for m in matchers):
        raise FilterError(f"match[]={text!r} matches everything; name a metric or give a non-empty matcher")
    return matchers


@dataclass(frozen=True)
class Selection:
    """What a request asked for: categories, metric names and series selectors (a union); empty = all."""

    categories: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    selectors: tuple[tuple[Matcher, ...], ...] = ()

    @classmethod
    def from_query(cls, params: dict[str, list[str]], path_category: str | None = None) -> Selection:
        categories = [c for value in params.get("category", []) for c in value.split(",") if c]
        if path_category:
            categories.append(path_category)
        unknown = [c for c in categories if c not in CATEGORIES]
        if unknown:
            raise FilterError(f"unknown category {', '.join(unknown)}; use one of {', '.join(CATEGORIES)}")
        names = [n for key in ("name[]", "name") for value in params.get(key, []) for n in value.split(",") if n]
        selectors = [tuple(parse_selector(v)) for key in ("match[]", "match") for v in params.get(key, [])]
        return cls(tuple(categories), tuple(names), tuple(selectors))

    @property
    def everything(self) -> bool:
        return not (self.categories or self.names or self.selectors)

    def apply(self, families: Iterable[Metric]) -> list[Metric]:
        if self.everything:
            return list(families)
        chosen = []
        for family in families:
            if family.name in ("target", "target_info") and (self.categories or self.names):
                chosen.append(family)
                continue
            whole = (any(c in categories_of(family.name) for c in self.categories)
                     or any(n == family.name or any(s.name == n for s in family.samples) for n in self.names))
            if whole:
                chosen.append(family)
                continue
            if self.selectors:
                samples = [s for s in family.samples
                           if any(all(m.matches({**s.labels, "__name__": s.name}) for m in sel)
                                  for sel in self.selectors)]
                if samples:
                    chosen.append(copy_family(family, samples))
        return chosen


def copy_family(family: Metric, samples: Sequence[Any]) -> Metric:
    copy = Metric(family.name, family.documentation, family.type, family.unit)
    copy.samples = list(samples)
    return copy


class FamiliesView:
    """A fixed list of families with a ``collect()``: what prometheus_client's encoders render."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> list[Metric]:
        return self.families


def render_csv(families: Iterable[Metric]) -> str:
    """One row per sample: ``metric,type,unit,sample,labels,value`` (labels as a JSON object)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["metric", "type", "unit", "sample", "labels", "value"])
    for family in families:
        for sample in family.samples:
            writer.writerow([family.name, family.type, family.unit, sample.name,
                             json.dumps(dict(sorted(sample.labels.items())), ensure_ascii=False),
                             repr(float(sample.value))])
    return out.getvalue()


# -- the catalog: every metric with its unit, labels and meaning ---------------------------------
_SCOPE_LABELS = {"otel_scope_name", "otel_scope_version", "otel_scope_schema_url"}


@dataclass(frozen=True)
class KnownMetric:
    otel_name: str
    instrument: str
    unit: str
    description: str
    attributes: tuple[str, ...]
    prometheus: str  # the family name the SDK's Prometheus exporter gives it


def _known() -> list[KnownMetric]:
    common = (sc.OPERATION_NAME, sc.PROVIDER_NAME, sc.REQUEST_MODEL, sc.RESPONSE_MODEL, sc.SERVER_ADDRESS,
              sc.SERVER_PORT)
    recorder = [
        KnownMetric(sc.METRIC_OPERATION_DURATION[0], "histogram", "s", sc.METRIC_OPERATION_DURATION[2],
                    (*common, sc.ERROR_TYPE), "gen_ai_client_operation_duration_seconds"),
        KnownMetric(sc.METRIC_TOKEN_USAGE[0], "histogram", "{token}", sc.METRIC_TOKEN_USAGE[2],
                    (*common, sc.TOKEN_TYPE), "gen_ai_client_token_usage"),
        KnownMetric(sc.METRIC_TIME_TO_FIRST_CHUNK[0], "histogram", "s", sc.METRIC_TIME_TO_FIRST_CHUNK[2], common,
                    "gen_ai_client_operation_time_to_first_chunk_seconds"),
        KnownMetric(sc.METRIC_TIME_PER_OUTPUT_CHUNK[0], "histogram", "s", sc.METRIC_TIME_PER_OUTPUT_CHUNK[2], common,
                    "gen_ai_client_operation_time_per_output_chunk_seconds"),
        KnownMetric(sc.METRIC_COST[0], "counter", sc.METRIC_COST[1], sc.METRIC_COST[2], common, "llm_client_cost"),
    ]
    served = (sc.OPERATION_NAME, sc.PROVIDER_NAME, sc.HTTP_ROUTE, sc.REQUEST_MODEL, sc.RESPONSE_MODEL)
    server = [
        KnownMetric(sc.METRIC_SERVER_REQUEST_DURATION[0], "histogram", "s", sc.METRIC_SERVER_REQUEST_DURATION[2],
                    (*served, sc.ERROR_TYPE), "gen_ai_server_request_duration_seconds"),
        KnownMetric(sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN[0], "histogram", "s",
                    sc.METRIC_SERVER_TIME_TO_FIRST_TOKEN[2], served, "gen_ai_server_time_to_first_token_seconds"),
        KnownMetric(sc.METRIC_SERVER_TIME_PER_OUTPUT_TOKEN[0], "histogram", "s",
                    sc.METRIC_SERVER_TIME_PER_OUTPUT_TOKEN[2], served, "gen_ai_server_time_per_output_token_seconds"),
        KnownMetric(sc.METRIC_SERVER_TOKEN_USAGE[0], "histogram", "{token}", sc.METRIC_SERVER_TOKEN_USAGE[2],
                    (*served, sc.TOKEN_TYPE), "llm_server_token_usage"),
        KnownMetric(sc.METRIC_SERVER_ACTIVE_REQUESTS[0], "updowncounter", sc.METRIC_SERVER_ACTIVE_REQUESTS[1],
                    sc.METRIC_SERVER_ACTIVE_REQUESTS[2], served[:3], "llm_server_active_requests"),
        KnownMetric(sc.METRIC_SERVER_ACTIVE_STREAMS[0], "updowncounter", sc.METRIC_SERVER_ACTIVE_STREAMS[1],
                    sc.METRIC_SERVER_ACTIVE_STREAMS[2], served[:4], "llm_server_active_streams"),
        KnownMetric(sc.METRIC_SERVER_STREAMS[0], "counter", sc.METRIC_SERVER_STREAMS[1], sc.METRIC_SERVER_STREAMS[2],
                    (*served[:3], sc.STREAM_OUTCOME), "llm_server_streams"),
        KnownMetric(sc.METRIC_SERVER_COST[0], "counter", sc.METRIC_SERVER_COST[1], sc.METRIC_SERVER_COST[2], served,
                    "llm_server_cost"),
    ]
    gateway = [
        KnownMetric(m.name, m.instrument, m.unit, m.description, m.attributes,
                    m.exposition_name.removesuffix("_total"))
        for m in gw.METRICS
    ]
    return recorder + server + gateway


KNOWN_METRICS = _known()


def catalog(families: Iterable[Metric]) -> list[dict[str, Any]]:
    """Every live family (and every known otel-llm metric not emitted yet, ``present: false``)."""
    known = {k.prometheus: k for k in KNOWN_METRICS}
    entries = []
    seen = set()
    for family in families:
        labels = sorted({label for s in family.samples for label in s.labels} - _SCOPE_LABELS - {"le", "quantile"})
        spec = known.get(family.name)
        seen.add(family.name)
        series = {tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")) for s in family.samples}
        entries.append({
            "name": family.name,
            "samples": sorted({s.name for s in family.samples}),
            "type": family.type,
            "unit": spec.unit if spec else family.unit,
            "labels": labels,
            "meaning": spec.description if spec else family.documentation,
            "otel_name": spec.otel_name if spec else None,
            "otel_attributes": list(spec.attributes) if spec else None,
            "categories": categories_of(family.name),
            "series": len(series),
            "present": True,
        })
    for spec in KNOWN_METRICS:
        if spec.prometheus not in seen:
            entries.append({
                "name": spec.prometheus, "samples": [], "type": spec.instrument, "unit": spec.unit,
                "labels": sorted(a.replace(".", "_") for a in spec.attributes), "meaning": spec.description,
                "otel_name": spec.otel_name, "otel_attributes": list(spec.attributes),
                "categories": categories_of(spec.prometheus), "series": 0, "present": False,
            })
    return entries
