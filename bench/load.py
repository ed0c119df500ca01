"""Drive a client callable from N concurrent clients for a bounded time and count, and time each call.

Clients run as threads spread over a few forked processes: one Python process would otherwise make the
client's own GIL the bottleneck (building signed AuthnRequests, parsing pages) instead of the server.
Every client does its set-up (sign in once, open an LDAP connection) before a shared barrier, so only
the steady state is timed.

A step is either closed-loop (each client calls again as soon as its previous call answered: the most the
server gives, its capacity) or paced (open loop: calls are due at fixed times whatever the server does).
Paced latency is timed from when a call was *due*, not from when it was sent: a client held up by a slow
answer sends its next call late, and that wait is the server's doing. Timing from the send instead would
hide every stall behind the calls the stalled client never made ("coordinated omission").
"""

from __future__ import annotations

import contextlib
import functools
import math
import multiprocessing
import queue as queue_module
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

MAX_PROCESSES = 4
"""Enough processes that the load generator is not GIL-bound on a 2-core machine, few enough to stay light."""
SAMPLES_PER_CLIENT = 2
"""Results each client keeps for validation after the timed loop (the rest are dropped unpickled)."""
_GIVE_UP_AFTER_ERRORS = 25
PACED_LEAD_SECONDS = 0.05
"""A paced schedule starts this long after the start signal: the woken clients (16 threads on 2 cores)
and the parent's first CPU readings are done by then, instead of showing up as the first calls' latency."""


class Client(Protocol):
    def prepare(self) -> Any:
        """Untimed work done before each call (e.g. build and sign the AuthnRequest)."""

    def call(self, prepared: Any) -> Any:
        """The timed call; raise on any unexpected answer. Its return value may be kept as a sample."""


ClientFactory = Callable[[int], Client]


class LoadError(RuntimeError):
    """A load step could not run (a client failed to set up, or the workers did not report)."""


@dataclass
class StepResult:
    name: str
    concurrency: int
    ops: int
    errors: int
    seconds: float
    latencies: list[float] = field(repr=False)
    first_error: str | None = None
    samples: list[Any] = field(default_factory=list, repr=False)
    client_cpu_seconds: float = 0.0
    """CPU the load generator's client threads used in the timed loop (they share the machine's cores)."""
    watched_cpu_seconds: dict[str, float] = field(default_factory=dict)
    """CPU each watched party (the IdP, the DC) used from the start signal to the last report."""
    rate_per_second: float | None = None
    """The paced step's target rate over all clients; None for a closed-loop step."""
    unsent: int = 0
    """Paced calls never sent: their clients had fallen too far behind the schedule (see _paced_loop)."""

    @property
    def per_second(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index] * 1000

    def cpu_ms(self, who: str) -> float:
        """CPU per operation of a watched party (``idp``, ``samba``), in ms; 0 when it was not watched."""
        seconds = self.watched_cpu_seconds.get(who)
        return 0.0 if seconds is None or self.ops == 0 else seconds * 1000 / self.ops

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "ops": self.ops,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "per_second": round(self.per_second, 2),
            "p50_ms": _round(self.percentile_ms(0.50)),
            "p99_ms": _round(self.percentile_ms(0.99)),
            "first_error": self.first_error,
            "target_per_second": _round(self.rate_per_second),
            "unsent": self.unsent,
            "cpu_ms_per_op": {
                "load_generator": _per_op_ms(self.client_cpu_seconds, self.ops),
                **{who: _per_op_ms(sec, self.ops) for who, sec in self.watched_cpu_seconds.items()},
            },
        }


def run_step(
    name: str,
    factory: ClientFactory,
    concurrency: int,
    *,
    seconds: float,
    max_ops_per_client: int,
    watch_cpu: Mapping[str, Callable[[], float]] | None = None,
    rate_per_second: float | None = None,
) -> StepResult:
    """Run ``concurrency`` clients until ``seconds`` pass or each made ``max_ops_per_client`` calls.

    ``watch_cpu`` maps a name ("idp", "samba") to a function returning the CPU seconds its processes used
    so far; each is read when the clients start and again when the last one has reported.

    With ``rate_per_second`` the step is paced: call k of a global schedule is due at start + k / rate, and
    client i makes calls i, i + concurrency, i + 2 * concurrency, ... of it. Latency counts from the due
    time; ``per_second`` is then the rate achieved.
    """
    if rate_per_second is not None and rate_per_second <= 0:
        raise ValueError(f"{name}: a paced step needs a positive rate, not {rate_per_second}")
    ctx = multiprocessing.get_context("fork")
    processes = min(concurrency, MAX_PROCESSES)
    # One start time for every client, written once by whichever party reaches the barrier last.
    start_at = ctx.Value("d", 0.0, lock=False)
    barrier = ctx.Barrier(concurrency + 1, action=functools.partial(_set_start, start_at))
    plan = _Plan(seconds, max_ops_per_client, concurrency, rate_per_second, start_at)
    results: multiprocessing.Queue = ctx.Queue()
    workers = [
        ctx.Process(
            target=_worker, args=(factory, list(range(p, concurrency, processes)), barrier, results, plan), daemon=True
        )
        for p in range(processes)
    ]
    for w in workers:
        w.start()
    # A broken barrier means a client failed to set up; its report below says why.
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(timeout=120)
    watch_cpu = watch_cpu or {}
    cpu_before = {who: read() for who, read in watch_cpu.items()}
    reports: list[dict[str, Any]] = []
    try:
        for _ in range(concurrency):
            # A paced client may send for up to twice the step's length when it fell behind.
            reports.append(results.get(timeout=2 * seconds + 120))
    except queue_module.Empty:
        raise LoadError(f"{name}: only {len(reports)} of {concurrency} clients reported") from None
    finally:
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():
                w.terminate()
    watched = {who: read() - cpu_before[who] for who, read in watch_cpu.items()}
    setup_failures = [r["setup_error"] for r in reports if r["setup_error"]]
    if setup_failures:
        raise LoadError(f"{name}: {len(setup_failures)} client(s) could not set up: {setup_failures[0]}")
    return _result(name, concurrency, reports, watched, rate_per_second)


def _result(
    name: str,
    concurrency: int,
    reports: list[dict[str, Any]],
    watched: dict[str, float],
    rate_per_second: float | None,
) -> StepResult:
    latencies = [x for r in reports for x in r["latencies"]]
    return StepResult(
        name=name,
        concurrency=concurrency,
        ops=len(latencies),
        errors=sum(r["errors"] for r in reports),
        seconds=max(r["end"] for r in reports) - min(r["start"] for r in reports),
        latencies=latencies,
        first_error=next((r["first_error"] for r in reports if r["first_error"]), None),
        samples=[s for r in reports for s in r["samples"]],
        client_cpu_seconds=sum(r["cpu"] for r in reports),
        watched_cpu_seconds=watched,
        rate_per_second=rate_per_second,
        unsent=sum(r["unsent"] for r in reports),
    )


@dataclass(frozen=True)
class _Plan:
    """What every client of a step is told to do (handed over by fork, never pickled)."""

    seconds: float
    max_ops: int
    concurrency: int
    rate: float | None
    start_at: Any
    """A shared double: CLOCK_MONOTONIC time at which a paced schedule's call 0 is due."""


def _set_start(start_at: Any) -> None:
    start_at.value = time.monotonic() + PACED_LEAD_SECONDS


def _worker(
    factory: ClientFactory, indexes: list[int], barrier: Any, results: multiprocessing.Queue, plan: _Plan
) -> None:
    threads = [threading.Thread(target=_client_loop, args=(factory, i, barrier, results, plan)) for i in indexes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _client_loop(factory: ClientFactory, index: int, barrier: Any, results: multiprocessing.Queue, plan: _Plan) -> None:
    report: dict[str, Any] = {
        "setup_error": None,
        "latencies": [],
        "errors": 0,
        "first_error": None,
        "samples": [],
        "start": time.monotonic(),
        "end": time.monotonic(),
        "cpu": 0.0,
        "unsent": 0,
    }
    client: Client | None = None
    try:
        client = factory(index)
    except Exception as exc:
        report["setup_error"] = f"client {index}: {exc!r}"[:500]
        barrier.abort()
    try:
        barrier.wait(timeout=120)
    except threading.BrokenBarrierError:
        client = None
        report["setup_error"] = report["setup_error"] or f"client {index}: another client failed to set up"
    if client is not None and plan.rate is None:
        _timed_loop(client, report, plan.seconds, plan.max_ops)
    elif client is not None:
        _paced_loop(client, report, plan, index)
    results.put(report)


def _timed_loop(client: Client, report: dict[str, Any], seconds: float, max_ops: int) -> None:
    latencies: list[float] = report["latencies"]
    # CLOCK_MONOTONIC is system-wide on Linux, so start/end compare across the worker processes.
    start = time.monotonic()
    cpu_start = time.thread_time()
    deadline = start + seconds
    while len(latencies) < max_ops and time.monotonic() < deadline:
        try:
            prepared = client.prepare()
            began = time.perf_counter()
            sample = client.call(prepared)
            latencies.append(time.perf_counter() - began)
        except Exception as exc:
            if _failed(report, exc):
                break
            continue
        _keep(report, sample)
    report["start"], report["end"] = start, time.monotonic()
    report["cpu"] = time.thread_time() - cpu_start


def _paced_loop(client: Client, report: dict[str, Any], plan: _Plan, index: int) -> None:
    assert plan.rate is not None
    latencies: list[float] = report["latencies"]
    start = plan.start_at.value
    cpu_start = time.thread_time()
    gap = plan.concurrency / plan.rate  # between this client's own slots
    slots = min(plan.max_ops, max(0, math.ceil((plan.seconds * plan.rate - index) / plan.concurrency)))
    # A client that falls a whole step behind stops there, so an overloaded server cannot stretch the step
    # without bound; the calls it did not send are reported as unsent, not silently dropped.
    give_up = start + 2 * plan.seconds
    for slot in range(slots):
        due = start + (index / plan.rate) + slot * gap
        if time.monotonic() > give_up:
            report["unsent"] = slots - slot
            break
        try:
            # Prepared before the due time: the generator's own work is not the server's latency.
            prepared = client.prepare()
            _sleep_until(due)
            sample = client.call(prepared)
            latencies.append(time.monotonic() - due)
        except Exception as exc:
            if _failed(report, exc):
                report["unsent"] = slots - slot - 1
                break
            continue
        _keep(report, sample)
    report["start"], report["end"] = start, time.monotonic()
    report["cpu"] = time.thread_time() - cpu_start


def _sleep_until(when: float) -> None:
    delay = when - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def _failed(report: dict[str, Any], exc: Exception) -> bool:
    """Count a failed call; True when the client should stop."""
    report["errors"] += 1
    report["first_error"] = report["first_error"] or repr(exc)[:500]
    # Something is broken: do not hammer the server with failing calls.
    return bool(report["errors"] >= _GIVE_UP_AFTER_ERRORS and report["errors"] > len(report["latencies"]))


def _keep(report: dict[str, Any], sample: Any) -> None:
    if sample is not None and len(report["samples"]) < SAMPLES_PER_CLIENT:
        report["samples"].append(sample)


def _per_op_ms(cpu_seconds: float, ops: int) -> float | None:
    return round(1000 * cpu_seconds / ops, 2) if ops else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
