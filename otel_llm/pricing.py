"""Cost of an LLM call in US dollars.

Prices come from ``genai-prices`` (its data ships inside the package; nothing is
downloaded), optionally overridden or extended by a JSON file named by
``OTEL_LLM_PRICES_FILE``::

    {"prices": [{"provider": "openai", "model": "my-finetune",
                 "input_per_mtok": 0.5, "output_per_mtok": 1.5,
                 "cache_read_per_mtok": 0.25, "cache_write_per_mtok": 0.6}]}

``provider`` may be ``"*"`` to match any provider. Unknown models cost
nothing and raise nothing: ``cost()`` returns ``None``.

Token counts follow the semantic conventions: ``input_tokens`` includes the
cache-read and cache-write tokens, which are billed at their own rates.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from . import semconv

_log = logging.getLogger(__name__)

# gen_ai.provider.name -> genai-prices provider id, where they differ.
_PRICE_PROVIDER_IDS = {
    semconv.PROVIDER_AZURE_OPENAI: "azure",
    "x_ai": "x-ai",
    "mistral_ai": "mistral",
    semconv.PROVIDER_GCP_GEMINI: "google",
    semconv.PROVIDER_GCP_VERTEX_AI: "google",
    semconv.PROVIDER_AWS_BEDROCK: "aws",
}


class PriceFileError(ValueError):
    """The price override file is unreadable or malformed."""


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million tokens."""

    input_per_mtok: float
    output_per_mtok: float
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0) -> float:
        read_rate = self.input_per_mtok if self.cache_read_per_mtok is None else self.cache_read_per_mtok
        write_rate = self.input_per_mtok if self.cache_write_per_mtok is None else self.cache_write_per_mtok
        uncached = max(input_tokens - cache_read - cache_write, 0)
        return (
            uncached * self.input_per_mtok
            + cache_read * read_rate
            + cache_write * write_rate
            + output_tokens * self.output_per_mtok
        ) / 1_000_000


class _LibraryPrice:
    """A genai-prices model whose price is not a flat rate (tiers): priced by the library itself."""

    __slots__ = ("_provider", "_model")

    def __init__(self, provider: Any, model: Any) -> None:
        self._provider = provider
        self._model = model

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0) -> float:
        from genai_prices import Usage

        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
        )
        return float(self._model.calc_price(usage, self._provider).total_price)


class PriceTable:
    """Looks up prices by (provider, model); lookups are cached, so a call costs a dict hit."""

    def __init__(self, overrides: dict[tuple[str, str], Price] | None = None, use_library: bool = True) -> None:
        self._overrides = dict(overrides or {})
        self._use_library = use_library
        self._cache: dict[tuple[str, str], Price | _LibraryPrice | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls) -> PriceTable:
        path = os.environ.get(semconv.ENV_PRICES_FILE)
        return cls(load_price_file(path) if path else None)

    def price(self, provider: str, model: str) -> Price | _LibraryPrice | None:
        key = (provider, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._overrides.get(key) or self._overrides.get(("*", model))
        if found is None and self._use_library:
            found = _library_price(provider, model)
        with self._lock:
            if len(self._cache) > 4096:  # bounded: model names can come from user input
                self._cache.clear()
            self._cache[key] = found
        return found

    def cost(
        self,
        provider: str,
        model: str | None,
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read: int | None = None,
        cache_write: int | None = None,
    ) -> float | None:
        """The call's cost in USD, or None when the model or the usage is unknown."""
        if not model or (input_tokens is None and output_tokens is None):
            return None
        price = self.price(provider, model)
        if price is None:
            return None
        return price.cost(input_tokens or 0, output_tokens or 0, cache_read or 0, cache_write or 0)


def _library_price(provider: str, model: str) -> Price | _LibraryPrice | None:
    try:
        from genai_prices import data_snapshot
        from genai_prices.types import TieredPrices

        provider_id = _PRICE_PROVIDER_IDS.get(provider, provider)
        try:
            found_provider, found_model = data_snapshot.get_snapshot().find_provider_model(
                model, None, provider_id, None
            )
        except LookupError:
            return None
        from datetime import UTC, datetime

        prices = found_model.get_prices(datetime.now(tz=UTC))
        rates = {
            name: getattr(prices, name, None)
            for name in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok")
        }
        if any(isinstance(rate, TieredPrices) for rate in rates.values()):
            return _LibraryPrice(found_provider, found_model)
        return Price(
            input_per_mtok=float(rates["input_mtok"] or 0),
            output_per_mtok=float(rates["output_mtok"] or 0),
            cache_read_per_mtok=_float_or_none(rates["cache_read_mtok"]),
            cache_write_per_mtok=_float_or_none(rates["cache_write_mtok"]),
        )
    except Exception:  # a price library bug must never reach the caller
        _log.debug("price lookup failed for %s/%s", provider, model, exc_info=True)
        return None


def _float_or_none(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def load_price_file(path: str | os.PathLike[str]) -> dict[tuple[str, str], Price]:
    """Parse a price override file; raises PriceFileError saying what is wrong and where."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise PriceFileError(f"cannot read price file {path!s}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise PriceFileError(f"price file {path!s} is not valid JSON: {exc}") from exc
    entries = document.get("prices") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise PriceFileError(f'price file {path!s} must be a JSON object with a "prices" list')
    table: dict[tuple[str, str], Price] = {}
    for index, entry in enumerate(entries):
        where = f"price file {path!s}, prices[{index}]"
        if not isinstance(entry, dict):
            raise PriceFileError(f"{where}: expected an object, got {type(entry).__name__}")
        model = entry.get("model")
        if not isinstance(model, str) or not model:
            raise PriceFileError(f'{where}: "model" must be a non-empty string')
        provider = entry.get("provider", "*")
        values = {}
        for field in ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok"):
            value = entry.get(field)
            required = field in ("input_per_mtok", "output_per_mtok")
            if value is None and not required:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise PriceFileError(f'{where}: "{field}" must be a number >= 0 (US dollars per million tokens)')
            values[field] = float(value)
        unknown = set(entry) - {"provider", "model", "input_per_mtok", "output_per_mtok",
                                "cache_read_per_mtok", "cache_write_per_mtok"}
        if unknown:
            raise PriceFileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        table[(str(provider), model)] = Price(**values)
    return table
