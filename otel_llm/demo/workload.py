"""A steady, mixed LLM workload through the real ``openai`` SDK: the demo's sample service and the
``otel-llm traffic`` generator.

:class:`Workload` decides what each call is (``next_call``) and sends it (``send``);
:class:`TrafficLoop` runs it on worker threads at a rate, for a number of calls or until stopped,
and reports every call's outcome.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")
_PROMPTS = (
    "Summarise the incident report in two sentences.",
    "Write a haiku about observability pipelines.",
    "Explain exemplars to a new on-call engineer.",
    "List three reasons a dashboard could show no data.",
)

#: Deliberate errors that any OpenAI-compatible server rejects before doing (or billing) any work.
BAD_MODEL = "bad-model"  # a model that does not exist: 400/404 model_not_found
OVERSIZE = "oversize"  # a prompt longer than any context window (and than the simulator's body limit)
#: ~1.2 million tokens: over every OpenAI context window (the largest is 1,047,576 tokens) and over
#: the upstream simulator's 1 MiB request limit. Built once, on first use.
OVERSIZE_CHARS = 6_000_000
#: The simulator's failure models (by name), used by the demo.
SIMULATED_ERRORS = ("error-500", "error-429", BAD_MODEL)
#: What ``otel-llm traffic`` asks for: errors real providers produce too, without cost.
PORTABLE_ERRORS = (BAD_MODEL, OVERSIZE)

_BAD_MODEL_NAME = "bad-model-otel-llm"  # the simulator fails every ``bad-*`` model
_oversize_prompt: str | None = None


def oversize_prompt() -> str:
    global _oversize_prompt
    if _oversize_prompt is None:
        _oversize_prompt = "word " * (OVERSIZE_CHARS // 5)
    return _oversize_prompt


class PlannedCall(NamedTuple):
    """What one call will be."""

    kind: str  # chat | stream | embeddings | responses
    model: str
    prompt: str
    error: str | None  # the deliberate error asked for (an entry of ``Workload.error_kinds``), or None


@dataclass
class Workload:
    """What to send: shares of each kind of call and of deliberate errors.

    ``error_kinds`` are model names that fail (the simulator's ``error-500``, ``error-429``,
    ``bad-model``) or :data:`OVERSIZE`. With ``rotate_models`` the models are used in turn,
    otherwise at random.
    """

    models: Sequence[str] = DEFAULT_MODELS
    stream_share: float = 0.3
    embeddings_share: float = 0.1
    responses_share: float = 0.1
    error_share: float = 0.03
    seed: int | None = None
    error_kinds: Sequence[str] = SIMULATED_ERRORS
    rotate_models: bool = False
    max_tokens: int = 64
    _rng: random.Random = field(init=False, repr=False)
    _turn: int = field(init=False, repr=False, default=0)

    def __post_init__(self) -> None:
        for name in ("stream_share", "embeddings_share", "responses_share", "error_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.embeddings_share + self.responses_share + self.stream_share > 1.0 + 1e-9:
            raise ValueError("stream_share + embeddings_share + responses_share must be at most 1")
        if not self.models:
            raise ValueError("models must name at least one model")
        if self.error_share > 0 and not self.error_kinds:
            raise ValueError("error_share > 0 needs at least one error kind")
        self._rng = random.Random(self.seed)

    def next_call(self) -> PlannedCall:
        """Decide the next call (not thread-safe: callers that share a workload draw under a lock)."""
        rng = self._rng
        if self.rotate_models:
            model = self.models[self._turn % len(self.models)]
            self._turn += 1
        else:
            model = rng.choice(list(self.models))
        error = rng.choice(list(self.error_kinds)) if rng.random() < self.error_share else None
        prompt = rng.choice(_PROMPTS)
        roll = rng.random()
        if roll < self.embeddings_share:
            kind = "embeddings"
        elif roll < self.embeddings_share + self.responses_share:
            kind = "responses"
        elif roll < self.embeddings_share + self.responses_share + self.stream_share:
            kind = "stream"
        else:
            kind = "chat"
        if error == OVERSIZE:
            prompt = oversize_prompt()
        elif error is not None:
            model = _BAD_MODEL_NAME if error == BAD_MODEL else error
        return PlannedCall(kind, model, prompt, error)

    def send(self, client: Any, call: PlannedCall) -> None:
        """Send one planned call; SDK errors propagate to the caller (deliberate ones included)."""
        model, prompt = call.model, call.prompt
        if call.kind == "embeddings":
            client.embeddings.create(model=model if call.error == BAD_MODEL else "text-embedding-3-small", input=prompt)
        elif call.kind == "responses":
            client.responses.create(model=model, input=prompt, max_output_tokens=self.max_tokens)
        elif call.kind == "stream":
            stream = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}], stream=True, max_tokens=self.max_tokens
            )
            for _chunk in stream:
                pass
        else:
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}], max_tokens=self.max_tokens,
                temperature=0.7,
            )

    def send_one(self, client: Any) -> None:
        """One call; SDK errors propagate to the caller (they are part of the demo)."""
        self.send(client, self.next_call())


class CallResult(NamedTuple):
    """The outcome of one sent call, as the sender saw it."""

    call: PlannedCall
    seconds: float  # until the response (streams: until the last chunk) or the error
    error: str | None  # the exception's class name, or None


class TrafficLoop:
    """``concurrency`` worker threads sending ``rate`` calls per second in total until ``stop()``,
    or until ``max_calls`` calls were sent (then ``done`` is set). ``on_result`` sees every call's
    outcome (on the worker thread; keep it quick). With a seeded workload the sequence of planned
    calls is the same on every run, whatever the thread interleaving."""

    def __init__(
        self,
        client: Any,
        workload: Workload,
        rate: float,
        concurrency: int = 4,
        *,
        max_calls: int | None = None,
        on_result: Callable[[CallResult], None] | None = None,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 calls per second, got {rate}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_calls is not None and max_calls < 1:
            raise ValueError(f"max_calls must be >= 1, got {max_calls}")
        self.client = client
        self.workload = workload
        self.rate = rate
        self.concurrency = concurrency
        self.max_calls = max_calls
        self.on_result = on_result
        self.sent = 0
        self.failed = 0
        self.done = threading.Event()
        self._planned = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._next_slot = time.monotonic()
        self._threads: list[threading.Thread] = []

    def start(self) -> TrafficLoop:
        self._next_slot = time.monotonic()
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._run, name=f"otel-llm-traffic-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sending and wait up to ``timeout`` for the calls in flight."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _take_slot(self) -> PlannedCall | None:
        with self._lock:
            if self.max_calls is not None and self._planned >= self.max_calls:
                return None
            self._planned += 1
            call = self.workload.next_call()
            slot = max(self._next_slot, time.monotonic())
            self._next_slot = slot + 1.0 / self.rate
        delay = slot - time.monotonic()
        if delay > 0 and self._stop.wait(delay):
            return None
        return None if self._stop.is_set() else call

    def _run(self) -> None:
        while True:
            call = self._take_slot()
            if call is None:
                break
            start = time.perf_counter()
            try:
                self.workload.send(self.client, call)
                error = None
            except Exception as exc:
                error = type(exc).__name__
            seconds = time.perf_counter() - start
            with self._lock:
                self.sent += 1
                self.failed += error is not None
                finished = self.max_calls is not None and self.sent >= self.max_calls
            if self.on_result is not None:
                try:
                    self.on_result(CallResult(call, seconds, error))
                except Exception:  # noqa: BLE001 - a reporting problem must not stop the traffic
                    pass
            if finished:
                self.done.set()
