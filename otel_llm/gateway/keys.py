"""API-key pools: key states, rotations and validations, by a stable non-reversible key id.

A raw key is hashed the moment it is handed over and never stored: a pool keeps key *ids*,
``key-`` + 16 hex digits of HMAC-SHA256(salt, key). The salt is ``OTEL_LLM_KEY_ID_SALT`` (or the
``key_id_salt`` given to the gateway): with it ids are stable across restarts and processes; without
it a random per-process salt is drawn, so ids are stable for the life of the process only. Ids are
shown in the gateway's JSON summary; metrics carry only counts per pool and state.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from typing import TYPE_CHECKING, Any

from . import names
from .config import GatewayConfigError

if TYPE_CHECKING:
    from .core import Gateway


class KeyId(str):
    """The id of an API key (not the key). Pool methods accept a ``KeyId`` wherever they take a key."""

    __slots__ = ()


def salt_from_env(salt: str | bytes | None = None) -> bytes:
    if salt is None:
        salt = os.environ.get(names.ENV_KEY_ID_SALT) or None
    if salt is None:
        return secrets.token_bytes(32)
    raw = salt.encode() if isinstance(salt, str) else bytes(salt)
    if len(raw) < 16:
        raise GatewayConfigError(
            f"the key id salt ({names.ENV_KEY_ID_SALT} or key_id_salt=) must be at least 16 bytes, got {len(raw)}; "
            f"use e.g. `openssl rand -hex 32`"
        )
    return raw


def make_key_id(key: str | KeyId, salt: bytes) -> KeyId:
    if isinstance(key, KeyId):
        return key
    if not isinstance(key, str) or not key:
        raise TypeError("an API key must be a non-empty string")
    return KeyId("key-" + hmac.new(salt, key.encode(), hashlib.sha256).hexdigest()[:16])


def _result(result: bool | str) -> str:
    if isinstance(result, bool):
        return "valid" if result else "invalid"
    value = str(result).lower()
    if value not in names.VALIDATION_RESULTS:
        raise ValueError(f"validation result {result!r}: use True/False or one of {', '.join(names.VALIDATION_RESULTS)}")
    return value


class KeyPool:
    """One group of interchangeable keys (e.g. the keys of one provider account). Get it from
    ``Gateway.key_pool(group, keys)``; every method is thread-safe and cheap."""

    def __init__(self, gateway: Gateway, group: str) -> None:
        self._gateway = gateway
        self.group = group
        self._lock = threading.Lock()
        self._states: dict[KeyId, str] = {}
        self._attributes = {names.KEY_POOL_GROUP: group}

    def key_id(self, key: str | KeyId) -> KeyId:
        """The id of ``key`` (what may be logged or shown instead of it)."""
        return make_key_id(key, self._gateway._salt)

    def add(self, key: str | KeyId, *, active: bool = True) -> KeyId:
        key_id = self.key_id(key)
        with self._lock:
            self._states[key_id] = names.KEY_ACTIVE if active else names.KEY_INVALID
        return key_id

    def remove(self, key: str | KeyId) -> None:
        with self._lock:
            self._states.pop(self.key_id(key), None)

    def mark_invalid(self, key: str | KeyId) -> KeyId:
        """The provider rejected the key (401/403), or it was revoked."""
        return self._set(key, names.KEY_INVALID)

    def mark_active(self, key: str | KeyId) -> KeyId:
        """The key works again (re-issued, re-validated)."""
        return self._set(key, names.KEY_ACTIVE)

    def _set(self, key: str | KeyId, state: str) -> KeyId:
        key_id = self.key_id(key)
        with self._lock:
            self._states[key_id] = state
        return key_id

    def validated(self, key: str | KeyId, result: bool | str) -> KeyId:
        """A validation of ``key``: ``True``/``"valid"`` marks it active, ``False``/``"invalid"`` invalid,
        ``"error"`` (the check itself failed) leaves its state alone."""
        value = _result(result)
        key_id = self.key_id(key)
        with self._lock:
            if value != "error":
                self._states[key_id] = names.KEY_ACTIVE if value == "valid" else names.KEY_INVALID
            elif key_id not in self._states:
                self._states[key_id] = names.KEY_ACTIVE
        self._gateway._key_validations.add(1, {**self._attributes, names.VALIDATION_RESULT: value})
        return key_id

    def rotated(self, reason: str = "scheduled") -> None:
        """The pool's current key changed (``scheduled``, ``invalid``, ``rate_limited`` or ``manual``)."""
        if reason not in names.ROTATION_REASONS:
            raise ValueError(f"rotation reason {reason!r}: use one of {', '.join(names.ROTATION_REASONS)}")
        self._gateway._key_rotations.add(1, {**self._attributes, names.ROTATION_REASON: reason})

    def state(self, key: str | KeyId) -> str | None:
        with self._lock:
            return self._states.get(self.key_id(key))

    def counts(self) -> dict[str, int]:
        with self._lock:
            states = list(self._states.values())
        return {state: states.count(state) for state in names.KEY_STATES}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            keys = [{"id": key_id, "state": state} for key_id, state in self._states.items()]
        return {"group": self.group, **self.counts(), "keys": keys}
