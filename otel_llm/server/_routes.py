"""Which request paths are LLM API routes, and what each one is."""

from __future__ import annotations

from collections.abc import Iterable

from .. import semconv as sc

# API kinds: how the request and the response of a route are read.
CHAT_COMPLETIONS = "chat_completions"
COMPLETIONS = "completions"
EMBEDDINGS = "embeddings"
RESPONSES = "responses"
MESSAGES = "messages"

# Path below the prefix -> (gen_ai.operation.name, gen_ai.provider.name, API kind).
_SUFFIXES = {
    "/chat/completions": (sc.OP_CHAT, sc.PROVIDER_OPENAI, CHAT_COMPLETIONS),
    "/completions": (sc.OP_TEXT_COMPLETION, sc.PROVIDER_OPENAI, COMPLETIONS),
    "/embeddings": (sc.OP_EMBEDDINGS, sc.PROVIDER_OPENAI, EMBEDDINGS),
    "/responses": (sc.OP_CHAT, sc.PROVIDER_OPENAI, RESPONSES),
    "/messages": (sc.OP_CHAT, sc.PROVIDER_ANTHROPIC, MESSAGES),
}

DEFAULT_PREFIXES = ("/v1",)


class Route:
    """One recognised route: its path (``http.route``), operation, provider and API kind."""

    __slots__ = ("path", "operation", "provider", "api", "base_attributes")

    def __init__(self, path: str, operation: str, provider: str, api: str) -> None:
        self.path = path
        self.operation = operation
        self.provider = provider
        self.api = api
        self.base_attributes = {sc.OPERATION_NAME: operation, sc.PROVIDER_NAME: provider, sc.HTTP_ROUTE: path}

    def __repr__(self) -> str:
        return f"Route({self.path!r}, {self.operation!r}, {self.provider!r})"


def normalize_prefix(prefix: str) -> str:
    prefix = str(prefix).strip()
    if not prefix or prefix == "/":
        return ""
    return "/" + prefix.strip("/")


def route_table(prefixes: Iterable[str], provider: str | None = None) -> dict[str, Route]:
    """Exact paths (with and without a trailing slash) -> Route. ``provider`` replaces the provider
    name of every route (a server that serves one model family through both APIs, say)."""
    table: dict[str, Route] = {}
    for prefix in prefixes:
        base = normalize_prefix(prefix)
        for suffix, (operation, route_provider, api) in _SUFFIXES.items():
            path = base + suffix
            route = Route(path, operation, provider or route_provider, api)
            table[path] = route
            table[path + "/"] = route
    return table


def prefixes_from_env(raw: str | None) -> tuple[str, ...]:
    """``OTEL_LLM_SERVER_PREFIXES``: comma-separated prefixes; unset or empty: ``/v1``."""
    if not raw or not raw.strip():
        return DEFAULT_PREFIXES
    return tuple(normalize_prefix(part) for part in raw.split(",") if part.strip()) or DEFAULT_PREFIXES
