"""Who may read the endpoints: an optional bearer token or basic-auth pair, and a CIDR allowlist.

Order: the client address is checked against the allowlist first (403 when outside), then the
credentials (401 with ``WWW-Authenticate`` when missing or wrong). Secrets are compared in constant
time and never logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ENV_TOKEN = "OTEL_LLM_EXPOSITION_TOKEN"
ENV_BASIC_AUTH = "OTEL_LLM_EXPOSITION_BASIC_AUTH"
ENV_ALLOW = "OTEL_LLM_EXPOSITION_ALLOW"
ENV_TRUSTED_PROXIES = "OTEL_LLM_EXPOSITION_TRUSTED_PROXIES"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(values: Iterable[str] | str | None, what: str) -> tuple[Network, ...]:
    from . import ConfigError

    if values is None:
        return ()
    if isinstance(values, str):
        values = values.split(",")
    networks = []
    for raw in values:
        text = str(raw).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(
                f"{what}: {text!r} is not an address or CIDR block; write e.g. 10.0.0.0/8, 127.0.0.1 or ::1/128"
            ) from None
    return tuple(networks)


@dataclass(frozen=True)
class Denied:
    status: int  # 401 or 403
    reason: str
    challenge: str | None = None  # the WWW-Authenticate header of a 401


@dataclass(frozen=True)
class AccessControl:
    """``token``: require ``Authorization: Bearer <token>``; ``basic_auth``: ``(user, password)``; both
    given: either works. ``allow``: client addresses/CIDR blocks allowed (empty: any). ``trusted_proxies``:
    peers whose ``X-Forwarded-For`` is believed (the client is the right-most untrusted address)."""

    token: str | None = None
    basic_auth: tuple[str, str] | None = None
    allow: tuple[Network, ...] = field(default=())
    trusted_proxies: tuple[Network, ...] = field(default=())
    realm: str = "otel-llm"

    def __post_init__(self) -> None:
        from . import ConfigError

        if self.token is not None and not str(self.token).strip():
            raise ConfigError(f"the bearer token is empty; set {ENV_TOKEN} (or token=) to a secret, or leave it unset")
        if self.basic_auth is not None:
            if len(self.basic_auth) != 2 or not self.basic_auth[0] or not self.basic_auth[1]:
                raise ConfigError(f"basic auth needs a user and a password: set {ENV_BASIC_AUTH}=user:password "
                                  f"(or basic_auth=('user', 'password'))")
            if ":" in self.basic_auth[0]:
                raise ConfigError("a basic-auth user name cannot contain ':'")
        object.__setattr__(self, "allow", _networks(self.allow, "allow") if not _is_networks(self.allow) else self.allow)
        object.__setattr__(self, "trusted_proxies", _networks(self.trusted_proxies, "trusted_proxies")
                           if not _is_networks(self.trusted_proxies) else self.trusted_proxies)

    @classmethod
    def from_env(cls, **overrides: object) -> AccessControl:
        """``OTEL_LLM_EXPOSITION_TOKEN``, ``..._BASIC_AUTH`` (``user:password``), ``..._ALLOW`` and
        ``..._TRUSTED_PROXIES`` (comma-separated CIDRs); keyword arguments win."""
        from . import ConfigError

        values: dict[str, object] = {}
        if os.environ.get(ENV_TOKEN):
            values["token"] = os.environ[ENV_TOKEN].strip()
        raw_basic = os.environ.get(ENV_BASIC_AUTH, "")
        if raw_basic:
            user, sep, password = raw_basic.partition(":")
            if not sep or not user or not password:
                raise ConfigError(f"{ENV_BASIC_AUTH} must be user:password")
            values["basic_auth"] = (user, password)
        if os.environ.get(ENV_ALLOW):
            values["allow"] = _networks(os.environ[ENV_ALLOW], ENV_ALLOW)
        if os.environ.get(ENV_TRUSTED_PROXIES):
            values["trusted_proxies"] = _networks(os.environ[ENV_TRUSTED_PROXIES], ENV_TRUSTED_PROXIES)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def open(self) -> bool:
        return self.token is None and self.basic_auth is None and not self.allow

    @property
    def needs_credentials(self) -> bool:
        return self.token is not None or self.basic_auth is not None

    def client_address(self, peer: str | None, headers: Mapping[str, str]) -> str | None:
        if peer is None:
            return None
        if not self.trusted_proxies or not _within(peer, self.trusted_proxies):
            return peer
        forwarded = [a.strip() for a in headers.get("x-forwarded-for", "").split(",") if a.strip()]
        for address in reversed(forwarded):
            if not _within(address, self.trusted_proxies):
                return address
        return forwarded[0] if forwarded else peer

    def check_address(self, peer: str | None, headers: Mapping[str, str]) -> Denied | None:
        if not self.allow:
            return None
        client = self.client_address(peer, headers)
        if client is None or not _within(client, self.allow):
            return Denied(403, f"client address {client or 'unknown'} is not in the allowlist")
        return None

    def check_credentials(self, headers: Mapping[str, str]) -> Denied | None:
        if not self.needs_credentials:
            return None
        scheme, _, credentials = headers.get("authorization", "").strip().partition(" ")
        credentials = credentials.strip()
        scheme = scheme.lower()
        if scheme == "bearer" and self.token is not None and credentials:
            if hmac.compare_digest(credentials.encode(), self.token.encode()):
                return None
            return Denied(401, "wrong bearer token", self._challenge())
        if scheme == "basic" and self.basic_auth is not None and credentials:
            try:
                user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return Denied(401, "malformed basic credentials", self._challenge())
            user_ok = hmac.compare_digest(user.encode(), self.basic_auth[0].encode())
            password_ok = hmac.compare_digest(password.encode(), self.basic_auth[1].encode())
            if user_ok and password_ok:
                return None
            return Denied(401, "wrong user or password", self._challenge())
        return Denied(401, "credentials required", self._challenge())

    def _challenge(self) -> str:
        schemes = []
        if self.token is not None:
            schemes.append(f'Bearer realm="{self.realm}"')
        if self.basic_auth is not None:
            schemes.append(f'Basic realm="{self.realm}", charset="UTF-8"')
        return ", ".join(schemes)


def _is_networks(values: object) -> bool:
    return isinstance(values, tuple) and all(isinstance(v, (ipaddress.IPv4Network, ipaddress.IPv6Network))
                                             for v in values)


def _within(address: str, networks: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)
