"""The demo's small LLM gateway: a FastAPI service in front of two providers.

``POST /v1/chat`` routes a model to its provider (``gpt-*`` -> openai, ``claude-*`` -> anthropic)
through the instrumented SDKs, with an API-key pool per provider, a pybreaker circuit breaker per
provider and a fallback to the other provider. ``/observability/...`` serves the Prometheus fallback
endpoints and the live ``/dashboard``. FastAPI's server spans (opentelemetry-instrumentation-fastapi)
are the parents of the LLM spans.

A scripted :class:`Scenario` repeats every two minutes, so every gateway metric has live data: an
OpenAI key revoked by the "provider" (then re-issued), an Anthropic outage that opens its breaker (and
lets it recover), an Anthropic latency spike, and a cost spike of long documents sent to gpt-4.1.
The upstream simulator accepts any key and fails by model name, so :class:`ChaosTransport` plays the
provider side between the gateway's SDK clients and the simulator: it drops a revoked key's
credentials (the simulator answers 401), renames the model of outage requests to the simulator's
failing models (it answers 529/500, rate-limit headers included) and delays spike requests.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import (
    BaseModel,  # a dependency of the openai and anthropic SDKs, and of FastAPI
)

from .workload import TrafficLoop

OPENAI, ANTHROPIC = "openai", "anthropic"
# Fake keys shaped like real ones: the tests prove none of them reaches any signal or endpoint.
OPENAI_KEYS = ("sk-demo-openai-key-A-0000000000000001", "sk-demo-openai-key-B-0000000000000002",
               "sk-demo-openai-key-C-0000000000000003")
ANTHROPIC_KEYS = ("sk-ant-demo-key-A-00000000000000000001", "sk-ant-demo-key-B-00000000000000000002")
REVOKED_KEY = OPENAI_KEYS[1]
FALLBACK = {
    "claude-haiku-4-5": "gpt-4o-mini", "claude-sonnet-4-5": "gpt-4o", "claude-opus-4-5": "gpt-4.1",
    "gpt-4o-mini": "claude-haiku-4-5", "gpt-4o": "claude-sonnet-4-5", "gpt-4.1-mini": "claude-haiku-4-5",
    "gpt-4.1": "claude-sonnet-4-5",
}
TRAFFIC_MIX = (("claude-haiku-4-5", 0.45), ("claude-sonnet-4-5", 0.15), ("gpt-4o-mini", 0.25), ("gpt-4.1-mini", 0.15))
_FAILING_MODEL = {ANTHROPIC: "error-529", OPENAI: "error-500"}  # the simulator's overloaded / server error
_WORDS = ("quarterly revenue grew while support tickets about latency fell after the gateway rollout and the "
          "team documented every fallback path for the on-call rotation").split()


def provider_of(model: str) -> str:
    return ANTHROPIC if model.startswith("claude") else OPENAI


@dataclass(frozen=True)
class Phase:
    name: str
    start: float  # seconds into the cycle
    end: float
    provider: str


class Scenario:
    """The demo's script, repeating every ``cycle`` seconds from construction."""

    PHASES = (
        Phase("key revoked", 6, 70, OPENAI),  # OpenAI key B is revoked, re-issued at 70 s
        Phase("outage", 20, 36, ANTHROPIC),  # Anthropic answers 529 overloaded: its breaker opens, then recovers
        Phase("latency spike", 46, 56, ANTHROPIC),
        Phase("cost spike", 62, 68, OPENAI),  # a batch of long documents to gpt-4.1
    )

    def __init__(self, clock: Callable[[], float] = time.monotonic, cycle: float = 120.0,
                 latency_spike: float = 0.6, revoked_keys: Sequence[str] = (REVOKED_KEY,)) -> None:
        self._clock, self.cycle, self.latency_spike = clock, cycle, latency_spike
        self._start = clock()
        self.revoked_keys = frozenset(revoked_keys)

    def at(self) -> float:
        return (self._clock() - self._start) % self.cycle

    def active(self, name: str, provider: str | None = None) -> bool:
        t = self.at()
        return any(p.name == name and p.start <= t < p.end and (provider is None or p.provider == provider)
                   for p in self.PHASES)

    def is_revoked(self, key: str) -> bool:
        return key in self.revoked_keys and self.active("key revoked")

    def outage(self, provider: str) -> bool:
        return self.active("outage", provider)

    def extra_latency(self, provider: str) -> float:
        return self.latency_spike if self.active("latency spike", provider) else 0.0

    def cost_spike(self) -> bool:
        return self.active("cost spike")

    def describe(self) -> str:
        return ", ".join(f"{p.name} ({p.provider}) {p.start:g}-{p.end:g}s" for p in self.PHASES) + \
            f", every {self.cycle:g}s"


def _httpx2() -> Any:
    import httpx2

    return httpx2


def chaos_transport(scenario: Scenario) -> Any:
    """An ``httpx2`` transport playing the providers' side of the scenario (see the module doc)."""
    httpx2 = _httpx2()

    class ChaosTransport(httpx2.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx2.HTTPTransport()

        def handle_request(self, request: Any) -> Any:
            provider = ANTHROPIC if request.url.path.startswith("/v1/messages") else OPENAI
            key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
            drop_key = bool(key) and scenario.is_revoked(key.strip())
            body = request.read()
            new_body = body
            if scenario.outage(provider) and body:
                try:
                    payload = json.loads(body)
                    if isinstance(payload, dict) and "model" in payload:
                        payload["model"] = _FAILING_MODEL[provider]
                        new_body = json.dumps(payload).encode()
                except ValueError:
                    pass
            delay = scenario.extra_latency(provider)
            if delay:
                time.sleep(delay)
            if drop_key or new_body is not body:
                dropped = {"content-length", *(("authorization", "x-api-key") if drop_key else ())}
                headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in dropped]
                request = httpx2.Request(request.method, request.url, headers=headers, content=new_body,
                                         extensions=request.extensions)
            return self.inner.handle_request(request)

        def close(self) -> None:
            self.inner.close()

    return ChaosTransport()


class ChatRequest(BaseModel):
    """The body of ``POST /v1/chat``."""

    model: str
    prompt: str
    stream: bool = False
    max_tokens: int = 64


class NoActiveKey(Exception):
    """Every key of the pool is invalid."""


class Unavailable(Exception):
    """Every provider for this model failed or has an open breaker."""


class RotatingKeys:
    """The gateway's own key rotation (what a key proxy does), reported to the gateway's KeyPool."""

    def __init__(self, pool: Any, keys: Sequence[str]) -> None:
        self.pool, self.keys = pool, list(keys)
        self._index = 0
        self._lock = threading.Lock()

    def current(self) -> str:
        with self._lock:
            for step in range(len(self.keys)):
                key = self.keys[(self._index + step) % len(self.keys)]
                if self.pool.state(key) != "invalid":
                    self._index = (self._index + step) % len(self.keys)
                    return key
        raise NoActiveKey(f"no active key in pool {self.pool.group}")

    def rotate(self, reason: str, if_current: str | None = None) -> None:
        with self._lock:
            if if_current is not None and self.keys[self._index] != if_current:
                return  # another request rotated already
            self._index = (self._index + 1) % len(self.keys)
        self.pool.rotated(reason)

    def invalid(self, key: str) -> None:
        self.pool.mark_invalid(key)
        self.rotate("invalid", if_current=key)


class DemoGateway:
    """The routing, keys, breakers and fallback of the demo gateway (no HTTP: see ``create_app``)."""

    def __init__(self, telemetry: Any, upstream: Any, scenario: Scenario, gateway: Any,
                 breaker_reset: float = 4.0) -> None:
        import anthropic
        import openai
        import pybreaker

        self.scenario, self.gateway = scenario, gateway
        httpx2 = _httpx2()
        self._http = httpx2.Client(transport=chaos_transport(scenario), timeout=30)
        self.openai = openai.OpenAI(base_url=upstream.base_url, api_key=OPENAI_KEYS[0], max_retries=0,
                                    http_client=self._http)
        self.anthropic = anthropic.Anthropic(base_url=upstream.anthropic_base_url, api_key=ANTHROPIC_KEYS[0],
                                             max_retries=0, http_client=self._http)
        self.keys = {
            OPENAI: RotatingKeys(gateway.key_pool("openai-demo", OPENAI_KEYS), OPENAI_KEYS),
            ANTHROPIC: RotatingKeys(gateway.key_pool("anthropic-demo", ANTHROPIC_KEYS), ANTHROPIC_KEYS),
        }
        client_errors = [openai.AuthenticationError, openai.BadRequestError, openai.NotFoundError,
                         anthropic.AuthenticationError, anthropic.BadRequestError, anthropic.NotFoundError, NoActiveKey]
        self.breakers = {
            provider: gateway.watch_breaker(pybreaker.CircuitBreaker(
                fail_max=4, reset_timeout=breaker_reset, exclude=client_errors, name=provider))
            for provider in (OPENAI, ANTHROPIC)
        }
        self._auth_errors = (openai.AuthenticationError, anthropic.AuthenticationError)
        self._rate_limited = (openai.RateLimitError, anthropic.RateLimitError)
        self._api_errors = (openai.APIError, anthropic.APIError)
        self._breaker_open = pybreaker.CircuitBreakerError

    def close(self) -> None:
        self._http.close()

    def chat(self, model: str, prompt: str, stream: bool = False, max_tokens: int = 64) -> dict[str, Any]:
        attempts = [model] + ([FALLBACK[model]] if model in FALLBACK else [])
        last: BaseException | None = None
        for index, candidate in enumerate(attempts):
            provider = provider_of(candidate)
            try:
                with self.breakers[provider].calling():
                    text = self._send(provider, candidate, prompt, stream, max_tokens)
                return {"provider": provider, "model": candidate, "fallback": index > 0, "text": text}
            except self._breaker_open as exc:
                last = exc
            except (*self._api_errors, NoActiveKey) as exc:
                last = exc
        raise Unavailable(f"{model}: every provider failed ({type(last).__name__})")

    def _send(self, provider: str, model: str, prompt: str, stream: bool, max_tokens: int) -> str:
        keys = self.keys[provider]
        for _ in range(len(keys.keys)):
            key = keys.current()
            try:
                return self._call(provider, key, model, prompt, stream, max_tokens)
            except self._auth_errors:
                keys.invalid(key)  # the provider rejected it: next key
            except self._rate_limited:
                keys.rotate("rate_limited", if_current=key)
                raise
        raise NoActiveKey(f"every {provider} key was rejected")

    def _call(self, provider: str, key: str, model: str, prompt: str, stream: bool, max_tokens: int) -> str:
        messages = [{"role": "user", "content": prompt}]
        if provider == OPENAI:
            client = self.openai.with_options(api_key=key)
            if stream:
                parts = []
                for chunk in client.chat.completions.create(model=model, messages=messages, stream=True,
                                                            max_tokens=max_tokens):
                    if chunk.choices and chunk.choices[0].delta.content:
                        parts.append(chunk.choices[0].delta.content)
                return "".join(parts)
            answer = client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens)
            return answer.choices[0].message.content or ""
        client = self.anthropic.with_options(api_key=key)
        if stream:
            with client.messages.stream(model=model, messages=messages, max_tokens=max_tokens) as events:
                return "".join(events.text_stream)
        message = client.messages.create(model=model, messages=messages, max_tokens=max_tokens)
        return "".join(block.text for block in message.content if getattr(block, "type", "") == "text")

    def validate_keys(self) -> None:
        """Check every key with a call that costs no tokens (what key proxies do periodically)."""
        for provider, keys in self.keys.items():
            for key in keys.keys:
                try:
                    if provider == OPENAI:
                        self.openai.with_options(api_key=key).models.list()
                    else:
                        self.anthropic.with_options(api_key=key).messages.count_tokens(
                            model="claude-haiku-4-5", messages=[{"role": "user", "content": "ping"}])
                    keys.pool.validated(key, True)
                except self._auth_errors:
                    keys.pool.validated(key, False)
                except Exception:
                    keys.pool.validated(key, "error")

    def rotate_all(self) -> None:
        for keys in self.keys.values():
            keys.rotate("scheduled")


def create_app(demo: DemoGateway, exposition: Any, telemetry: Any) -> Any:
    """The FastAPI app: ``POST /v1/chat``, ``GET /gateway/status``, ``/observability`` (the endpoints)."""
    from fastapi import FastAPI, HTTPException
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    app = FastAPI(title="otel-llm demo gateway", docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/v1/chat")
    def chat(request: ChatRequest) -> dict[str, Any]:  # sync: FastAPI runs it in its thread pool
        try:
            return demo.chat(request.model, request.prompt, request.stream, request.max_tokens)
        except Unavailable as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None

    @app.get("/gateway/status")
    def status() -> dict[str, Any]:
        return demo.gateway.snapshot()

    app.mount("/observability", exposition)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=telemetry.tracer_provider,
                                       meter_provider=telemetry.meter_provider,
                                       excluded_urls="observability,gateway/status")
    return app


class AppServer:
    """uvicorn on a daemon thread, on a socket bound up front (so a busy port is a clear error)."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        import uvicorn

        self._sock = sock
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="otel-llm-demo-gateway", daemon=True)

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    def start(self, timeout: float = 10.0) -> AppServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo gateway (uvicorn) did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._sock.close()


def bind(host: str, port: int | None, default: int = 9465) -> tuple[socket.socket, str | None]:
    """A listening socket on ``port``; with ``port`` None, ``default`` or else a free port (and a note)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in ([port] if port is not None else [default, 0]):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError:
            sock.close()
            if port is not None:
                raise
            continue
        sock.listen(128)
        note = None if port is not None or candidate == default else f"port {default} is busy"
        return sock, note
    raise OSError(f"cannot bind {host}")  # pragma: no cover - port 0 always binds


class GatewayTraffic:
    """Clients of the gateway: ``rate`` requests per second over HTTP, a mix of models and streams,
    the scenario's cost spike included."""

    def __init__(self, url: str, scenario: Scenario, rate: float, concurrency: int = 4, seed: int | None = None) -> None:
        self.url, self.scenario = url, scenario
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._serial = 0
        self._loop = TrafficLoop(url, self, rate, concurrency)  # paces the calls; this class is its workload

    @property
    def sent(self) -> int:
        return self._loop.sent

    @property
    def failed(self) -> int:
        return self._loop.failed

    def request(self) -> dict[str, Any]:
        with self._lock:
            rng = self._rng
            self._serial += 1
            serial = self._serial
            if self.scenario.cost_spike() and rng.random() < 0.6:
                words = " ".join(rng.choice(_WORDS) for _ in range(3000))
                return {"model": "gpt-4.1", "prompt": f"Document {serial}: summarise. {words}", "max_tokens": 256}
            roll, model = rng.random(), TRAFFIC_MIX[-1][0]
            for name, share in TRAFFIC_MIX:
                if roll < share:
                    model = name
                    break
                roll -= share
            return {"model": model, "prompt": f"Request {serial}: answer briefly. " + " ".join(rng.sample(_WORDS, 8)),
                    "stream": rng.random() < 0.4, "max_tokens": 64}

    next_call = request  # the workload interface of TrafficLoop

    def send(self, url: str, request: dict[str, Any]) -> None:
        body = json.dumps(request).encode()
        http_request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(http_request, timeout=30) as response:
            response.read()

    def start(self) -> GatewayTraffic:
        self._loop.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._loop.stop(timeout)


class RunningGateway:
    """Everything ``start_gateway`` started; ``stop()`` stops it in order."""

    def __init__(self, demo: DemoGateway, server: AppServer, traffic: GatewayTraffic, url: str,
                 port_note: str | None) -> None:
        self.demo, self.server, self.traffic, self.url, self.port_note = demo, server, traffic, url, port_note
        self._stop = threading.Event()
        self._chores = threading.Thread(target=self._run_chores, name="otel-llm-gateway-chores", daemon=True)

    def _run_chores(self, validate_every: float = 10.0, rotate_every: float = 15.0) -> None:
        # The first rotation (4 s) makes key B current just before it is revoked (6 s), so requests meet
        # the 401 before the next validation (11 s) finds it.
        next_validation, next_rotation = time.monotonic() + 1.0, time.monotonic() + 4.0
        while not self._stop.wait(0.5):
            now = time.monotonic()
            try:
                if now >= next_validation:
                    next_validation = now + validate_every
                    self.demo.validate_keys()
                if now >= next_rotation:
                    next_rotation = now + rotate_every
                    self.demo.rotate_all()
                self.demo.gateway.evaluate()
            except Exception:  # the demo goes on
                pass

    def start(self) -> RunningGateway:
        self._chores.start()
        self.traffic.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.traffic.stop()
        self._chores.join(timeout=5)
        self.server.stop()
        self.demo.close()


def start_gateway(telemetry: Any, upstream: Any, *, host: str = "127.0.0.1", port: int | None = None,
                  rate: float = 4.0, fast: bool = False, seed: int | None = None) -> RunningGateway:
    """Build and start the demo gateway, its endpoints and its clients. Raises OSError for a busy port."""
    from ..exposition import AccessControl, ExpositionApp, HealthThresholds
    from ..gateway import Gateway, GatewayConfig

    sock, note = bind(host, port)
    try:
        # Short windows so a two-minute script shows everything; an open breaker lets only its probes through,
        # so an interval of the outage may hold just 2 calls.
        config = GatewayConfig(health_window=30, latency_objective=2.0, ttft_objective=1.0, anomaly_interval=5,
                               anomaly_baseline=6, anomaly_min_baseline=3, anomaly_min_calls=2)
        gateway = Gateway.from_telemetry(telemetry, config=config)
        scenario = Scenario(latency_spike=0.6 if fast else 3.0)
        demo = DemoGateway(telemetry, upstream, scenario, gateway, breaker_reset=2.0)
        exposition = ExpositionApp(gateway=gateway, access=AccessControl.from_env(), title="otel-llm demo gateway",
                                   health=HealthThresholds(degraded=0.10, unhealthy=0.30, window=60, min_calls=10),
                                   rate_window=30, history_step=2, history_points=90)
        server = AppServer(create_app(demo, exposition, telemetry), sock).start()
    except BaseException:
        sock.close()
        raise
    shown = f"[{host}]" if ":" in host else ("127.0.0.1" if host in ("0.0.0.0", "") else host)
    url = f"http://{shown}:{server.port}"
    traffic = GatewayTraffic(f"{url}/v1/chat", scenario, rate, seed=seed)
    return RunningGateway(demo, server, traffic, url, note).start()
