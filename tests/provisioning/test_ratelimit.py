"""The shared rate limiter: spacing, sharing through Redis, and holding the API's 40 requests/s."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import pytest

from idp.demo.alimail_emulator import RunningEmulator, run_emulator
from idp.provisioning import RateLimited
from idp.provisioning.alimail import AlimailProvider, AlimailSettings
from idp.provisioning.provider import MailboxSpec
from idp.provisioning.ratelimit import LocalArrivalWindow, LocalRateLimiter, RedisArrivalWindow, RedisRateLimiter
from tests.support import FakeClock


def _run_in_threads(work: Callable[[], None], count: int) -> float:
    """Run ``work`` in ``count`` threads started together; return the wall time they took."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def runner() -> None:
        barrier.wait()
        try:
            work()
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)

    threads = [threading.Thread(target=runner) for _ in range(count)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    if errors:
        raise errors[0]
    return time.monotonic() - started


def test_local_limiter_spaces_requests() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(rate_per_second=50, clock=clock, sleep=clock.advance)
    started = clock()
    for _ in range(26):
        limiter.acquire()
    # 26 requests at 50/s need 25 intervals of 20 ms, and no more.
    assert clock() - started == pytest.approx(0.5)


def test_limiter_gives_up_with_rate_limited_past_max_wait() -> None:
    clock = FakeClock()
    limiter = LocalRateLimiter(rate_per_second=1, max_wait=0.1, clock=clock, sleep=clock.advance)
    limiter.acquire()
    with pytest.raises(RateLimited) as caught:
        limiter.acquire()
    assert caught.value.retry_after == pytest.approx(1.0)


def test_two_redis_limiters_on_one_key_share_the_rate(redis_url: str, redis_key: str) -> None:
    limiters = [RedisRateLimiter(redis_url, redis_key, rate_per_second=40) for _ in range(2)]
    per_thread = iter(limiters)
    lock = threading.Lock()

    def work() -> None:
        with lock:
            limiter = next(per_thread)
        for _ in range(30):
            limiter.acquire()

    elapsed = _run_in_threads(work, 2)
    # 60 slots at 40/s take at least 59 intervals of 25 ms; two unshared limiters would take 0.725 s.
    assert elapsed >= 59 / 40 * 0.95
    for limiter in limiters:
        limiter.close()


def test_redis_unreachable_falls_back_to_a_local_limit(redis_key: str) -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", redis_key, rate_per_second=50, socket_timeout=0.2)
    started = time.monotonic()
    for _ in range(11):
        limiter.acquire()
    assert time.monotonic() - started >= 10 / 50 * 0.95
    limiter.close()


def _max_in_one_second(emu: RunningEmulator) -> int:
    times = sorted(c.at for c in emu.emulator.calls)
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


def _hammer(emu: RunningEmulator, settings: AlimailSettings, requests_each: int) -> float:
    providers = iter([AlimailProvider(settings), AlimailProvider(settings)])
    lock = threading.Lock()
    opened: list[AlimailProvider] = []

    def work() -> None:
        with lock:
            provider = next(providers)
            opened.append(provider)
        for i in range(requests_each):
            provider.find(f"nobody{i}@{settings.mail_domain}")

    try:
        return _run_in_threads(work, 2)
    finally:
        for provider in opened:
            provider.close()


def test_two_clients_sharing_redis_hold_40_per_second(
    redis_url: str, settings_for: Callable[..., AlimailSettings]
) -> None:
    # A mail domain of its own, so the Redis bucket is this test's alone.
    domain = f"{uuid.uuid4().hex[:12]}.example.com"
    with run_emulator(mail_domain=domain, rate_limit=40) as emu:
        settings = settings_for(emu, rate_per_second=40, redis_url=redis_url)
        elapsed = _hammer(emu, settings, requests_each=30)
        statuses = [c.status for c in emu.emulator.calls]
    # 2 token requests + 60 lookups, all answered (404: nobody exists), none refused for rate.
    assert len(statuses) == 62
    assert 429 not in statuses
    assert _max_in_one_second(emu) <= 41
    assert elapsed >= 61 / 40 * 0.9


def test_without_a_shared_store_the_api_pushes_back(settings_for: Callable[..., AlimailSettings]) -> None:
    """The control for the test above: two per-process limiters send 80/s; the emulator says 429,
    and the client's retries honouring Retry-After still get every request through."""
    with run_emulator(rate_limit=40) as emu:
        settings = settings_for(emu, rate_per_second=40)
        _hammer(emu, settings, requests_each=30)
        statuses = [c.status for c in emu.emulator.calls]
    assert 429 in statuses
    assert statuses.count(404) == 60


def _hold_in_thread(window: LocalArrivalWindow | RedisArrivalWindow, release: threading.Event) -> threading.Event:
    """Take one place of ``window`` in a thread and keep its request "in flight" until ``release``."""
    taken = threading.Event()

    def hold() -> None:
        with window.slot():
            taken.set()
            release.wait(timeout=10)

    threading.Thread(target=hold, daemon=True).start()
    assert taken.wait(timeout=5)
    return taken


def test_a_place_held_in_flight_frees_one_window_after_its_answer() -> None:
    window = LocalArrivalWindow(limit=2, window=0.3, max_wait=5)
    answered = threading.Event()
    _hold_in_thread(window, answered)
    _hold_in_thread(window, answered)
    # Both places held by requests in flight: the next waits for an answer (0.2 s), then one window,
    # because the server may have counted that request at any moment up to its answer.
    threading.Timer(0.2, answered.set).start()
    started = time.monotonic()
    with window.slot():
        waited = time.monotonic() - started
    assert waited >= (0.2 + 0.3) * 0.95


def test_a_window_full_of_requests_in_flight_gives_up_after_max_wait() -> None:
    window = LocalArrivalWindow(limit=1, window=0.1, max_wait=0.2)
    answered = threading.Event()
    _hold_in_thread(window, answered)
    started = time.monotonic()
    with pytest.raises(RateLimited), window.slot():
        pass
    assert 0.15 <= time.monotonic() - started < 1.0
    answered.set()


def test_two_redis_windows_on_one_key_share_their_places(redis_url: str, redis_key: str) -> None:
    first = RedisArrivalWindow(redis_url, redis_key, limit=1, window=0.3, max_wait=0.2)
    second = RedisArrivalWindow(redis_url, redis_key, limit=1, window=0.3, max_wait=5)
    answered = threading.Event()
    _hold_in_thread(first, answered)
    with pytest.raises(RateLimited), second.slot():
        pass
    answered.set()
    started = time.monotonic()
    with second.slot():
        waited = time.monotonic() - started
    assert waited >= 0.3 * 0.9
    first.close()
    second.close()


class _ArrivalJitter:
    """Make the emulator's rate check see requests late, as a busy server or a
    thread waiting for the GIL does: while on, every request arriving is held 100 ms before it is
    counted; it flips every 150 ms, so a stretch of late requests lands among on-time ones."""

    def __init__(self, emu: RunningEmulator) -> None:
        self._emu, self._stop = emu, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.15):
            self._emu.faults.latency = 0.0 if self._emu.faults.latency else 0.1

    def __enter__(self) -> _ArrivalJitter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._emu.faults.latency = 0.0


def _sync_like_load(settings: AlimailSettings, seconds: float, threads: int = 8) -> None:
    """``threads`` workers share one provider, creating mailboxes (with departments) for ``seconds``."""
    counter = iter(range(1_000_000))
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    with AlimailProvider(settings) as provider:

        def work() -> None:
            while time.monotonic() < stop_at:
                with lock:
                    i = next(counter)
                spec = MailboxSpec(
                    email=f"u{i}@{settings.mail_domain}", display_name=f"U {i}", department=(f"D{i % 3}",)
                )
                provider.create(spec)

        _run_in_threads(work, threads)


def _statuses_and_rate(emu: RunningEmulator) -> tuple[list[int], float]:
    calls = list(emu.emulator.calls)
    return [c.status for c in calls], (len(calls) - 1) / (calls[-1].at - calls[0].at)


def test_four_threads_at_the_default_settings_never_draw_a_429_however_arrivals_bunch(
    settings_for: Callable[..., AlimailSettings],
) -> None:
    defaults = AlimailSettings.model_fields
    with run_emulator(rate_limit=40) as emu, _ArrivalJitter(emu):
        settings = settings_for(
            emu,
            rate_per_second=defaults["rate_per_second"].default,
            api_limit_per_second=defaults["api_limit_per_second"].default,
        )
        _sync_like_load(settings, seconds=3.0)
        statuses, rate = _statuses_and_rate(emu)
    assert 429 not in statuses
    assert rate >= 40 * 0.85  # the window costs a round trip per second (up to 100 ms here), no more


def test_pacing_alone_below_the_limit_is_not_enough_when_arrivals_bunch(
    settings_for: Callable[..., AlimailSettings],
) -> None:
    """The control for the test above: 39/s spaced at our end, with no window on arrivals (a limit far
    above the API's), lets delayed and on-time requests land 41 in one second."""
    with run_emulator(rate_limit=40) as emu, _ArrivalJitter(emu):
        settings = settings_for(emu, rate_per_second=39, api_limit_per_second=1000)
        _sync_like_load(settings, seconds=3.0)
        statuses, _ = _statuses_and_rate(emu)
    assert 429 in statuses
