"""Remaining requests and tokens from a provider's rate-limit response headers.

OpenAI (and OpenAI-compatible servers, Azure OpenAI, Groq ...): ``x-ratelimit-remaining-requests``,
``x-ratelimit-remaining-tokens``. Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,
output-tokens}-remaining``. Only the kinds in ``names.RATE_LIMIT_KINDS`` are kept (low cardinality).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import names

_OPENAI_PREFIX = "x-ratelimit-remaining-"
_ANTHROPIC_PREFIX, _ANTHROPIC_SUFFIX = "anthropic-ratelimit-", "-remaining"


def remaining_from_headers(headers: Mapping[str, Any] | None) -> dict[str, float]:
    """``{kind: remaining}`` read from response headers (any case); unparsable values are skipped."""
    if not headers:
        return {}
    found: dict[str, float] = {}
    for name, value in headers.items():
        lower = str(name).lower()
        if lower.startswith(_OPENAI_PREFIX):
            kind = lower[len(_OPENAI_PREFIX):]
        elif lower.startswith(_ANTHROPIC_PREFIX) and lower.endswith(_ANTHROPIC_SUFFIX):
            kind = lower[len(_ANTHROPIC_PREFIX):-len(_ANTHROPIC_SUFFIX)]
        else:
            continue
        kind = kind.replace("-", "_")
        if kind not in names.RATE_LIMIT_KINDS:
            continue
        try:
            number = float(str(value).strip())
        except ValueError:
            continue
        if number >= 0:
            found[kind] = number
    return found
