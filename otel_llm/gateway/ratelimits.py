"""Remaining requests and tokens from a provider's rate-limit response headers.

OpenAI (and OpenAI-compatible servers, Azure OpenAI, Groq ...): ``x-ratelimit-remaining-requests``,
``x-ratelimit-remaining-tokens``. Anthropic: ``anthropic-ratelimit-{requests,tokens,input-tokens,
output-tokens}-remaining``. Only the kinds in ``names.RATE_LIMIT_KINDS`` are kept (low cardinality).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import names

_KINDS = {kind.replace("_", "-"): kind for kind in names.RATE_LIMIT_KINDS}
_OPENAI, _ANTHROPIC, _SUFFIX = "x-ratelimit-remaining-", "anthropic-ratelimit-", "-remaining"


def remaining_from_headers(headers: Mapping[str, Any] | None) -> dict[str, float]:
    """``{kind: remaining}`` read from response headers (any case); unparsable values are skipped.

    For httpx/httpx2 ``Headers`` only the raw names that can match are decoded (decoding every
    header costs more than the rest of the gateway's listener).
    """
    if not headers:
        return {}
    raw = getattr(headers, "raw", None)
    if isinstance(raw, list):
        pairs: Any = ((n.decode("latin-1"), v.decode("latin-1")) for n, v in raw if n[:1] in b"xXaA")
    else:
        pairs = headers.items()
    found: dict[str, float] = {}
    for name, value in pairs:
        lower = str(name).lower()
        if lower.startswith(_OPENAI):
            kind = _KINDS.get(lower[len(_OPENAI):])
        elif lower.startswith(_ANTHROPIC) and lower.endswith(_SUFFIX):
            kind = _KINDS.get(lower[len(_ANTHROPIC):-len(_SUFFIX)])
        else:
            continue
        if kind is not None:
            _number(found, kind, value)
    return found


def _number(found: dict[str, float], kind: str, value: Any) -> None:
    try:
        number = float(value.strip())
    except (ValueError, AttributeError, TypeError):
        return
    if number >= 0:
        found[kind] = number
