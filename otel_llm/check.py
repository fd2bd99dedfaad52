"""``otel-llm check``: verify a live telemetry pipeline end to end and say what is wrong, in words.

Steps, each skipped when what it needs was not given:

1. **metrics endpoint**: the service's ``/metrics`` answers, with LLM series (a 401/403 means an
   auth rule blocks scrapers; a redirect to https, an HTTPS rule).
2. **scrape target**: Prometheus scrapes it and the target is up (its ``lastError`` explained).
3. **metric families**: ``gen_ai_*`` duration and token families exist, and under which naming
   scheme (Prometheus suffixes, or Mimir's OTLP default without them); whether the dashboards match.
4. **token usage**: token metrics are non-zero once traffic flowed.
5. **exemplars**: latency buckets carry exemplars with a trace id.
6. **canary call**: one instrumented LLM call made here (to ``--base-url``, or to the upstream
   simulator started in this process), exported by OTLP to the collector, with a seed that makes its
   span unique by ``gen_ai.*`` attributes alone, and a log record inside its trace.
7. **tempo**: the canary's trace is found by TraceQL on ``gen_ai.*`` attributes, then by id.
8. **jaeger**: the canary's trace is found by Jaeger's search on ``gen_ai.*`` tags, then by id (for teams
   that keep their traces in Jaeger rather than Tempo).
9. **loki**: the canary's logs are found by trace id.

Every step reports the queries it ran (as ``curl`` command lines; header values given with
``--header`` are never printed). The exit status is 0 when no step failed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from .traffic import DEFAULT_API_KEY_ENV, SIMULATOR_KEY, display_url

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
CANARY_ATTRIBUTE = "otel_llm.check.canary"
CANARY_SPAN = "otel-llm check canary"
DEFAULT_SERVICE = "otel-llm-check"

# What each naming scheme calls the operation-duration family (see docs/naming.md).
SUFFIXED = "prometheus"  # exposition, remote write, Prometheus OTLP, Mimir OTLP with suffixes
UNSUFFIXED = "mimir-otlp-default"  # Mimir's OTLP endpoint at its defaults
DOTTED = "utf8"  # UTF-8 names that keep the dots: not supported by the dashboards
_DURATION = {SUFFIXED: "gen_ai_client_operation_duration_seconds", UNSUFFIXED: "gen_ai_client_operation_duration"}
_COST = {SUFFIXED: "llm_client_cost_total", UNSUFFIXED: "llm_client_cost"}
_TOKENS = "gen_ai_client_token_usage"
_TTFC = {SUFFIXED: "gen_ai_client_operation_time_to_first_chunk_seconds",
         UNSUFFIXED: "gen_ai_client_operation_time_to_first_chunk"}
_SCHEME_WORDS = {
    SUFFIXED: "Prometheus names with unit suffixes (_seconds, _total): a scrape, remote write, "
              "Prometheus' OTLP receiver, or Mimir's OTLP endpoint with otel_metric_suffixes_enabled",
    UNSUFFIXED: "OTLP names without unit suffixes: Mimir's OTLP endpoint at its defaults",
}
_TAIL_SAMPLING_HINT = (
    "if the collector tail-samples (collector-config/otelcol.yaml keeps errors, slow LLM traces and 10% of the "
    f"rest), a fast successful canary is kept 1 time in 10: add a policy keeping traces with the attribute "
    f"{CANARY_ATTRIBUTE} (string_attribute, values ['.+'], enabled_regex_matching: true)"
)


# ---------------------------------------------------------------------- results


@dataclass
class Step:
    name: str
    status: str
    summary: str
    queries: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    hint: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "summary": self.summary, "queries": self.queries,
                "details": self.details, "hint": self.hint, "data": self.data}

    def lines(self) -> list[str]:
        out = [f"{self.status.upper():<5} {self.name:<17} {self.summary}"]
        out += [f"{'':<6}{detail}" for detail in self.details]
        out += [f"{'':<6}$ {query}" for query in self.queries]
        if self.hint:
            out.append(f"{'':<6}-> {self.hint}")
        return out


@dataclass
class CheckReport:
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(step.status == FAIL for step in self.steps)

    def step(self, name: str) -> Step:
        return next(step for step in self.steps if step.name == name)

    def as_dict(self) -> dict[str, Any]:
        counts = {status: sum(1 for s in self.steps if s.status == status) for status in (PASS, FAIL, WARN, SKIP)}
        return {"ok": self.ok, "counts": counts, "steps": [step.as_dict() for step in self.steps]}


@dataclass
class CheckOptions:
    metrics_url: str | None = None
    metrics_headers: dict[str, str] = field(default_factory=dict)  # only for the metrics endpoint
    prometheus_url: str | None = None  # Prometheus, or Mimir's .../prometheus
    job: str | None = None  # restrict PromQL to this job label
    tempo_url: str | None = None
    jaeger_url: str | None = None  # Jaeger's query service (UI/HTTP API), e.g. http://jaeger:16686
    loki_url: str | None = None
    loki_selector: str | None = None  # default {service_name="<service_name>"}
    headers: dict[str, str] = field(default_factory=dict)  # for Prometheus, Tempo and Loki (tenant, auth)
    canary: bool = True
    otlp_endpoint: str | None = None  # default OTEL_EXPORTER_OTLP_ENDPOINT
    otlp_protocol: str | None = None
    base_url: str | None = None  # where the canary goes; None: the upstream simulator in this process
    api_key_env: str = DEFAULT_API_KEY_ENV
    model: str = "gpt-4o-mini"
    service_name: str = DEFAULT_SERVICE
    wait: float = 30.0  # how long to look for the canary in Tempo, Jaeger and Loki
    poll_interval: float = 2.0
    timeout: float = 10.0  # per HTTP request
    require_exemplars: bool = False
    json: bool = False


# ---------------------------------------------------------------------- HTTP


@dataclass
class _Answer:
    status: int | None  # None: no HTTP answer at all (see error)
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    error: str | None = None  # why there is no answer: connection refused, TLS, timeout

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8", "replace"))

    def text(self, limit: int = 300) -> str:
        text = self.body.decode("utf-8", "replace").strip()
        return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class SearchResult:
    """How a trace store's search for the canary went: ``how`` it searched, what to say when found."""

    how: str
    found_words: str
    found: bool
    attempts: int
    waited: float


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an answer worth reporting (HTTP -> HTTPS rules)


def _reason(error: BaseException) -> str:
    reason = getattr(error, "reason", error)
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({reason.verify_message})"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error ({reason.reason or reason})"
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "timed out"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason)


class _Http:
    def __init__(self, headers: Mapping[str, str], timeout: float) -> None:
        self.headers = dict(headers)
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect)

    def get(self, url: str, params: Sequence[tuple[str, str]] | None = None, *,
            headers: Mapping[str, str] | None = None) -> _Answer:
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urllib.parse.urlencode(list(params))}"
        request = urllib.request.Request(url, headers={**(self.headers if headers is None else headers),
                                                       "User-Agent": "otel-llm-check"})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return _Answer(response.status, response.read(), dict(response.headers))
        except urllib.error.HTTPError as error:
            try:
                body = error.read()
            except Exception:  # noqa: BLE001
                body = b""
            return _Answer(error.code, body, dict(error.headers or {}))
        except (urllib.error.URLError, OSError, ValueError) as error:
            return _Answer(None, error=_reason(error))

    def curl(self, url: str, params: Sequence[tuple[str, str]] = (), *, with_headers: bool = True) -> str:
        """The request as a copyable command line; header values are never shown."""
        parts = ["curl -s" + ("G" if params else ""), _quote(url)]
        parts += [f"--data-urlencode {_quote(f'{k}={v}')}" for k, v in params]
        if with_headers and self.headers:
            parts.append("(+ " + ", ".join(f"{name}: ..." for name in self.headers) + ")")
        return " ".join(parts)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# ---------------------------------------------------------------------- the checker


class Checker:
    """Runs the steps in order; ``on_step`` sees each as it completes (the CLI prints them)."""

    def __init__(self, options: CheckOptions, *, on_step: Callable[[Step], None] | None = None,
                 id_generator: Any = None, canary_seed: int | None = None) -> None:
        self.options = options
        self.on_step = on_step
        self.id_generator = id_generator  # tests: a fixed trace id, to match recorded Tempo/Loki answers
        self.canary_seed = canary_seed
        self.http = _Http(options.headers, options.timeout)
        self.report = CheckReport()
        self.target: dict[str, Any] | None = None
        self.canary: dict[str, Any] | None = None
        prometheus = options.prometheus_url.rstrip("/") if options.prometheus_url else None
        self.prometheus = prometheus

    def run(self) -> CheckReport:
        for step in (self.metrics_endpoint, self.scrape_target, self.metric_families, self.token_usage,
                     self.exemplars, self.canary_call, self.tempo, self.jaeger, self.loki):
            try:
                result = step()
            except Exception as error:  # noqa: BLE001 - a bug here must not hide the other steps
                result = Step(step.__name__.replace("_", " "), FAIL, f"the check itself failed: {error!r}")
            self.report.steps.append(result)
            if self.on_step is not None:
                self.on_step(result)
        return self.report

    # -- 1. the service's /metrics ---------------------------------------------------------

    def metrics_endpoint(self) -> Step:
        name = "metrics endpoint"
        url = self.options.metrics_url
        if not url:
            return Step(name, SKIP, "no --metrics-url given (metrics pushed by OTLP have no endpoint to check)")
        http = _Http(self.options.metrics_headers, self.options.timeout)
        answer = http.get(url)
        queries = [http.curl(url)]
        shown = display_url(url)
        if answer.status is None:
            hint = None
            if answer.error == "connection refused":
                hint = ("is the service running? The Prometheus endpoint binds OTEL_EXPORTER_PROMETHEUS_HOST "
                        "(localhost by default: set 0.0.0.0 in a container) and OTEL_EXPORTER_PROMETHEUS_PORT (9464)")
            elif answer.error and answer.error.startswith("TLS"):
                hint = "the scraper needs the CA too: tls_config.ca_file in the scrape config"
            return Step(name, FAIL, f"{shown} does not answer: {answer.error}", queries, hint=hint)
        if answer.status in (401, 403):
            given = " with the credentials given" if self.options.metrics_headers else ""
            return Step(
                name, FAIL, f"{shown} answers {answer.status}{given}: an auth rule blocks the scraper", queries,
                hint="give the scraper credentials (Prometheus scrape_config authorization or basic_auth, Alloy "
                     "prometheus.scrape bearer_token) or exempt /metrics from the rule; check again with "
                     "--metrics-header 'Authorization: Bearer ...'",
                data={"status": answer.status},
            )
        if 300 <= answer.status < 400:
            location = answer.headers.get("Location") or answer.headers.get("location") or ""
            https = location.startswith("https://")
            return Step(
                name, FAIL,
                f"{shown} answers {answer.status}, redirecting to {display_url(location) if location else '?'}"
                + (": an HTTPS rule redirects plain-HTTP scrapes" if https else ""),
                queries,
                hint="scrape with scheme: https (and tls_config) or exempt /metrics from the redirect; Prometheus "
                     "follows redirects only with follow_redirects: true" if https else None,
                data={"status": answer.status},
            )
        if answer.status == 400 and b"https" in answer.body.lower():
            return Step(name, FAIL, f"{shown} answers 400: it speaks HTTPS, the URL says http", queries,
                        hint="scrape with scheme: https")
        if answer.status != 200:
            hint = "wrong path? the OTel Prometheus exporter serves /metrics" if answer.status == 404 else None
            return Step(name, FAIL, f"{shown} answers {answer.status}: {answer.text(120)}", queries, hint=hint,
                        data={"status": answer.status})
        text = answer.body.decode("utf-8", "replace")
        series = [line for line in text.splitlines() if line.startswith(("gen_ai_", "llm_"))]
        families = sorted({re.sub(r"(_bucket|_sum|_count|_created)?[{ ].*$", "", line) for line in series})
        data = {"status": 200, "series": len(series), "families": families}
        if not series:
            return Step(name, WARN, f"{shown} answers 200 but has no gen_ai_*/llm_* series", queries,
                        hint="histograms appear after the first LLM call: send one (otel-llm traffic); if calls were "
                             "made, is the openai SDK instrumented in that process?", data=data)
        return Step(name, PASS, f"{shown} answers 200 with {len(series)} gen_ai_*/llm_* series", queries,
                    details=[f"families: {', '.join(families)}"], data=data)

    # -- 2. the scrape target ----------------------------------------------------------------

    def scrape_target(self) -> Step:
        name = "scrape target"
        if not self.prometheus:
            return Step(name, SKIP, "no --prometheus-url given")
        if not (self.options.metrics_url or self.options.job):
            return Step(name, SKIP, "no --metrics-url or --job to look for among the scrape targets")
        url = f"{self.prometheus}/api/v1/targets"
        params = [("state", "active")]
        queries = [self.http.curl(url, params)]
        answer = self.http.get(url, params)
        if answer.status == 404:  # Mimir and other stores without a scrape manager
            return self._up_series(name, queries)
        body = self._api_data(answer)
        if isinstance(body, Step):
            body.name, body.queries = name, queries
            return body
        targets = body.get("activeTargets", [])
        matches = [t for t in targets if self._is_our_target(t)]
        if not matches and self.options.job and not self.options.metrics_url:
            pushed = self._pushed_series(queries)
            if isinstance(pushed, Step):
                pushed.name = name
                return pushed
            if pushed:
                return Step(name, SKIP, f"job {self.options.job} has {pushed} LLM series but no scrape target: its "
                                        "metrics are pushed (OTLP or remote write), nothing is scraped", queries,
                            data={"pushed_series": pushed})
        if not matches:
            known = ", ".join(f"{t.get('scrapeUrl')} (job {t.get('labels', {}).get('job')})" for t in targets[:8])
            wanted = display_url(self.options.metrics_url) if self.options.metrics_url else f"job {self.options.job}"
            return Step(name, FAIL, f"Prometheus does not scrape {wanted}", queries,
                        details=[f"scraped: {known or 'nothing'}"],
                        hint="add it to scrape_configs (collector-config/prometheus/ has one) and reload Prometheus")
        target = next((t for t in matches if t.get("health") == "up"), matches[0])
        self.target = target
        labels = target.get("labels", {})
        where = f"{target.get('scrapeUrl')} (job {labels.get('job')}, instance {labels.get('instance')})"
        data = {"health": target.get("health"), "job": labels.get("job"), "instance": labels.get("instance"),
                "last_error": target.get("lastError")}
        if target.get("health") == "up":
            return Step(name, PASS, f"{where} is up", queries, data=data)
        if target.get("health") == "unknown":
            return Step(name, WARN, f"{where} is not scraped yet", queries, hint="wait one scrape interval",
                        data=data)
        error = target.get("lastError") or ""
        return Step(name, FAIL, f"{where} is down: {error}", queries, hint=_scrape_error_hint(error), data=data)

    def _pushed_series(self, queries: list[str]) -> Any:
        """How many gen_ai_*/llm_* series of --job are stored (0: none), or a failed Step."""
        promql = f"count({{{_matchers(name_regex='gen_ai.+|llm.+', job=self.options.job)}}})"
        result = self._query(promql, queries)
        if isinstance(result, Step):
            return result
        return int(float(result[0]["value"][1])) if result else 0

    def _is_our_target(self, target: Mapping[str, Any]) -> bool:
        if self.options.job and target.get("labels", {}).get("job") != self.options.job:
            return False
        if not self.options.metrics_url:
            return True
        return _same_endpoint(str(target.get("scrapeUrl", "")), self.options.metrics_url)

    def _up_series(self, name: str, queries: list[str]) -> Step:
        matcher = _matchers(job=self.options.job, instance=_instance(self.options.metrics_url))
        promql = f"up{{{matcher}}}"
        result = self._query(promql, queries)
        if isinstance(result, Step):
            result.name = name
            return result
        if not result:
            return Step(name, SKIP, "no targets API (Mimir?) and no up series: metrics are pushed, nothing is "
                                    "scraped", queries)
        down = [r for r in result if float(r["value"][1]) == 0]
        if down:
            return Step(name, FAIL, f"{promql} is 0: the scrape fails", queries,
                        hint="see the scraper's (Alloy/agent) targets page for lastError")
        return Step(name, PASS, f"{promql} is 1", queries)

    # -- 3. metric families and the naming scheme -------------------------------------------

    def metric_families(self) -> Step:
        name = "metric families"
        if not self.prometheus:
            return Step(name, SKIP, "no --prometheus-url given")
        url = f"{self.prometheus}/api/v1/label/__name__/values"
        selector = "{" + _matchers(name_regex="gen_ai.+|llm.+", job=self.options.job) + "}"
        params = [("match[]", selector)]
        queries = [self.http.curl(url, params)]
        data = self._api_data(self.http.get(url, params))
        if isinstance(data, Step):
            data.name, data.queries = name, queries
            return data
        names = sorted(data)
        found = set(names)
        schemes = [s for s in (SUFFIXED, UNSUFFIXED)
                   if f"{_DURATION[s]}_count" in found or f"{_DURATION[s]}_bucket" in found or _COST[s] in found]
        dotted = sorted(n for n in names if "." in n)
        tokens = f"{_TOKENS}_count" in found or f"{_TOKENS}_bucket" in found
        info = {"names": names, "schemes": schemes}
        if not names:
            hint = ("the target is up but exports no LLM metrics: no LLM call since the service started?"
                    if self.target and self.target.get("health") == "up" else
                    "nothing arrived: check the scrape (above) or the OTLP path: the collector's metrics "
                    "exporter (otlp_http) must point at Mimir's http://mimir:9009/otlp or Prometheus' "
                    "http://prometheus:9090/api/v1/otlp (it appends /v1/metrics; Prometheus needs "
                    "--web.enable-otlp-receiver); its failures show in the collector's log and in "
                    "otelcol_exporter_send_failed_metric_points on its :8888")
            return Step(name, FAIL, "no gen_ai_* or llm_* metric stored" + self._job_words(), queries, hint=hint,
                        data=info)
        if dotted and not schemes:
            return Step(name, FAIL, f"metric names keep their dots ({dotted[0]}, ...): a UTF-8 translation "
                                    "strategy that the dashboards do not support", queries,
                        hint="use UnderscoreEscapingWithSuffixes (Prometheus 3 default) or Mimir's defaults; see "
                             "docs/naming.md", data={**info, "scheme": DOTTED})
        missing = []
        if not schemes:
            missing.append("gen_ai.client.operation.duration")
        if not tokens:
            missing.append("gen_ai.client.token.usage")
        if len(schemes) == 2:
            info["scheme"] = "both"
            return Step(
                name, WARN, "both naming schemes are stored: "
                            f"{_DURATION[SUFFIXED]}_* and {_DURATION[UNSUFFIXED]}_*", queries,
                details=["the same service's metrics arrive twice (OTLP push and a scrape?): every sum over both "
                         "counts twice"],
                hint="send each service's metrics down one path (docs/naming.md)", data=info)
        scheme = schemes[0] if schemes else None
        info["scheme"] = scheme
        details = []
        if scheme:
            other = UNSUFFIXED if scheme == SUFFIXED else SUFFIXED
            details.append(f"naming: {_SCHEME_WORDS[scheme]}")
            details.append("the dashboards and alert rules of this repository select both schemes "
                           "({__name__=~\"gen_ai_client_operation_duration(_seconds)?_count\"}): they match")
            details.append(f"a query written for the other scheme ({_DURATION[other]}_bucket, {_COST[other]}) "
                           f"finds nothing here")
            optional = [f for f in (f"{_TTFC[scheme]}_count", _COST[scheme]) if f not in found]
            if f"{_TTFC[scheme]}_count" in optional:
                details.append("no time-to-first-chunk yet: it exists only for streamed calls")
            if _COST[scheme] in optional:
                details.append(f"no {_COST[scheme]} yet: models without a price add no cost")
        families = [f"{_DURATION[scheme]}_*" if scheme else None, f"{_TOKENS}_*" if tokens else None]
        present = ", ".join(f for f in families if f)
        if missing:
            return Step(name, FAIL, f"missing {', '.join(missing)}" + (f" (found {present})" if present else ""),
                        queries, details=details,
                        hint="token usage needs providers that report usage (and stream usage: "
                             "OTEL_LLM_OPENAI_STREAM_USAGE)" if not tokens else None, data=info)
        return Step(name, PASS, f"{present} present", queries, details=details, data=info)

    def _job_words(self) -> str:
        return f" for job {self.options.job}" if self.options.job else ""

    # -- 4. tokens ----------------------------------------------------------------------------

    def token_usage(self) -> Step:
        name = "token usage"
        if not self.prometheus:
            return Step(name, SKIP, "no --prometheus-url given")
        queries: list[str] = []
        matcher = _matchers(job=self.options.job)
        promql = f"sum by (gen_ai_token_type) ({_TOKENS}_sum{{{matcher}}})"
        result = self._query(promql, queries)
        if isinstance(result, Step):
            result.name = name
            return result
        by_type = {r["metric"].get("gen_ai_token_type", ""): float(r["value"][1]) for r in result}
        data = {"tokens": by_type}
        if not by_type:
            calls_promql = (f"sum({{{_matchers(name_regex='gen_ai_client_operation_duration(_seconds)?_count', job=self.options.job)}}})")
            calls = self._query(calls_promql, queries)
            count = float(calls[0]["value"][1]) if isinstance(calls, list) and calls else 0.0
            data["calls"] = count
            if count > 0:
                return Step(name, FAIL, f"{count:.0f} LLM calls recorded, but no token usage", queries,
                            hint="streams report usage only with stream_options.include_usage (otel-llm asks for it "
                                 "unless OTEL_LLM_OPENAI_STREAM_USAGE=false; some servers ignore it), and some "
                                 "providers report none", data=data)
            return Step(name, FAIL, "no LLM call recorded yet" + self._job_words(), queries,
                        hint="send some: otel-llm traffic --base-url <your OpenAI-compatible URL>", data=data)
        total = sum(by_type.values())
        words = ", ".join(f"{kind or '?'} {value:.0f}" for kind, value in sorted(by_type.items()))
        if total <= 0:
            return Step(name, FAIL, f"token usage is recorded as zero ({words})", queries,
                        hint="the provider reports usage 0: is it an OpenAI-compatible server that fills usage?",
                        data=data)
        if by_type.get("input", 0) > 0 and by_type.get("output", 0) <= 0:
            return Step(name, WARN, f"tokens: {words}: no output tokens", queries,
                        details=["fine if only embeddings were called; otherwise the provider reports no "
                                 "completion tokens"], data=data)
        return Step(name, PASS, f"tokens recorded: {words}", queries, data=data)

    # -- 5. exemplars -------------------------------------------------------------------------

    def exemplars(self) -> Step:
        name = "exemplars"
        if not self.prometheus:
            return Step(name, SKIP, "no --prometheus-url given")
        url = f"{self.prometheus}/api/v1/query_exemplars"
        now = time.time()
        selector = "{" + _matchers(name_regex="gen_ai_client_operation_duration(_seconds)?_bucket",
                                   job=self.options.job) + "}"
        params = [("query", selector), ("start", f"{now - 3600:.0f}"), ("end", f"{now + 60:.0f}")]
        queries = [self.http.curl(url, params)]
        answer = self.http.get(url, params)
        data = self._api_data(answer)
        missing = WARN if not self.options.require_exemplars else FAIL
        hint = ("Prometheus stores exemplars only with --enable-feature=exemplar-storage, and they arrive only over "
                "OTLP, remote write or an OpenMetrics scrape: the OTel Python SDK's Prometheus exposition carries "
                "none (push OTLP for exemplars). Mimir drops them unless max_global_exemplars_per_user > 0.")
        if isinstance(data, Step):
            return Step(name, missing, f"no exemplars: {data.summary}", queries, hint=hint)
        found = [(series.get("seriesLabels", {}), ex) for series in data for ex in series.get("exemplars", [])]
        with_trace = [(labels, ex) for labels, ex in found
                      if ex.get("labels", {}).get("trace_id") or ex.get("labels", {}).get("traceID")]
        if not found:
            return Step(name, missing, "no exemplars on the latency buckets in the last hour", queries, hint=hint)
        if not with_trace:
            return Step(name, missing, f"{len(found)} exemplars, none with a trace_id label", queries,
                        hint="exemplars must be recorded inside the span (otel-llm does); the Grafana datasource "
                             "links them by trace_id")
        labels = with_trace[-1][1]["labels"]
        trace_id = labels.get("trace_id") or labels.get("traceID")
        return Step(name, PASS, f"{len(with_trace)} exemplars with a trace id (latest {trace_id})", queries,
                    data={"exemplars": len(with_trace), "trace_id": trace_id})

    # -- 6. the canary ------------------------------------------------------------------------

    def canary_call(self) -> Step:
        name = "canary call"
        options = self.options
        if not options.canary:
            return Step(name, SKIP, "--no-canary")
        endpoint = options.otlp_endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if not endpoint:
            status = FAIL if (options.tempo_url or options.jaeger_url or options.loki_url) else SKIP
            return Step(name, status, "no OTLP endpoint to send the canary's telemetry to",
                        hint="give --otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT): the collector your services "
                             "push to")
        with _quiet("opentelemetry"):  # the exporters' retry warnings: this step reports the outcome in words
            canary = _run_canary(options, endpoint, self.id_generator, self.canary_seed)
        self.canary = canary
        where = f"{canary.get('target', '?')}, trace {canary.get('trace_id')}"
        details = [f"sent to {where}"] if canary.get("trace_id") else []
        exported = canary.get("spans_exported", 0)
        data = {k: v for k, v in canary.items() if k not in ("local_spans",)}
        if canary.get("error"):
            return Step(name, FAIL, f"the canary call failed: {canary['error']}", details=details, data=data,
                        hint=canary.get("hint"))
        if not canary.get("llm_span"):
            return Step(name, FAIL, "the canary call made no gen_ai span: the openai SDK is not instrumented here",
                        details=details, data=data)
        lost = {k: v for k, v in canary["spans_dropped"].items() if v}
        details.append(f"span {canary['llm_span']!r} with gen_ai.request.seed={canary['seed']}; "
                       f"{exported} spans and {canary.get('logs_exported', 0)} log records exported to "
                       f"{display_url(endpoint)}")
        if lost or not exported:
            return Step(name, FAIL, f"the canary's spans did not reach {display_url(endpoint)}: "
                                    + (", ".join(f"{k} {v}" for k, v in lost.items()) or "none exported"),
                        details=details, data=data,
                        hint="is the collector listening there, with this protocol "
                             f"({canary.get('protocol')})? gRPC is 4317, http/protobuf 4318")
        return Step(name, PASS, f"{canary['llm_span']!r} made and exported", details=details, data=data)

    # -- 7. Tempo -----------------------------------------------------------------------------

    def tempo(self) -> Step:
        name = "tempo"
        options = self.options
        if not options.tempo_url:
            return Step(name, SKIP, "no --tempo-url given")
        canary = self.canary
        if not canary or not canary.get("trace_id"):
            return Step(name, FAIL, "no canary trace to look for (see the canary step)")
        base = options.tempo_url.rstrip("/")
        trace_id = canary["trace_id"]
        traceql = (f'{{ span.gen_ai.operation.name = "chat" && span.gen_ai.request.model = "{_escape(canary["model"])}" '
                   f'&& span.gen_ai.request.seed = {canary["seed"]} }}')
        url = f"{base}/api/search"
        params = [("q", traceql), ("start", f"{canary['started'] - 300:.0f}"),
                  ("end", f"{canary['ended'] + 600:.0f}"), ("limit", "20")]
        queries = [self.http.curl(url, params)]
        found, answer, attempts, waited = self._poll(lambda: self.http.get(url, params),
                                                     lambda a: _tempo_search_hit(a, trace_id))
        data: dict[str, Any] = {"trace_id": trace_id, "traceql": traceql, "attempts": attempts}
        if answer.status is None:
            return Step(name, FAIL, f"Tempo at {display_url(base)} does not answer: {answer.error}", queries,
                        data=data)
        if answer.status != 200:
            hint = ("TraceQL needs Tempo >= 2.0 with vParquet blocks" if answer.status == 400 else
                    "multi-tenant Tempo: give --header 'X-Scope-OrgID: <tenant>'" if answer.status == 401 else None)
            return Step(name, FAIL, f"Tempo answers {answer.status} to the search: {answer.text(200)}", queries,
                        hint=hint, data=data)
        search = SearchResult("TraceQL", "found by TraceQL on gen_ai.* attributes", found, attempts, waited)
        return self._trace_verdict(name, f"{base}/api/traces/{trace_id}", _tempo_trace_spans, search, queries, data,
                                   "Tempo", "Tempo", unsearchable_hint="TraceQL does not see gen_ai.* span attributes: is an "
                                   "attributes processor in the collector dropping or renaming them, or is search "
                                   "over recent data off?",
                                   missing_hint=f"{_TAIL_SAMPLING_HINT}. Tempo's receivers listen on localhost unless "
                                   "endpoint: 0.0.0.0:4317 is set; or allow more time (--wait)")

    # -- 8. Jaeger ----------------------------------------------------------------------------

    def jaeger(self) -> Step:
        name = "jaeger"
        options = self.options
        if not options.jaeger_url:
            return Step(name, SKIP, "no --jaeger-url given")
        canary = self.canary
        if not canary or not canary.get("trace_id"):
            return Step(name, FAIL, "no canary trace to look for (see the canary step)")
        base = options.jaeger_url.rstrip("/")
        shown = display_url(base)
        trace_id = canary["trace_id"]
        tags = {"gen_ai.operation.name": "chat", "gen_ai.request.model": canary["model"],
                "gen_ai.request.seed": str(canary["seed"])}
        url = f"{base}/api/traces"
        params = [("service", options.service_name), ("tags", json.dumps(tags, separators=(",", ":"))),
                  ("start", f"{int((canary['started'] - 300) * 1e6)}"), ("end", f"{int((canary['ended'] + 600) * 1e6)}"),
                  ("limit", "20")]
        queries = [self.http.curl(url, params)]
        found, answer, attempts, waited = self._poll(lambda: self.http.get(url, params),
                                                     lambda a: _jaeger_search_hit(a, trace_id))
        data: dict[str, Any] = {"trace_id": trace_id, "tags": tags, "attempts": attempts}
        api_hint = ("--jaeger-url is Jaeger's query service (the UI's address, port 16686 by default; with "
                    "--query.base-path, include that path), not its OTLP receiver (4317/4318)")
        if answer.status is None:
            return Step(name, FAIL, f"Jaeger at {shown} does not answer: {answer.error}", queries, hint=api_hint,
                        data=data)
        if answer.status != 200:
            hint = api_hint if answer.status in (404, 405) else (
                "an auth proxy in front of Jaeger: give --header 'Authorization: ...'" if answer.status in (401, 403)
                else None)
            return Step(name, FAIL, f"{shown} answers {answer.status} to Jaeger's trace search: {answer.text(200)}",
                        queries,
                        hint=hint, data=data)
        if _jaeger_traces(answer) is None:
            return Step(name, FAIL, f"{shown} answers the search, but not with Jaeger's JSON: {answer.text(80)!r}",
                        queries, hint=api_hint, data=data)
        search = SearchResult("a search on gen_ai.* tags", "found in Jaeger by gen_ai.* tags", found, attempts, waited)
        return self._trace_verdict(
            name, f"{base}/api/traces/{trace_id}", _jaeger_trace_spans, search, queries, data, "Jaeger", f"Jaeger at {shown}",
            unsearchable_hint="the search does not see the gen_ai.* span attributes: is an attributes processor in "
                              "the collector dropping or renaming them? Is the service name "
                              f"{options.service_name!r} right (--service-name)?",
            missing_hint="does the collector's traces pipeline export to this Jaeger (otlp_grpc to its port 4317, or "
                         "otlp_http to 4318)? With Tempo's exporter pointed elsewhere, Jaeger never gets the canary. "
                         f"{_TAIL_SAMPLING_HINT[0].upper()}{_TAIL_SAMPLING_HINT[1:]}; or allow more time (--wait)")

    def _trace_verdict(self, name: str, by_id_url: str, trace_spans: Callable[[Any], list[dict[str, Any]]],
                       search: SearchResult, queries: list[str], data: dict[str, Any], backend: str, store: str,
                       *, unsearchable_hint: str, missing_hint: str) -> Step:
        """The trace store's step once its search has run: the canary trace fetched by id tells a trace
        stored but not searchable, stored without its LLM span, or missing."""
        trace_id = data["trace_id"]
        queries.append(self.http.curl(by_id_url))
        by_id = self.http.get(by_id_url)
        spans = trace_spans(by_id) if by_id.status == 200 else []
        llm = [s for s in spans if "gen_ai.provider.name" in s["attributes"]]
        data["spans"] = [s["name"] for s in spans]
        if not search.found:
            waited_words = f"not found by {search.how} within {search.waited:.0f}s ({search.attempts} searches)"
            if llm:
                return Step(name, FAIL, f"the canary trace is stored (by id) but {waited_words}", queries,
                            hint=unsearchable_hint, data=data)
            if by_id.status == 200 and spans:
                return Step(name, FAIL, f"{waited_words}; the trace is stored without its gen_ai span", queries,
                            details=[f"spans: {', '.join(data['spans'])}"], data=data,
                            hint=f"the LLM span was dropped between the collector and {backend} (a filter processor?)")
            return Step(name, FAIL, f"the canary trace {trace_id} is not in {store}: {waited_words}", queries,
                        hint=missing_hint, data=data)
        details = [f"found by {search.how} after {search.waited:.0f}s ({search.attempts} searches)"]
        if llm:
            details.append(_llm_span_summary(llm[0]))
            return Step(name, PASS, f"canary trace {trace_id} {search.found_words}", queries, details=details,
                        data=data)
        return Step(name, WARN, f"canary trace {trace_id} found by search, but fetching it by id answered "
                                f"{by_id.status}", queries, details=details, data=data)

    # -- 9. Loki ------------------------------------------------------------------------------

    def loki(self) -> Step:
        name = "loki"
        options = self.options
        if not options.loki_url:
            return Step(name, SKIP, "no --loki-url given")
        canary = self.canary
        if not canary or not canary.get("trace_id"):
            return Step(name, FAIL, "no canary trace to look for (see the canary step)")
        base = options.loki_url.rstrip("/")
        selector = options.loki_selector or f'{{service_name="{options.service_name}"}}'
        trace_id = canary["trace_id"]
        logql = f'{selector} | trace_id="{trace_id}"'
        url = f"{base}/loki/api/v1/query_range"
        window = [("start", f"{int((canary['started'] - 300) * 1e9)}"), ("end", f"{int((canary['ended'] + 600) * 1e9)}")]
        params = [("query", logql), *window, ("limit", "20"), ("direction", "backward")]
        queries = [self.http.curl(url, params)]
        found, answer, attempts, waited = self._poll(lambda: self.http.get(url, params), _loki_lines)
        data: dict[str, Any] = {"trace_id": trace_id, "logql": logql, "attempts": attempts}
        if answer.status is None:
            return Step(name, FAIL, f"Loki at {display_url(base)} does not answer: {answer.error}", queries, data=data)
        if answer.status != 200:
            hint = "multi-tenant Loki: give --header 'X-Scope-OrgID: <tenant>'" if answer.status == 401 else None
            return Step(name, FAIL, f"Loki answers {answer.status}: {answer.text(200)}", queries, hint=hint, data=data)
        if found:
            lines = found
            data["lines"] = len(lines)
            return Step(name, PASS, f"{len(lines)} log lines with trace_id {trace_id}", queries,
                        details=[f"e.g. {lines[0][:160]!r}"], data=data)
        # Not found: do the service's logs arrive at all?
        plain_params = [("query", selector), *window, ("limit", "5"), ("direction", "backward")]
        queries.append(self.http.curl(url, plain_params))
        plain = _loki_lines(self.http.get(url, plain_params))
        if plain:
            return Step(name, FAIL, f"logs of {selector} arrive, but none with trace_id {trace_id} "
                                    f"(within {waited:.0f}s)", queries,
                        hint="trace_id is structured metadata: Loki needs allow_structured_metadata: true and OTLP "
                             "ingestion (http://loki:3100/otlp); filter it after the selector, never inside {}",
                        data=data)
        return Step(name, FAIL, f"no logs of {selector} within {waited:.0f}s", queries,
                    hint="is the collector's logs pipeline exporting to Loki (otlp_http to http://loki:3100/otlp)? "
                         "Does Loki index service_name (it does by default for OTLP)?", data=data)

    # -- helpers ------------------------------------------------------------------------------

    def _poll(self, fetch: Callable[[], _Answer], hit: Callable[[_Answer], Any]) -> tuple[Any, _Answer, int, float]:
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            answer = fetch()
            found = hit(answer) if answer.status == 200 else None
            waited = time.monotonic() - started
            if found or answer.status != 200 or waited + self.options.poll_interval > self.options.wait:
                return found, answer, attempts, waited
            time.sleep(self.options.poll_interval)

    def _api_data(self, answer: _Answer) -> Any:
        """The ``data`` of a Prometheus API answer, or a failed Step saying why there is none."""
        if answer.status is None:
            return Step("", FAIL, f"Prometheus at {display_url(self.prometheus or '')} does not answer: {answer.error}")
        try:
            body = answer.json()
        except ValueError:
            body = None
        if answer.status in (401, 403):
            return Step("", FAIL, f"Prometheus answers {answer.status}",
                        hint="give credentials or a tenant: --header 'Authorization: ...' / 'X-Scope-OrgID: ...'")
        if answer.status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error") if isinstance(body, dict) else answer.text(200)
            return Step("", FAIL, f"Prometheus answers {answer.status}: {error}")
        return body.get("data")

    def _query(self, promql: str, queries: list[str]) -> Any:
        url = f"{self.prometheus}/api/v1/query"
        params = [("query", promql)]
        queries.append(self.http.curl(url, params))
        data = self._api_data(self.http.get(url, params))
        if isinstance(data, Step):
            data.queries = queries
            return data
        return data.get("result", [])


# ---------------------------------------------------------------------- helpers


def _matchers(*, name_regex: str | None = None, job: str | None = None, instance: str | None = None) -> str:
    parts = []
    if name_regex:
        parts.append(f'__name__=~"{name_regex}"')
    if job:
        parts.append(f'job="{_escape(job)}"')
    if instance:
        parts.append(f'instance="{_escape(instance)}"')
    return ", ".join(parts)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _instance(url: str | None) -> str | None:
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


_LOCAL = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


def _same_endpoint(a: str, b: str) -> bool:
    pa, pb = urllib.parse.urlsplit(a), urllib.parse.urlsplit(b)

    def host(parts: urllib.parse.SplitResult) -> str:
        name = (parts.hostname or "").lower()
        return "localhost" if name in _LOCAL else name

    def port(parts: urllib.parse.SplitResult) -> int:
        return parts.port or (443 if parts.scheme == "https" else 80)

    return host(pa) == host(pb) and port(pa) == port(pb) and (pa.path or "/metrics") == (pb.path or "/metrics")


def _scrape_error_hint(error: str) -> str | None:
    lowered = error.lower()
    if "401" in lowered or "403" in lowered or "unauthorized" in lowered or "forbidden" in lowered:
        return ("an auth rule blocks the scraper: add authorization/basic_auth to the scrape config, or exempt "
                "/metrics from the rule")
    if "http response to https client" in lowered:
        return "the scrape config says https, the endpoint speaks plain HTTP: use scheme: http"
    if "x509" in lowered or "certificate" in lowered or "tls" in lowered:
        return "TLS: give the scraper the CA (tls_config.ca_file) or fix the certificate's name"
    if "redirect" in lowered:
        return "a rule redirects the scrape (HTTP to HTTPS?): use scheme: https, or follow_redirects: true"
    if "connection refused" in lowered:
        return ("nothing listens there: the service binds OTEL_EXPORTER_PROMETHEUS_HOST (localhost by default; "
                "0.0.0.0 in a container) and OTEL_EXPORTER_PROMETHEUS_PORT")
    if "deadline" in lowered or "timeout" in lowered:
        return "the endpoint is too slow or unreachable (network policy, firewall)"
    if "404" in lowered:
        return "wrong metrics_path: the OTel Prometheus exporter serves /metrics"
    return None


def _normal_trace_id(value: Any) -> str:
    return str(value or "").lower().lstrip("0")


def _tempo_search_hit(answer: _Answer, trace_id: str) -> bool:
    try:
        traces = answer.json().get("traces") or []
    except (ValueError, AttributeError):
        return False
    return any(_normal_trace_id(t.get("traceID")) == _normal_trace_id(trace_id) for t in traces)


def _any_value(value: Mapping[str, Any]) -> Any:
    for key in ("stringValue", "intValue", "doubleValue", "boolValue"):
        if key in value:
            return value[key]
    if "arrayValue" in value:
        return [_any_value(v) for v in value["arrayValue"].get("values", [])]
    return None


def _tempo_trace_spans(answer: _Answer) -> list[dict[str, Any]]:
    """Spans of ``GET /api/traces/<id>`` (``batches``; v2's ``trace.resourceSpans`` too), flattened."""
    try:
        body = answer.json()
    except ValueError:
        return []
    batches = body.get("batches") or (body.get("trace") or {}).get("resourceSpans") or body.get("resourceSpans") or []
    spans = []
    for batch in batches:
        for scope in batch.get("scopeSpans") or batch.get("instrumentationLibrarySpans") or []:
            for span in scope.get("spans", []):
                attributes = {a["key"]: _any_value(a.get("value", {})) for a in span.get("attributes", [])}
                spans.append({"name": span.get("name"), "attributes": attributes})
    return spans


def _jaeger_traces(answer: _Answer) -> list[dict[str, Any]] | None:
    """The traces of a Jaeger ``/api/traces`` answer (its ``data``), or None when it is not Jaeger's JSON."""
    try:
        body = answer.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or "data" not in body:
        return None
    return [t for t in body.get("data") or [] if isinstance(t, dict)]



def _llm_span_summary(span: dict[str, Any]) -> str:
    """One line for a found canary span: its name and the gen_ai.* attributes the dashboards group by."""
    attributes = span["attributes"]
    shown = {k: attributes[k] for k in ("gen_ai.provider.name", "gen_ai.request.model", "gen_ai.response.model",
                                        "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens") if k in attributes}
    return f"span {span['name']!r}: " + ", ".join(f"{k}={v}" for k, v in shown.items())

def _jaeger_search_hit(answer: _Answer, trace_id: str) -> bool:
    return any(_normal_trace_id(t.get("traceID")) == _normal_trace_id(trace_id) for t in _jaeger_traces(answer) or [])


def _jaeger_trace_spans(answer: _Answer) -> list[dict[str, Any]]:
    """Spans of Jaeger's ``GET /api/traces/<id>`` with their tags as attributes."""
    spans = []
    for trace in _jaeger_traces(answer) or []:
        for span in trace.get("spans") or []:
            attributes = {t.get("key"): t.get("value") for t in span.get("tags") or [] if isinstance(t, dict)}
            spans.append({"name": span.get("operationName"), "attributes": attributes})
    return spans


def _loki_lines(answer: _Answer) -> list[str]:
    if answer.status != 200:
        return []
    try:
        result = answer.json()["data"]["result"]
    except (ValueError, KeyError, TypeError):
        return []
    return [value[1] for stream in result for value in stream.get("values", []) if len(value) >= 2]


# ---------------------------------------------------------------------- the canary


def _run_canary(options: CheckOptions, endpoint: str, id_generator: Any, seed: int | None) -> dict[str, Any]:
    """One instrumented chat completion inside a parent span, with a log record, exported by OTLP."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from .instrumentation.openai import OpenAIInstrumentor
    from .recorder import Recorder
    from .sdk import ConfigError, configure

    seed = seed if seed is not None else random.SystemRandom().randrange(100_000_000, 999_999_999)
    canary_id = uuid.uuid4().hex
    outcome: dict[str, Any] = {"seed": seed, "model": options.model, "canary_id": canary_id,
                               "otlp_endpoint": display_url(endpoint)}
    try:
        import openai
    except ImportError:
        return {**outcome, "error": "the openai SDK is not installed: pip install 'otel-llm[openai]'"}
    instrumentor = OpenAIInstrumentor()
    if instrumentor.is_instrumented_by_opentelemetry:
        return {**outcome, "error": "the openai SDK is already instrumented in this process"}
    simulator = None
    if options.base_url:
        api_key = os.environ.get(options.api_key_env, "")
        if not api_key:
            return {**outcome, "error": f"no API key: set {options.api_key_env} (any value for servers without auth)"}
        base_url = options.base_url
        outcome["target"] = display_url(base_url)
    else:
        from .demo.upstream import UpstreamSimulator

        simulator = UpstreamSimulator().start()
        base_url, api_key = simulator.base_url, os.environ.get(options.api_key_env) or SIMULATOR_KEY
        outcome["target"] = f"{base_url} (upstream simulator in this process)"
    try:
        telemetry = configure(
            options.service_name, traces_exporter="otlp", metrics_exporter="otlp", logs_exporter="otlp",
            otlp_endpoint=options.otlp_endpoint, otlp_protocol=options.otlp_protocol, instrument=False,
            set_global=False, log_shutdown_timeout_ms=int(options.timeout * 1000),
        )
    except ConfigError as error:
        if simulator is not None:
            simulator.stop()
        return {**outcome, "error": str(error)}
    outcome["protocol"] = telemetry.otlp_protocol
    if id_generator is not None:
        telemetry.tracer_provider.id_generator = id_generator
    local = InMemorySpanExporter()
    telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(local))
    recorder = Recorder(tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider)
    tracer = telemetry.tracer_provider.get_tracer("otel_llm.check")
    logger = logging.getLogger("otel_llm.check.canary")
    logger.setLevel(logging.INFO)
    logger.propagate = False  # its records are for Loki, not for this terminal
    if telemetry.logs is not None:
        telemetry.logs.attach(logger)
    instrumentor.instrument(recorder=recorder)
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=options.timeout)
    outcome["started"] = time.time()
    try:
        with tracer.start_as_current_span(CANARY_SPAN, attributes={CANARY_ATTRIBUTE: canary_id}) as parent:
            outcome["trace_id"] = format(parent.get_span_context().trace_id, "032x")
            logger.info("otel-llm check canary %s: calling %s", canary_id, options.model)
            try:
                completion = client.chat.completions.create(
                    model=options.model, seed=seed, max_tokens=16,
                    messages=[{"role": "user", "content": "otel-llm check canary: answer with one word."}],
                )
                usage = getattr(completion, "usage", None)
                logger.info("otel-llm check canary %s: answered by %s, %s tokens", canary_id,
                            getattr(completion, "model", "?"), getattr(usage, "total_tokens", "?"))
            except Exception as error:  # noqa: BLE001 - reported, not raised
                outcome["error"] = f"{type(error).__name__}: {_scrub(str(error))[:200]}"
                if getattr(error, "status_code", None) in (401, 403):
                    outcome["hint"] = f"the provider rejected the API key in {options.api_key_env}"
                elif isinstance(error, openai.APIConnectionError):
                    outcome["hint"] = f"nothing answers at {outcome['target']}"
                logger.warning("otel-llm check canary %s failed: %s", canary_id, type(error).__name__)
    finally:
        outcome["ended"] = time.time()
        instrumentor.uninstrument()
        telemetry.shutdown()  # flushes spans, metrics and logs (bounded) and records what got through
        if simulator is not None:
            simulator.stop()
    spans = list(local.get_finished_spans())
    llm = [s for s in spans if s.instrumentation_scope and s.instrumentation_scope.name == "otel_llm"]
    if llm:
        outcome["llm_span"] = llm[0].name
    outcome["spans_exported"] = sum(p.counts.get("exported") for p in telemetry.span_processors)
    outcome["spans_dropped"] = telemetry.spans_dropped()
    if telemetry.logs is not None:
        outcome["logs_exported"] = sum(p.counts.get("exported") for p in telemetry.logs.processors)
        outcome["logs_dropped"] = telemetry.logs.dropped()
    return outcome


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _scrub(text: str) -> str:
    from .redact import scrub_secrets

    return scrub_secrets(text)


# ---------------------------------------------------------------------- entry point


def run_check(options: CheckOptions, out: TextIO | None = None, *, id_generator: Any = None,
              canary_seed: int | None = None) -> tuple[int, CheckReport]:
    """Run every step, print as they complete (or JSON at the end); returns (exit status, report)."""
    out = out or sys.stdout
    if not any((options.metrics_url, options.prometheus_url, options.tempo_url, options.jaeger_url, options.loki_url)):
        print("error: nothing to check: give --metrics-url, --prometheus-url, --tempo-url, --jaeger-url or --loki-url",
              file=sys.stderr)
        return 2, CheckReport()

    def show(step: Step) -> None:
        if not options.json:
            print("\n".join(step.lines()), file=out, flush=True)

    if not options.json:
        print("otel-llm check", file=out, flush=True)
    checker = Checker(options, on_step=None if options.json else show, id_generator=id_generator,
                      canary_seed=canary_seed)
    report = checker.run()
    if options.json:
        print(json.dumps(report.as_dict(), indent=2, default=str), file=out, flush=True)
    else:
        counts = report.as_dict()["counts"]
        verdict = "OK" if report.ok else "FAILED"
        print(f"\n{verdict}: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[WARN]} warnings, "
              f"{counts[SKIP]} skipped", file=out, flush=True)
    return (0 if report.ok else 1), report
