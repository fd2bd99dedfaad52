"""Gateway settings: windows, objectives, the anomaly detector's knobs. Bad values say what to fix."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields

from . import names


class GatewayConfigError(ValueError):
    """A gateway setting is wrong; the message names it and says what is allowed."""


#: Errors that are the caller's (or the key's) fault, not the provider's: they count neither for nor
#: against a provider's health, availability or error-rate anomalies. Names are ``LLMCall.error_type``
#: values (the exception's class name for the openai and anthropic SDKs).
CLIENT_ERROR_TYPES = frozenset({
    "BadRequestError",  # 400
    "AuthenticationError",  # 401: the key's fault (see key pools)
    "PermissionDeniedError",  # 403
    "NotFoundError",  # 404 (unknown model)
    "UnprocessableEntityError",  # 422
    "ConflictError",  # 409
    "RequestTooLargeError",  # 413 (anthropic)
    "ContentTooLargeError",  # 413
    "PaymentRequiredError",  # 402: the account's fault
    "ClientClosedRequestError",  # 499
    # google-genai (error.type is Google's status)
    "INVALID_ARGUMENT", "FAILED_PRECONDITION", "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND",
    # Bedrock (error.type is the AWS error code)
    "ValidationException", "AccessDeniedException", "ResourceNotFoundException", "UnrecognizedClientException",
})


@dataclass(frozen=True)
class GatewayConfig:
    """How health, availability and anomalies are derived from finished calls (seconds unless noted)."""

    health_window: float = 300.0  # sliding window of the health score (1 s resolution)
    latency_objective: float = 10.0  # a non-streamed call is "fast" when its duration is at most this
    ttft_objective: float = 2.0  # a streamed call is "fast" when its time to first chunk is at most this
    latency_weight: float = 0.5  # how much slowness can take off the score: score = success x (1 - w + w x fast)
    availability_window: float = 86_400.0  # per model availability window (24 h)
    availability_bucket: float = 300.0  # ... kept in buckets of this size
    anomaly_interval: float = 60.0  # the detector compares each interval ...
    anomaly_baseline: int = 10  # ... with up to this many previous intervals (with calls) ...
    anomaly_min_baseline: int = 3  # ... and needs at least this many before it says anything
    anomaly_min_calls: int = 5  # an interval with fewer calls is never a latency or error-rate anomaly
    latency_factor: float = 3.0  # latency anomaly: mean normalised latency > factor x baseline
    error_rate_delta: float = 0.25  # error-rate anomaly: error ratio >= baseline + delta
    cost_factor: float = 3.0  # cost anomaly: mean cost per call > factor x baseline's
    max_models: int = 50  # request models tracked per provider; the rest count as "_other"
    client_error_types: frozenset[str] = field(default=CLIENT_ERROR_TYPES)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "client_error_types":
                if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                    raise GatewayConfigError("client_error_types must be a set of error type names, e.g. "
                                             "{'BadRequestError', 'NotFoundError'}")
                object.__setattr__(self, f.name, frozenset(value))
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise GatewayConfigError(f"{f.name} must be a number, got {value!r}")
            if f.name == "latency_weight":
                if not 0 <= value <= 1:
                    raise GatewayConfigError(f"latency_weight must be between 0 and 1, got {value}")
            elif f.name == "error_rate_delta":
                if not 0 < value <= 1:
                    raise GatewayConfigError(f"error_rate_delta must be in (0, 1], got {value}")
            elif f.name in ("anomaly_baseline", "anomaly_min_baseline", "anomaly_min_calls", "max_models"):
                if int(value) != value or value < 1:
                    raise GatewayConfigError(f"{f.name} must be a whole number >= 1, got {value}")
            elif value <= 0:
                raise GatewayConfigError(f"{f.name} must be > 0, got {value}")
        if self.anomaly_min_baseline > self.anomaly_baseline:
            raise GatewayConfigError(
                f"anomaly_min_baseline ({self.anomaly_min_baseline}) is larger than anomaly_baseline "
                f"({self.anomaly_baseline}); make it at most anomaly_baseline"
            )
        if self.availability_bucket > self.availability_window:
            raise GatewayConfigError("availability_bucket must not be larger than availability_window")

    @classmethod
    def from_env(cls, **overrides: object) -> GatewayConfig:
        """Defaults, then ``OTEL_LLM_GATEWAY_*`` variables, then ``overrides``."""
        values: dict[str, object] = {}
        for env_var, name in (
            (names.ENV_HEALTH_WINDOW, "health_window"),
            (names.ENV_LATENCY_OBJECTIVE, "latency_objective"),
            (names.ENV_TTFT_OBJECTIVE, "ttft_objective"),
            (names.ENV_ANOMALY_INTERVAL, "anomaly_interval"),
        ):
            raw = os.environ.get(env_var, "").strip()
            if not raw:
                continue
            try:
                values[name] = float(raw.removesuffix("s"))
            except ValueError:
                raise GatewayConfigError(f"{env_var}={raw!r} is not a number of seconds, e.g. {env_var}=300") from None
        values.update(overrides)
        try:
            return cls(**values)  # type: ignore[arg-type]
        except GatewayConfigError as exc:
            env_names = {"health_window": names.ENV_HEALTH_WINDOW, "latency_objective": names.ENV_LATENCY_OBJECTIVE,
                         "ttft_objective": names.ENV_TTFT_OBJECTIVE, "anomaly_interval": names.ENV_ANOMALY_INTERVAL}
            for name, env_var in env_names.items():
                if str(exc).startswith(name) and name not in overrides and env_var in os.environ:
                    raise GatewayConfigError(f"{env_var}: {exc}") from None
            raise
