"""A steady, mixed LLM workload through the real ``openai`` SDK (what the demo's sample service does)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")
_PROMPTS = (
    "Summarise the incident report in two sentences.",
    "Write a haiku about observability pipelines.",
    "Explain exemplars to a new on-call engineer.",
    "List three reasons a dashboard could show no data.",
)


@dataclass
class Workload:
    """What to send: shares of each kind of call and of deliberate errors."""

    models: Sequence[str] = DEFAULT_MODELS
    stream_share: float = 0.3
    embeddings_share: float = 0.1
    responses_share: float = 0.1
    error_share: float = 0.03
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("stream_share", "embeddings_share", "responses_share", "error_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if not self.models:
            raise ValueError("models must name at least one model")
        self._rng = random.Random(self.seed)

    def send_one(self, client: Any) -> None:
        """One call; SDK errors propagate to the caller (they are part of the demo)."""
        rng = self._rng
        model = rng.choice(list(self.models))
        if rng.random() < self.error_share:
            model = rng.choice(("error-500", "error-429", "bad-model"))
        prompt = rng.choice(_PROMPTS)
        roll = rng.random()
        if roll < self.embeddings_share:
            client.embeddings.create(model="text-embedding-3-small", input=prompt)
        elif roll < self.embeddings_share + self.responses_share:
            client.responses.create(model=model, input=prompt, max_output_tokens=64)
        elif roll < self.embeddings_share + self.responses_share + self.stream_share:
            stream = client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}], stream=True, max_tokens=64
            )
            for _chunk in stream:
                pass
        else:
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}], max_tokens=64, temperature=0.7
            )


class TrafficLoop:
    """``concurrency`` worker threads sending ``rate`` calls per second in total until ``stop()``."""

    def __init__(self, client: Any, workload: Workload, rate: float, concurrency: int = 4) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 calls per second, got {rate}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.client = client
        self.workload = workload
        self.rate = rate
        self.concurrency = concurrency
        self.sent = 0
        self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._next_slot = time.monotonic()
        self._threads: list[threading.Thread] = []

    def start(self) -> TrafficLoop:
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._run, name=f"otel-llm-traffic-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _wait_for_slot(self) -> bool:
        with self._lock:
            slot = max(self._next_slot, time.monotonic())
            self._next_slot = slot + 1.0 / self.rate
        delay = slot - time.monotonic()
        return not self._stop.wait(delay) if delay > 0 else not self._stop.is_set()

    def _run(self) -> None:
        while self._wait_for_slot():
            try:
                self.workload.send_one(self.client)
                failed = False
            except Exception:
                failed = True
            with self._lock:
                self.sent += 1
                self.failed += failed
