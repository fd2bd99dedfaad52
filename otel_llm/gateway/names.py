"""Every gateway metric name, unit, attribute and well-known value in one place.

Matches docs/naming.md and docs/telemetry.md's metrics tables (tests/test_gateway.py and tests/test_docs.py check them).
Metric attributes are low-cardinality by construction: providers, request models (capped per
provider), pool groups and closed sets of values. Never a key, a user or a request id.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import semconv as sc

# -- attributes ----------------------------------------------------------------------------
PROVIDER = sc.PROVIDER_NAME  # gen_ai.provider.name
MODEL = sc.REQUEST_MODEL  # gen_ai.request.model
OPERATION = sc.OPERATION_NAME  # gen_ai.operation.name
BREAKER_STATE = "llm.circuit_breaker.state"  # the state entered (transitions)
KEY_POOL_GROUP = "llm.key_pool.group"
KEY_STATE = "llm.key_pool.key_state"
ROTATION_REASON = "llm.key_pool.rotation.reason"
VALIDATION_RESULT = "llm.key_pool.validation.result"
RATE_LIMIT_KIND = "llm.rate_limit.kind"
ANOMALY_TYPE = "llm.anomaly.type"
STREAM_OUTCOME = "llm.stream.outcome"

# -- closed sets of attribute values -------------------------------------------------------
STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN = "closed", "half_open", "open"
BREAKER_STATES = (STATE_CLOSED, STATE_HALF_OPEN, STATE_OPEN)
BREAKER_STATE_VALUE = {STATE_CLOSED: 0, STATE_HALF_OPEN: 1, STATE_OPEN: 2}  # the state gauge's value

KEY_ACTIVE, KEY_INVALID = "active", "invalid"
KEY_STATES = (KEY_ACTIVE, KEY_INVALID)
ROTATION_REASONS = ("scheduled", "invalid", "rate_limited", "manual")
VALIDATION_RESULTS = ("valid", "invalid", "error")
RATE_LIMIT_KINDS = ("requests", "tokens", "input_tokens", "output_tokens")
ANOMALY_TYPES = ("latency", "error_rate", "cost")
STREAM_OUTCOMES = ("completed", "cancelled", "failed")  # cancelled: the consumer stopped it first

OTHER_MODEL = "_other"  # request models beyond the per-provider cap are counted under this name

# -- environment variables -----------------------------------------------------------------
ENV_HEALTH_WINDOW = "OTEL_LLM_GATEWAY_HEALTH_WINDOW"
ENV_LATENCY_OBJECTIVE = "OTEL_LLM_GATEWAY_LATENCY_OBJECTIVE"
ENV_TTFT_OBJECTIVE = "OTEL_LLM_GATEWAY_TTFT_OBJECTIVE"
ENV_ANOMALY_INTERVAL = "OTEL_LLM_GATEWAY_ANOMALY_INTERVAL"
ENV_KEY_ID_SALT = "OTEL_LLM_KEY_ID_SALT"

INSTRUMENTATION_SCOPE = "otel_llm.gateway"

TOKENS_PER_SECOND_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its OTel name, instrument, unit, meaning, attributes and Prometheus names."""

    name: str
    instrument: str  # counter | updowncounter | gauge | histogram
    unit: str
    description: str
    attributes: tuple[str, ...]

    @property
    def base(self) -> str:
        return self.name.replace(".", "_")

    @property
    def exposition_name(self) -> str:
        """As the SDK's Prometheus exporter names it (counters get ``_total``; ``{...}`` units add nothing)."""
        suffix = "_per_second" if self.unit.endswith("/s") and not self.base.endswith("_per_second") else ""
        return self.base + suffix + ("_total" if self.instrument == "counter" else "")

    @property
    def mimir_name(self) -> str:
        """As Mimir's OTLP endpoint names it by default (no suffixes)."""
        return self.base

    @property
    def selector(self) -> str:
        """A PromQL name matcher that works in both naming schemes (docs/naming.md)."""
        if self.instrument == "counter":
            return f'{{__name__=~"{self.base}(_total)?"}}'
        if self.unit == "1":
            return f'{{__name__=~"{self.base}(_ratio)?"}}'
        return self.base


PROVIDER_HEALTH = MetricSpec(
    "llm.gateway.provider.health", "gauge", "1",
    "Health score of a provider in [0, 1] over the sliding health window: success ratio times a latency "
    "factor (1 - w + w x share of successful calls within the latency objective). Derived from the calls "
    "the recorder saw; client errors (400, 401, 404, cancelled) do not count.",
    (PROVIDER,),
)
MODEL_AVAILABILITY = MetricSpec(
    "llm.gateway.model.availability", "gauge", "1",
    "Share of calls to a model that did not fail by the provider's fault over the last 24 h "
    "(successes / (successes + provider failures)).",
    (PROVIDER, MODEL),
)
BREAKER_STATE_METRIC = MetricSpec(
    "llm.gateway.circuit_breaker.state", "gauge", "{state}",
    "State of a provider's circuit breaker: 0 closed, 1 half_open, 2 open.",
    (PROVIDER,),
)
BREAKER_TRANSITIONS = MetricSpec(
    "llm.gateway.circuit_breaker.transitions", "counter", "{transition}",
    "Circuit breaker state changes, by the state entered.",
    (PROVIDER, BREAKER_STATE),
)
KEY_POOL_KEYS = MetricSpec(
    "llm.gateway.key_pool.keys", "gauge", "{key}",
    "API keys in a pool by state (active, invalid). Keys themselves never appear; see the key ids.",
    (KEY_POOL_GROUP, KEY_STATE),
)
KEY_POOL_ROTATIONS = MetricSpec(
    "llm.gateway.key_pool.rotations", "counter", "{rotation}",
    "Changes of a pool's current key, by reason (scheduled, invalid, rate_limited, manual).",
    (KEY_POOL_GROUP, ROTATION_REASON),
)
KEY_POOL_VALIDATIONS = MetricSpec(
    "llm.gateway.key_pool.validations", "counter", "{validation}",
    "Key validations by result (valid, invalid, error).",
    (KEY_POOL_GROUP, VALIDATION_RESULT),
)
RATE_LIMIT_REMAINING = MetricSpec(
    "llm.gateway.rate_limit.remaining", "gauge", "{quota}",
    "Remaining requests or tokens (llm.rate_limit.kind) as last reported by the provider's rate-limit "
    "response headers (x-ratelimit-remaining-*, anthropic-ratelimit-*-remaining).",
    (PROVIDER, RATE_LIMIT_KIND),
)
ANOMALIES = MetricSpec(
    "llm.gateway.anomalies", "counter", "{anomaly}",
    "Anomalies found by the gateway's detector, by type (latency, error_rate, cost); one per provider, "
    "type and detector interval at most.",
    (PROVIDER, ANOMALY_TYPE),
)
ACTIVE_REQUESTS = MetricSpec(
    "llm.client.active_requests", "updowncounter", "{request}",
    "LLM calls in flight (started, not yet finished).",
    (PROVIDER, OPERATION),
)
ACTIVE_STREAMS = MetricSpec(
    "llm.client.active_streams", "updowncounter", "{stream}",
    "Streamed LLM calls in flight.",
    (PROVIDER, OPERATION),
)
STREAMS = MetricSpec(
    "llm.client.streams", "counter", "{stream}",
    "Finished streamed LLM calls by outcome (completed, cancelled, failed).",
    (PROVIDER, STREAM_OUTCOME),
)
STREAM_OUTPUT_SPEED = MetricSpec(
    "llm.client.stream.output_tokens_per_second", "histogram", "{token}/s",
    "Output tokens per second of completed streams, after the first chunk (output tokens / (duration - "
    "time to first chunk)).",
    (PROVIDER, MODEL),
)

METRICS: tuple[MetricSpec, ...] = (
    PROVIDER_HEALTH, MODEL_AVAILABILITY, BREAKER_STATE_METRIC, BREAKER_TRANSITIONS, KEY_POOL_KEYS,
    KEY_POOL_ROTATIONS, KEY_POOL_VALIDATIONS, RATE_LIMIT_REMAINING, ANOMALIES, ACTIVE_REQUESTS,
    ACTIVE_STREAMS, STREAMS, STREAM_OUTPUT_SPEED,
)
