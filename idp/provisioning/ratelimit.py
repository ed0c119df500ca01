"""Request rate limiting shared by every process and node that calls the same provider.

Alibaba Mail allows 40 requests per second per mail domain, shared by every app of that domain: a limit
per process would let four gunicorn workers on two nodes send eight times too much. Both limiters here
use the generic cell rate algorithm (GCRA): one "theoretical arrival time" per key, so requests are
spaced ``1/rate`` apart with at most ``burst`` of them back to back, and no fixed window lets twice
the rate through at a window boundary.

``RedisRateLimiter`` keeps that time in Redis and reads the clock of the Redis server (``TIME``), so
nodes with skewed clocks still agree. ``LocalRateLimiter`` is the same algorithm in one process, for a
single-node install without Redis.

Spacing alone cannot promise zero 429s. The API counts requests when they *arrive*, and a request
granted at ``t`` arrives somewhere between ``t`` and the moment its answer is back: a thread that waits
for the GIL, a server thread that waits for a lock, the network. Measured with four threads against the
emulator, a request reached the server's rate check up to 25 ms after its slot was granted while the
next one arrived on time; at 39/s (25.6 ms apart) that is enough to put 41 arrivals in one second. So
``ArrivalWindow`` guards the API's own contract ("N requests in any one-second window") directly: a
request may be sent only while fewer than N earlier requests could still arrive within one second of
it, where a request answered at ``e`` can have arrived no later than ``e``, and one still in flight
could arrive any time. That holds whatever the jitter is, and costs only a round trip of throughput
per second (N / (1 s + round trip)). ``LocalArrivalWindow`` does it in one process,
``RedisArrivalWindow`` across processes and nodes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
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


def _wait_or_raise(
    wait_s: float,
    deadline: float,
    key: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    if clock() + wait_s > deadline:
        raise RateLimited(f"rate limit for {key} would hold this request too long", retry_after=wait_s)
    sleep(wait_s)


class LocalRateLimiter:
    """GCRA in this process only; thread-safe."""

    def __init__(
        self,
        rate_per_second: float,
        burst: int = 1,
        max_wait: float = 30.0,
        key: str = "local",
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``clock`` and ``sleep`` are how it reads and waits out time; tests pass ones they can move."""
        self._gcra = _Gcra(rate_per_second, burst)
        self._max_wait = max_wait
        self._key = key
        self._clock = clock
        self._sleep = sleep
        self._tat_us = 0
        self._lock = threading.Lock()

    def try_acquire(self) -> float:
        """Take a slot now and return 0, or return the seconds to wait before trying again."""
        with self._lock:
            now = round(self._clock() * 1_000_000)
            tat = max(self._tat_us, now)
            allow_at = tat - self._gcra.tolerance_us
            if now < allow_at:
                return (allow_at - now) / 1_000_000
            self._tat_us = tat + self._gcra.interval_us
            return 0.0

    def acquire(self) -> None:
        deadline = self._clock() + self._max_wait
        while (wait := self.try_acquire()) > 0:
            _wait_or_raise(wait, deadline, self._key, self._clock, self._sleep)


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


class ArrivalWindow(Protocol):
    def slot(self) -> contextlib.AbstractContextManager[None]:
        """Hold one of the window's places while a request is sent and answered (the block); block
        until a place is free, raise RateLimited when that would take too long."""
        ...


def _blocking_end(ends: list[float], limit: int) -> float:
    """The end time that must leave the window before one more request fits: with ``count`` ends in
    the window, the (count - limit + 1)-th earliest."""
    return sorted(ends)[len(ends) - limit]


class LocalArrivalWindow:
    """At most ``limit`` requests that could arrive within any ``window`` seconds, in this process.

    Each place is held from the grant (the earliest the request can arrive) until ``window`` seconds
    after its answer came back (the latest it can have arrived, plus the window). Thread-safe; a
    thread that waits on a request still in flight is woken when that request is answered.
    """

    def __init__(self, limit: int, window: float = 1.0, max_wait: float = 30.0, key: str = "local") -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if window <= 0:
            raise ValueError("window must be positive")
        self._limit, self._window, self._max_wait, self._key = limit, window, max_wait, key
        self._ends: dict[int, float] = {}  # slot -> when it was answered; inf while in flight
        self._ids = itertools.count()
        self._changed = threading.Condition()

    def _try_take(self, now: float) -> tuple[int | None, float]:
        """(slot, 0) when a place was taken, else (None, seconds until one may be free)."""
        horizon = now - self._window
        for slot in [s for s, end in self._ends.items() if end <= horizon]:
            del self._ends[slot]
        if len(self._ends) < self._limit:
            slot = next(self._ids)
            self._ends[slot] = float("inf")
            return slot, 0.0
        return None, _blocking_end(list(self._ends.values()), self._limit) + self._window - now

    def acquire(self) -> int:
        """Take a place and return its slot number, for ``release``."""
        deadline = time.monotonic() + self._max_wait
        with self._changed:
            while True:
                now = time.monotonic()
                slot, wait = self._try_take(now)
                if slot is not None:
                    return slot
                # wait is inf while the place is held by a request in flight: release() wakes us.
                if now >= deadline or (wait != float("inf") and now + wait > deadline):
                    retry_after = None if wait == float("inf") else wait
                    raise RateLimited(
                        f"rate limit for {self._key} would hold this request too long", retry_after=retry_after
                    )
                self._changed.wait(timeout=min(wait, deadline - now))

    def release(self, slot: int) -> None:
        """The request of ``slot`` was answered (or failed): it arrived by now, if at all."""
        with self._changed:
            if slot in self._ends:
                self._ends[slot] = time.monotonic()
            self._changed.notify_all()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        slot = self.acquire()
        try:
            yield
        finally:
            self.release(slot)


# KEYS[1]: a sorted set of slots scored by the latest time each can arrive, in microseconds of the
# Redis clock (grant time + ARGV[3] while in flight, the answer's time once answered).
# ARGV[1]: window; ARGV[2]: limit; ARGV[3]: in-flight bound; ARGV[4]: slot id; ARGV[5]: poll interval.
# Returns 0 when the slot was taken, else the microseconds to wait.
_WINDOW_ACQUIRE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local bound = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + bound), ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil((bound + window) / 1000) + 1000)
  return 0
end
local blocking = redis.call('ZRANGE', KEYS[1], count - limit, count - limit, 'WITHSCORES')
local ends = tonumber(blocking[2])
if ends > now then return tonumber(ARGV[5]) end
return ends + window - now
"""

# KEYS[1] as above; ARGV[1]: the slot id. Marks the slot answered now (if it is still held).
_WINDOW_RELEASE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now), ARGV[1])
return 0
"""


class RedisArrivalWindow:
    """``LocalArrivalWindow`` whose places live in Redis, shared by every process and node on ``key``.

    A slot still in flight is counted until ``in_flight_bound`` seconds after its grant (the longest
    a request may take, timeouts included), so a node that dies mid-request frees its places by
    itself. Times are the Redis server's clock, so nodes with skewed clocks still agree. Without
    Redis, the window falls back to one in this process, like ``RedisRateLimiter``.
    """

    _POLL_US = 5_000  # waiting on an answer still in flight elsewhere: ask again this often

    def __init__(
        self,
        redis_url: str,
        key: str,
        limit: int,
        window: float = 1.0,
        max_wait: float = 30.0,
        in_flight_bound: float = 60.0,
        socket_timeout: float = 2.0,
    ) -> None:
        self._fallback = LocalArrivalWindow(limit, window, max_wait, key)
        self._key, self._limit, self._max_wait = key, limit, max_wait
        self._window_us, self._bound_us = int(window * 1_000_000), int(in_flight_bound * 1_000_000)
        self._redis = redis.Redis.from_url(
            redis_url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
        )
        self._acquire = self._redis.register_script(_WINDOW_ACQUIRE_SCRIPT)
        self._release = self._redis.register_script(_WINDOW_RELEASE_SCRIPT)
        self._warned = False

    def _try_take(self, member: str) -> float:
        args: list[int | str] = [self._window_us, self._limit, self._bound_us, member, self._POLL_US]
        return int(self._acquire(keys=[self._key], args=args)) / 1_000_000

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        member = uuid.uuid4().hex
        deadline = time.monotonic() + self._max_wait
        try:
            while (wait := self._try_take(member)) > 0:
                _wait_or_raise(wait, deadline, self._key)
        except redis.RedisError as exc:
            if not self._warned:
                log.warning("rate limiter store unreachable (%s); limiting this process alone", type(exc).__name__)
                self._warned = True
            in_store = False
        else:
            in_store, self._warned = True, False
        if not in_store:
            with self._fallback.slot():
                yield
            return
        try:
            yield
        finally:
            try:
                self._release(keys=[self._key], args=[member])
            except redis.RedisError:
                # The slot then counts until its in-flight bound runs out: slower, never over the limit.
                log.warning("could not release a rate limit slot in the store; it expires by itself")

    def close(self) -> None:
        self._redis.close()


def make_arrival_window(
    limit: int,
    key: str,
    redis_url: str = "",
    window: float = 1.0,
    max_wait: float = 30.0,
    in_flight_bound: float = 60.0,
) -> ArrivalWindow:
    """Redis-backed when ``redis_url`` is set (several processes or nodes), in-process otherwise."""
    if redis_url:
        return RedisArrivalWindow(
            redis_url, key, limit, window=window, max_wait=max_wait, in_flight_bound=in_flight_bound
        )
    return LocalArrivalWindow(limit, window=window, max_wait=max_wait, key=key)
