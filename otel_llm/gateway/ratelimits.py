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
_KINDS_BYTES = {name.encode(): kind for name, kind in _KINDS.items()}
_OPENAI, _ANTHROPIC, _SUFFIX = "x-ratelimit-remaining-", "anthropic-ratelimit-", "-remaining"
_OPENAI_B, _ANTHROPIC_B, _SUFFIX_B = _OPENAI.encode(), _ANTHROPIC.encode(), _SUFFIX.encode()


def remaining_from_headers(headers: Mapping[str, Any] | None) -> dict[str, float]:
    """``{kind: remaining}`` read from response headers (any case); unparsable values are skipped.

    One pass over the headers; for httpx/httpx2 ``Headers`` over their raw bytes (decoding every
    header costs more than the rest of the gateway's listener).
    """
    if not headers:
        return {}
    found: dict[str, float] = {}
    raw = getattr(headers, "raw", None)
    if isinstance(raw, list):
        for name, value in raw:
            name = name.lower()
            if name.startswith(_OPENAI_B):
                kind = _KINDS_BYTES.get(name[len(_OPENAI_B):])
            elif name.startswith(_ANTHROPIC_B) and name.endswith(_SUFFIX_B):
                kind = _KINDS_BYTES.get(name[len(_ANTHROPIC_B):-len(_SUFFIX_B)])
            else:
                continue
            if kind is not None:
                _number(found, kind, value)
        return found
    for name, value in headers.items():
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
