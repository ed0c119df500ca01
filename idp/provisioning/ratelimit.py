"""Request rate limiting shared by every process and node that calls the same provider.

Alibaba Mail allows 40 requests per second per mail domain, shared by every app of that domain: a limit
per process would let four gunicorn workers on two nodes send eight times too much. Both limiters here
use the generic cell rate algorithm (GCRA): one "theoretical arrival time" per key, so requests are
spaced ``1/rate`` apart with at most ``burst`` of them back to back, and no fixed window lets twice
the rate through at a window boundary.

``RedisRateLimiter`` keeps that time in Redis and reads the clock of the Redis server (``TIME``), so
nodes with skewed clocks still agree. ``LocalRateLimiter`` is the same algorithm in one process, for a
single-node install without Redis.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

import redis

from idp.provisioning.provider import RateLimited

log = logging.getLogger(__name__)


class RateLimiter(Protocol):
    def acquire(self) -> None:
        """Block until one request may be sent; raise RateLimited when that would take too long."""
        ...


class _Gcra:
    """Timing arithmetic shared by both limiters; all times in microseconds."""

    def __init__(self, rate_per_second: float, burst: int) -> None:
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.interval_us = int(1_000_000 / rate_per_second)
        self.tolerance_us = self.interval_us * (burst - 1)


def _wait_or_raise(wait_s: float, deadline: float, key: str) -> None:
    if time.monotonic() + wait_s > deadline:
        raise RateLimited(f"rate limit for {key} would hold this request too long", retry_after=wait_s)
    time.sleep(wait_s)


class LocalRateLimiter:
    """GCRA in this process only; thread-safe."""

    def __init__(self, rate_per_second: float, burst: int = 1, max_wait: float = 30.0, key: str = "local") -> None:
        self._gcra = _Gcra(rate_per_second, burst)
        self._max_wait = max_wait
        self._key = key
        self._tat_us = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        """Take a slot now and return 0, or return the seconds to wait before trying again."""
        with self._lock:
            now = time.monotonic_ns() // 1000
            tat = max(self._tat_us, now)
            allow_at = tat - self._gcra.tolerance_us
            if now < allow_at:
                return (allow_at - now) / 1_000_000
            self._tat_us = tat + self._gcra.interval_us
            return 0.0

    def acquire(self) -> None:
        deadline = time.monotonic() + self._max_wait
        while (wait := self.try_acquire()) > 0:
            _wait_or_raise(wait, deadline, self._key)


# KEYS[1]: the key holding the theoretical arrival time (TAT), in microseconds of the Redis clock.
# ARGV[1]: emission interval; ARGV[2]: burst tolerance (both microseconds).
# Returns 0 when a slot was taken, else the microseconds to wait.
_GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then return allow_at - now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
"""


class RedisRateLimiter:
    """GCRA whose state lives in Redis, shared by every process and node that uses the same key.

    When Redis cannot be reached the limiter falls back to a local one at the full rate and says so in
    the log: sign-ins must not fail because the limiter's store blinked, and the provider's own 429s
    (retried with backoff) still hold the line meanwhile.
    """

    def __init__(
        self,
        redis_url: str,
        key: str,
        rate_per_second: float,
        burst: int = 1,
        max_wait: float = 30.0,
        socket_timeout: float = 2.0,
    ) -> None:
        self._gcra = _Gcra(rate_per_second, burst)
        self._key = key
        self._max_wait = max_wait
        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        self._script = self._redis.register_script(_GCRA_SCRIPT)
        self._fallback = LocalRateLimiter(rate_per_second, burst, max_wait, key)
        self._warned = False

    def try_acquire(self) -> float:
        try:
            wait_us = int(self._script(keys=[self._key], args=[self._gcra.interval_us, self._gcra.tolerance_us]))
        except redis.RedisError as exc:
            if not self._warned:
                log.warning("rate limiter store unreachable (%s); limiting this process alone", type(exc).__name__)
                self._warned = True
            return self._fallback.try_acquire()
        self._warned = False
        return wait_us / 1_000_000

    def acquire(self) -> None:
        deadline = time.monotonic() + self._max_wait
        while (wait := self.try_acquire()) > 0:
            _wait_or_raise(wait, deadline, self._key)

    def close(self) -> None:
        self._redis.close()


def make_rate_limiter(
    rate_per_second: float, key: str, redis_url: str = "", burst: int = 1, max_wait: float = 30.0
) -> RateLimiter:
    """Redis-backed when ``redis_url`` is set (several processes or nodes), in-process otherwise."""
    if redis_url:
        return RedisRateLimiter(redis_url, key, rate_per_second, burst=burst, max_wait=max_wait)
    return LocalRateLimiter(rate_per_second, burst=burst, max_wait=max_wait, key=key)
