"""The endpoints, as a framework-free request handler behind an ASGI app and a standalone server."""

from __future__ import annotations

import asyncio
import gzip
import html
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client.exposition import choose_encoder

from ..recorder import report_internal_error
from . import dashboard as dashboard_page
from .access import AccessControl, Denied
from .families import CATEGORIES, CATEGORY_MEANINGS, FamiliesView, FilterError, Selection, catalog, render_csv
from .summary import HealthThresholds, History, health_verdict, summary, take_snapshot

_log = logging.getLogger(__name__)

ENDPOINTS = {
    "/metrics": "Prometheus text, or OpenMetrics when the Accept header asks (filters: category=, name[]=, match[]=)",
    "/metrics/{category}": f"one category: {', '.join(CATEGORIES)}",
    "/metrics.csv": "CSV export, one row per sample (same filters)",
    "/catalog": "every metric with its unit, labels and meaning (JSON)",
    "/summary": "JSON summary: rates, latency percentiles, errors, tokens, cost, per model and provider",
    "/health": "healthy / degraded (200) or unhealthy (503) by error rate",
    "/health/detailed": "the health verdict with the numbers that decided it",
    "/dashboard": "a live page (self-contained, refreshes itself)",
}


@dataclass
class Request:
    method: str
    path: str  # below the mount point, starts with "/"
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    client: str | None = None  # the peer's address
    base: str = ""  # the mount point (for absolute links)


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def all_headers(self) -> list[tuple[str, str]]:
        return [("content-type", self.content_type), ("content-length", str(len(self.body))),
                ("cache-control", "no-store"), ("x-content-type-options", "nosniff"), *self.headers]


def _json(status: int, payload: Any) -> Response:
    return Response(status, json.dumps(payload, indent=1, allow_nan=False, default=str).encode() + b"\n",
                    "application/json")


def _text(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status, (message + "\n").encode(), headers=headers or [])


class ExpositionApp:
    """The Prometheus fallback endpoints over a ``prometheus_client`` registry (default: the global one,
    where the SDK's ``PrometheusMetricReader`` registers). An ASGI app: ``app.mount("/observability",
    ExpositionApp())`` in FastAPI/Starlette; ``serve()`` runs it standalone.

    ``gateway``: an :class:`otel_llm.gateway.Gateway` whose key ids and health figures are added to the
    JSON summary. ``access``: who may read (default: ``AccessControl.from_env()``). ``health``:
    thresholds of ``/health``. ``rate_window``: seconds behind the summary's rates and percentiles.
    ``history_step``: seconds between the dashboard's history points. ``clock``: monotonic seconds.
    """

    def __init__(
        self,
        registry: Any = None,
        *,
        gateway: Any = None,
        access: AccessControl | None = None,
        health: HealthThresholds | None = None,
        health_public: bool = True,
        rate_window: float = 60.0,
        history_step: float = 5.0,
        history_points: int = 60,
        refresh_seconds: float = 2.0,
        title: str = "otel-llm",
        clock: Callable[[], float] | None = None,
    ) -> None:
        from . import ConfigError

        if registry is None:
            from prometheus_client import REGISTRY as registry
        if not callable(getattr(registry, "collect", None)):
            raise ConfigError("registry must be a prometheus_client CollectorRegistry (anything with collect())")
        for name, value in (("rate_window", rate_window), ("history_step", history_step),
                            ("refresh_seconds", refresh_seconds)):
            if not value > 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {value}")
        if history_points < 2:
            raise ConfigError(f"history_points must be >= 2, got {history_points}")
        self.registry = registry
        self.gateway = gateway
        self.access = access if access is not None else AccessControl.from_env()
        self.health = health if health is not None else HealthThresholds()
        self.health_public = health_public
        self.rate_window = rate_window
        self.refresh_seconds = refresh_seconds
        self.title = title
        self._clock = clock or time.monotonic
        keep = max(rate_window, self.health.window, history_step * history_points)
        self._history = History(history_step, keep)
        self._history_points = history_points
        try:
            self._history.observe(take_snapshot(self.registry.collect(), self._clock()))
        except Exception:
            report_internal_error("exposition first snapshot")

    # -- the framework-free core -------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request; never raises (a bug of ours is a 500 and a log line)."""
        try:
            return self._handle(request)
        except FilterError as exc:
            return _text(400, str(exc))
        except Exception:
            report_internal_error("exposition request")
            return _text(500, "internal error while collecting metrics (logged)")

    def _handle(self, request: Request) -> Response:
        path = request.path.rstrip("/") or "/"
        if request.method not in ("GET", "HEAD"):
            return _text(405, "method not allowed; use GET", [("allow", "GET, HEAD")])
        public = path == "/health" and self.health_public
        if not public:
            denied = self.access.check_address(request.client, request.headers)
            if denied is None and not (path == "/dashboard" and self._shell_without_credentials()):
                denied = self.access.check_credentials(request.headers)
            if denied is not None:
                return self._deny(denied)
        if path == "/":
            return self._index(request)
        if path == "/metrics":
            return self._metrics(request, Selection.from_query(request.query))
        if path.startswith("/metrics/") and path.count("/") == 2:
            return self._metrics(request, Selection.from_query(request.query, path.split("/")[2]))
        if path == "/metrics.csv":
            families = Selection.from_query(request.query).apply(self._collect())
            return Response(200, render_csv(families).encode(), "text/csv; charset=utf-8",
                            [("content-disposition", 'inline; filename="metrics.csv"')])
        if path == "/catalog":
            families = Selection.from_query(request.query).apply(self._collect())
            return _json(200, {"categories": CATEGORY_MEANINGS, "metrics": catalog(families)})
        if path == "/summary":
            return _json(200, self.summary())
        if path in ("/health", "/health/detailed"):
            verdict = self.health_verdict()
            status = 503 if verdict["status"] == "unhealthy" else 200
            return _json(status, verdict if path == "/health/detailed" else {"status": verdict["status"]})
        if path == "/dashboard":
            return Response(200, dashboard_page.render(self.title, self.refresh_seconds), "text/html; charset=utf-8",
                            [("content-security-policy",
                              "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                              "connect-src 'self'; img-src 'self' data:")])
        return _text(404, f"no such endpoint {path}; see {request.base or ''}/ for the list")

    def _shell_without_credentials(self) -> bool:
        """Browsers cannot send a bearer token when navigating: with a token and no basic auth, the
        page itself (no data in it) is served, and it sends the token from its URL fragment."""
        return self.access.token is not None and self.access.basic_auth is None

    def _deny(self, denied: Denied) -> Response:
        headers = [("www-authenticate", denied.challenge)] if denied.challenge else []
        word = "unauthorized" if denied.status == 401 else "forbidden"
        return _text(denied.status, f"{word}: {denied.reason}", headers)

    def _collect(self) -> list[Any]:
        families = list(self.registry.collect())
        try:
            self._history.observe(take_snapshot(families, self._clock()))
        except Exception:
            report_internal_error("exposition snapshot")
        return families

    def _metrics(self, request: Request, selection: Selection) -> Response:
        families = selection.apply(self._collect())
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        body = encoder(FamiliesView(families))  # type: ignore[arg-type]
        headers = []
        if "gzip" in request.headers.get("accept-encoding", "") and len(body) > 1024:
            body = gzip.compress(body, compresslevel=5)
            headers.append(("content-encoding", "gzip"))
        return Response(200, body, content_type, headers)

    def summary(self) -> dict[str, Any]:
        """The JSON summary (what ``/summary`` answers)."""
        families = list(self.registry.collect())
        now = self._clock()
        current = take_snapshot(families, now)
        self._history.observe(current)
        reference = self._history.reference(now, self.rate_window)
        history = self._history.series()[-(self._history_points + 1):]
        if history and history[-1] is not current:
            history.append(current)
        health = health_verdict(current, self._history.reference(now, self.health.window), self.health)
        gateway = None
        if self.gateway is not None:
            try:
                gateway = self.gateway.snapshot()
            except Exception:
                report_internal_error("exposition gateway snapshot")
        return summary(current, reference, history, health, gateway)

    def health_verdict(self) -> dict[str, Any]:
        families = list(self.registry.collect())
        now = self._clock()
        current = take_snapshot(families, now)
        self._history.observe(current)
        return health_verdict(current, self._history.reference(now, self.health.window), self.health)

    def _index(self, request: Request) -> Response:
        rows = "".join(
            f'<li><a href="{html.escape(request.base + p.replace("{category}", "providers"))}">'
            f"{html.escape(p)}</a> {html.escape(m)}</li>"
            for p, m in ENDPOINTS.items()
        )
        body = f"<!doctype html><title>{html.escape(self.title)}</title><h1>{html.escape(self.title)}</h1><ul>{rows}</ul>"
        return Response(200, body.encode(), "text/html; charset=utf-8")

    # -- ASGI --------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = request_from_scope(scope)
        response = await asyncio.to_thread(self.handle, request)  # collecting runs callbacks: not on the loop
        await send({"type": "http.response.start", "status": response.status,
                    "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.all_headers()]})
        await send({"type": "http.response.body", "body": b"" if request.method == "HEAD" else response.body})

    def wrap(self, app: Any, prefix: str = "/observability") -> Callable[..., Any]:
        """An ASGI app that answers ``prefix/...`` itself and passes everything else to ``app``.

        Put it *outside* an app whose middleware enforces HTTPS (or rejects plain-HTTP scrapes with 403):
        the in-cluster scraper reaches the endpoints over plain HTTP, guarded by this app's own
        allowlist and credentials, while every other route keeps the app's rules.
        """
        from . import ConfigError

        prefix = "/" + prefix.strip("/")
        if prefix == "/":
            raise ConfigError("wrap(prefix=...) needs a path such as '/observability', not '/'")

        async def dispatch(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
            if scope["type"] == "http":
                path = scope.get("path", "")
                if path == prefix or path.startswith(prefix + "/"):
                    await self({**scope, "root_path": scope.get("root_path", "") + prefix}, receive, send)
                    return
            await app(scope, receive, send)

        return dispatch


def request_from_scope(scope: dict[str, Any]) -> Request:
    path = scope.get("path") or "/"
    root = scope.get("root_path") or ""
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root):] or "/"  # Starlette >= 0.35 keeps the full path and extends root_path
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
    client = scope.get("client")
    return Request(
        method=scope.get("method", "GET"),
        path=path,
        query=parse_qs((scope.get("query_string") or b"").decode("latin-1"), keep_blank_values=False),
        headers=headers,
        client=client[0] if client else None,
        base=root,
    )


# -- standalone server ---------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version, sys_version = "otel-llm-exposition", ""

    def log_message(self, format: str, *args: Any) -> None:  # no access log (it would show query strings)
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(min(length, 1 << 20))
        request = Request(
            method=self.command, path=parts.path or "/", query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in self.headers.items()}, client=self.client_address[0],
        )
        response = self.server.app.handle(request)
        self.send_response(response.status)
        for name, value in response.all_headers():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: ExpositionApp

    def server_bind(self) -> None:  # no reverse-DNS lookup of the host name
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class ExpositionServer:
    """The endpoints on their own port (a thread). ``with serve(port=9464) as server: ...``."""

    def __init__(self, app: ExpositionApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app, self.host, self._port = app, host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ExpositionServer:
        from . import ConfigError

        if self._server is None:
            try:
                self._server = _Server((self.host, self._port), _Handler)
            except OSError as exc:
                raise ConfigError(f"cannot serve the metrics endpoints on {self.host}:{self._port}: {exc.strerror}; "
                                  f"pick another port (0 picks a free one)") from exc
            self._server.app = self.app
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                            name="otel-llm-exposition", daemon=True)
            self._thread.start()
        return self

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server else self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)

    def __enter__(self) -> ExpositionServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(host: str = "127.0.0.1", port: int = 9464, app: ExpositionApp | None = None, **app_options: Any) -> ExpositionServer:
    """Start the endpoints on ``host:port`` in a background thread; returns the running server."""
    return ExpositionServer(app if app is not None else ExpositionApp(**app_options), host, port).start()
