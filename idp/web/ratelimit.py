"""A per-address rate limit on what anyone may ask for without signing in: /saml/* and /login, for browsers
without a live SSO session.

Each worker keeps a token bucket per client address in memory: ``[server] rate_limit_per_minute`` tokens,
refilled at that rate, one taken per request. It is not shared between workers or nodes, so an address
gets at most that many requests a minute from each worker: a bound that scales with the capacity it
protects. A counter in the database (idp.store.attempts) would be exact across workers but costs a write
per request on the hot path (0.2 ms on SQLite against 2 µs here), which is the very load a flood brings;
the password itself keeps its exact, shared per-address and per-account limits (idp.signin.throttle).

An IPv6 client is counted by its /64: one host is given a whole /64 and can change address within it at will.
Behind a reverse proxy the address is the client's only when ``trusted_proxy_count`` says how many proxies
to skip; otherwise every employee shares the proxy's bucket.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Response, render_template, request
from werkzeug.wrappers import Response as HttpResponse

from idp.web.i18n import translate
from idp.web.services import services
from idp.web.sso_session import current_sso

MAX_ADDRESSES = 50_000
"""Buckets kept per worker; beyond it the least recently seen address is forgotten (and starts full)."""

_LIMITED_ENDPOINTS = {"login.login"}
_LIMITED_BLUEPRINTS = {"saml"}


@dataclass
class _Bucket:
    tokens: float
    at: float
    audited_at: float | None = None


@dataclass(frozen=True)
class Refusal:
    retry_after: int
    """Seconds until the next token."""
    audit: bool
    """True for the first refusal of an address in a minute: the flood must not fill the audit trail."""


class RateLimiter:
    def __init__(
        self, per_minute: int, *, now: Callable[[], float] = time.monotonic, max_addresses: int = MAX_ADDRESSES
    ) -> None:
        """``now`` is the clock the buckets refill by; tests pass one they can move."""
        self._capacity = float(per_minute)
        self._per_second = per_minute / 60.0
        self._now = now
        self._max_addresses = max_addresses
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, address: str) -> Refusal | None:
        """None when ``address`` may make one more request now (and it is counted), else why not."""
        key = _key(address)
        now = self._now()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(self._capacity, now)
                if len(self._buckets) > self._max_addresses:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.at) * self._per_second)
                bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            audit = bucket.audited_at is None or now - bucket.audited_at >= 60.0
            if audit:
                bucket.audited_at = now
            return Refusal(retry_after=int((1.0 - bucket.tokens) / self._per_second) + 1, audit=audit)


def _key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def install(app: Flask, per_minute: int) -> None:
    """Limit the anonymous endpoints of ``app`` to ``per_minute`` requests per address; 0 leaves them open."""
    if per_minute <= 0:
        return
    limiter = RateLimiter(per_minute)

    @app.before_request
    def _limit() -> HttpResponse | None:
        if request.blueprint not in _LIMITED_BLUEPRINTS and request.endpoint not in _LIMITED_ENDPOINTS:
            return None
        if current_sso() is not None:
            # Someone AD vouched for: their SPs may ask as often as they like (a whole office behind one
            # NAT address signs in to webmail every morning); the limit is for the anonymous.
            return None
        address = request.remote_addr or ""
        refused = limiter.take(address)
        if refused is None:
            return None
        if refused.audit:
            services().audit.record(
                "saml_request" if request.blueprint == "saml" else "signin",
                "refused",
                reason="rate_limited",
                ip=address or None,
                detail=f"over {per_minute} requests a minute from this address; further refusals this minute "
                "are not recorded",
            )
        page = render_template("error.html", message=translate("rate_limited"), reason="rate_limited", detail=None)
        resp = Response(page, status=429)
        resp.headers["Retry-After"] = str(refused.retry_after)
        resp.headers["Cache-Control"] = "no-store"
        return resp
