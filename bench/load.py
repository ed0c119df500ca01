"""Drive a client callable from N concurrent clients for a bounded time and count, and time each call.

Clients run as threads spread over a few forked processes: one Python process would otherwise make the
client's own GIL the bottleneck (building signed AuthnRequests, parsing pages) instead of the server.
Every client does its set-up (sign in once, open an LDAP connection) before a shared barrier, so only
the steady state is timed.
"""

from __future__ import annotations

import contextlib
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

    @property
    def per_second(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index] * 1000

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
) -> StepResult:
    """Run ``concurrency`` clients until ``seconds`` pass or each made ``max_ops_per_client`` calls.

    ``watch_cpu`` maps a name ("idp", "samba") to a function returning the CPU seconds its processes used
    so far; each is read when the clients start and again when the last one has reported.
    """
    ctx = multiprocessing.get_context("fork")
    processes = min(concurrency, MAX_PROCESSES)
    barrier = ctx.Barrier(concurrency + 1)
    results: multiprocessing.Queue = ctx.Queue()
    workers = [
        ctx.Process(
            target=_worker,
            args=(factory, list(range(p, concurrency, processes)), barrier, results, seconds, max_ops_per_client),
            daemon=True,
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
            reports.append(results.get(timeout=seconds + 120))
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
    latencies = [x for r in reports for x in r["latencies"]]
    errors = sum(r["errors"] for r in reports)
    first_error = next((r["first_error"] for r in reports if r["first_error"]), None)
    elapsed = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    return StepResult(
        name=name,
        concurrency=concurrency,
        ops=len(latencies),
        errors=errors,
        seconds=elapsed,
        latencies=latencies,
        first_error=first_error,
        samples=[s for r in reports for s in r["samples"]],
        client_cpu_seconds=sum(r["cpu"] for r in reports),
        watched_cpu_seconds=watched,
    )


def _worker(
    factory: ClientFactory,
    indexes: list[int],
    barrier: Any,
    results: multiprocessing.Queue,
    seconds: float,
    max_ops: int,
) -> None:
    threads = [
        threading.Thread(target=_client_loop, args=(factory, i, barrier, results, seconds, max_ops)) for i in indexes
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _client_loop(
    factory: ClientFactory, index: int, barrier: Any, results: multiprocessing.Queue, seconds: float, max_ops: int
) -> None:
    report: dict[str, Any] = {
        "setup_error": None,
        "latencies": [],
        "errors": 0,
        "first_error": None,
        "samples": [],
        "start": time.monotonic(),
        "end": time.monotonic(),
        "cpu": 0.0,
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
    if client is not None:
        _timed_loop(client, report, seconds, max_ops)
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
            report["errors"] += 1
            report["first_error"] = report["first_error"] or repr(exc)[:500]
            if report["errors"] >= _GIVE_UP_AFTER_ERRORS and report["errors"] > len(latencies):
                break  # something is broken: do not hammer the server with failing calls
            continue
        if sample is not None and len(report["samples"]) < SAMPLES_PER_CLIENT:
            report["samples"].append(sample)
    report["start"], report["end"] = start, time.monotonic()
    report["cpu"] = time.thread_time() - cpu_start


def _per_op_ms(cpu_seconds: float, ops: int) -> float | None:
    return round(1000 * cpu_seconds / ops, 2) if ops else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
