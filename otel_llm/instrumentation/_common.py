"""Helpers shared by the instrumentors: where a call went, and request parameters as attributes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace

from .. import semconv as sc
from ..recorder import Recorder, report_internal_error, shared_recorder

# Hosts whose provider is known; anything else keeps the instrumentor's default
# (for the openai SDK that is "openai", as the semantic conventions advise) and
# `server.address` tells where the call really went.
_KNOWN_HOSTS = {
    "api.openai.com": sc.PROVIDER_OPENAI,
    "api.anthropic.com": sc.PROVIDER_ANTHROPIC,
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.x.ai": "x_ai",
    "api.mistral.ai": "mistral_ai",
    "generativelanguage.googleapis.com": sc.PROVIDER_GCP_GEMINI,
    "api.perplexity.ai": "perplexity",
}
_KNOWN_SUFFIXES = {
    ".openai.azure.com": sc.PROVIDER_AZURE_OPENAI,
    ".cognitiveservices.azure.com": sc.PROVIDER_AZURE_OPENAI,
    ".services.ai.azure.com": "azure.ai.inference",
}
_DEFAULT_PORTS = {"https": 443, "http": 80}


def provider_overrides_from_env() -> dict[str, str]:
    """``OTEL_LLM_PROVIDERS="vllm.internal=vllm,127.0.0.1:8000=local"`` -> {host[:port]: provider}."""
    raw = os.environ.get(sc.ENV_PROVIDERS, "")
    overrides = {}
    for item in raw.split(","):
        host, sep, provider = item.strip().partition("=")
        if sep and host.strip() and provider.strip():
            overrides[host.strip().lower()] = provider.strip()
    return overrides


def server_of(url: Any) -> tuple[str | None, int | None]:
    """(host, port) of an httpx/httpx2 URL; the scheme's default port when none is given."""
    host = url.host or None
    port = url.port or _DEFAULT_PORTS.get(url.scheme)
    return host, port


class Servers:
    """(host, port, provider) of a client's base URL, worked out once per URL object: reading the
    URL's parts and matching the host cost more than the rest of a call's own bookkeeping."""

    __slots__ = ("overrides", "_cache")

    def __init__(self, overrides: Mapping[str, str]) -> None:
        self.overrides = overrides
        # id(url) -> (url, default, host, port, provider); holding the URL keeps its id unique
        self._cache: dict[int, tuple[Any, str, str | None, int | None, str]] = {}

    def of(self, client: Any, default: str) -> tuple[str | None, int | None, str]:
        url = getattr(client, "_base_url", None)  # what the SDKs' base_url property returns, minus its cost
        if url is None:
            url = client.base_url
        entry = self._cache.get(id(url))
        if entry is not None and entry[0] is url and entry[1] == default:
            return entry[2], entry[3], entry[4]
        host, port = server_of(url)
        provider = provider_for(host, port, default, self.overrides)
        if len(self._cache) >= 1024:  # bounded: clients with ever new base URLs
            self._cache.clear()
        self._cache[id(url)] = (url, default, host, port, provider)
        return host, port, provider


def provider_for(host: str | None, port: int | None, default: str, overrides: Mapping[str, str]) -> str:
    if not host:
        return default
    host = host.lower()
    if overrides:
        found = overrides.get(f"{host}:{port}") or overrides.get(host)
        if found:
            return found
    found = _KNOWN_HOSTS.get(host)
    if found:
        return found
    for suffix, provider in _KNOWN_SUFFIXES.items():
        if host.endswith(suffix):
            return provider
    return default


def given(value: Any) -> bool:
    """False for None and the SDKs' NOT_GIVEN / Omit sentinels."""
    return value is not None and type(value).__name__ not in ("NotGiven", "Omit")


def request_attributes(kwargs: Mapping[str, Any], mapping: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """Copy the scalar request parameters named in ``mapping`` (kwarg -> attribute)."""
    attributes: dict[str, Any] = {}
    for kwarg, attribute in mapping:
        value = kwargs.get(kwarg)
        if value is None or not given(value):
            continue
        if isinstance(value, (bool, int, float, str)):
            attributes[attribute] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            attributes[attribute] = list(value)
    return attributes


def get(obj: Any, name: str) -> Any:
    """Attribute or key ``name`` of a response object (pydantic model or dict), else None."""
    if obj is None:
        return None
    if type(obj) is dict:
        return obj.get(name)
    return getattr(obj, name, None)


def recorder_from(kwargs: Mapping[str, Any]) -> Recorder:
    """The recorder ``instrument(**kwargs)`` asked for: given, or the one shared by every instrumentor
    on the given providers (as under ``opentelemetry-instrument``), which also prices other
    instrumentations' GenAI spans (:mod:`otel_llm.foreign`)."""
    recorder = kwargs.get("recorder")
    if recorder is None:
        recorder = shared_recorder(kwargs.get("tracer_provider"), kwargs.get("meter_provider"),
                                   kwargs.get("logger_provider"))
        try:
            from ..foreign import install

            install(kwargs.get("tracer_provider") or trace.get_tracer_provider(), recorder)
        except Exception:
            report_internal_error("foreign span processor")
    return recorder
