"""Scrubbing of secrets from text that may leave the process (error messages, content)."""

from __future__ import annotations

import re

# API keys as providers print them (also partially masked ones such as "sk-abc***xyz"),
# bearer tokens and key=value pairs naming a secret.
_SECRET_PATTERNS = re.compile(
    r"(?:sk-(?:ant-|proj-)?[A-Za-z0-9_\-*]{3,})"
    r"|(?:(?i:bearer)\s+[A-Za-z0-9._~+/=\-*]+)"
    r"|(?:(?i:api[_-]?key|x-api-key|authorization|api-key)[\"']?\s*[:=]\s*[\"']?[^\s\"',;}]+)"
)
REDACTED = "[REDACTED]"


def scrub_secrets(text: str) -> str:
    """Return ``text`` with anything that looks like an API key or bearer token replaced."""
    return _SECRET_PATTERNS.sub(REDACTED, text)
