"""What LLM gateways and key proxies need: provider health, circuit breakers, key pools, rate limits,
anomalies, calls in flight and streams, as OpenTelemetry metrics.

::

    telemetry = otel_llm.sdk.configure("my-gateway")
    gateway = Gateway.from_telemetry(telemetry)          # health, rate limits, anomalies, streams: derived
    breaker = gateway.watch_breaker(pybreaker.CircuitBreaker(name="anthropic"))  # a maintained breaker
    gateway.breaker_state("openai", "open")              # or your own breaker, one line per change
    pool = gateway.key_pool("openai-prod", keys)         # key pools: ids only, never the keys

Metric names, units and attributes: :mod:`otel_llm.gateway.names` (and docs/telemetry.md).
"""

from .config import CLIENT_ERROR_TYPES, GatewayConfig, GatewayConfigError
from .core import Gateway, breaker_state_name
from .keys import KeyId, KeyPool
from .ratelimits import remaining_from_headers

__all__ = [
    "CLIENT_ERROR_TYPES",
    "Gateway",
    "GatewayConfig",
    "GatewayConfigError",
    "KeyId",
    "KeyPool",
    "breaker_state_name",
    "remaining_from_headers",
]
