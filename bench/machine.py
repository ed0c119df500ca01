"""What else the machine did while the benchmark ran: the CPU is shared, so every figure needs this next to it.

The machine's busy time comes from /proc/stat; the benchmark's own share (this process, its children such
as gunicorn and the load generator, and the Samba DC it started, which runs in a session of its own) is
subtracted, leaving what other people's work took. The per-command breakdown compares per-process
counters, so it misses processes that started and ended in between; the total does not.

Steal (time the hypervisor gave another guest while ours wanted a CPU) is reported on its own: it is part
of the other work, but no process on this machine shows it, and it slows every step without a trace.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class _Proc:
    comm: str
    ppid: int
    session: int
    cpu_seconds: float
    reaped_children_cpu_seconds: float


def _processes() -> dict[int, _Proc]:
    out: dict[int, _Proc] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        # comm may contain spaces and parentheses: split after the last ")".
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        ppid, session = int(fields[1]), int(fields[3])
        utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
        out[int(entry.name)] = _Proc(comm, ppid, session, (utime + stime) / _TICKS, (cutime + cstime) / _TICKS)
    return out


class CpuWitness:
    """Snapshot at start(); report() tells how much CPU other processes used since then."""

    def __init__(self) -> None:
        self._before: dict[int, _Proc] = {}
        self._started = 0.0
        self._load_before = (0.0, 0.0, 0.0)
        self._own_sessions: set[int] = set()
        self._busy_before = 0.0
        self._steal_before = 0.0
        self._ours_before = 0.0

    def start(self) -> None:
        self._before = _processes()
        self._started = time.monotonic()
        self._load_before = os.getloadavg()
        self._busy_before, self._steal_before = _machine_busy_and_steal_seconds()
        self._ours_before = self._ours(self._before)

    def exclude_session(self, pid: int | None) -> None:
        """Leave out a daemon the benchmark started (it detached into a session of its own)."""
        if pid is not None:
            self._own_sessions.add(pid)

    def _ours(self, procs: dict[int, _Proc]) -> float:
        """CPU of the live processes that are ours, plus what their already-reaped children used."""
        ours = _descendants(os.getpid(), procs)
        return sum(
            p.cpu_seconds + p.reaped_children_cpu_seconds
            for pid, p in procs.items()
            if pid in ours or p.session in self._own_sessions
        )

    def report(self) -> dict[str, object]:
        """Call while everything the benchmark started still runs (a stopped daemon takes its counters along)."""
        after = _processes()
        busy_now, steal_now = _machine_busy_and_steal_seconds()
        busy, steal = busy_now - self._busy_before, steal_now - self._steal_before
        own = self._ours(after) - self._ours_before
        ours = _descendants(os.getpid(), after)
        used: dict[str, float] = {}
        for pid, proc in after.items():
            if pid in ours or proc.session in self._own_sessions:
                continue
            before = self._before.get(pid)
            earlier = before.cpu_seconds if before is not None and before.comm == proc.comm else 0.0
            if proc.cpu_seconds > earlier:
                used[proc.comm] = used.get(proc.comm, 0.0) + proc.cpu_seconds - earlier
        elapsed = time.monotonic() - self._started
        cores = os.cpu_count() or 1
        others = max(0.0, busy - own)
        top = sorted(used.items(), key=lambda item: item[1], reverse=True)[:6]
        return {
            "cores": cores,
            "wall_seconds": round(elapsed, 1),
            "machine_busy_cpu_seconds": round(busy, 1),
            "benchmark_cpu_seconds": round(own, 1),
            "other_cpu_seconds": round(others, 1),
            "other_share_of_machine": _share(others, elapsed * cores),
            "other_top": {name: round(sec, 1) for name, sec in top},
            "steal_cpu_seconds": round(steal, 2),
            # Usually a small fraction of a percent, yet worth telling apart from none at all.
            "steal_share_of_machine": _share(steal, elapsed * cores, digits=6),
            "loadavg_before": [round(x, 2) for x in self._load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        }


def _machine_busy_and_steal_seconds() -> tuple[float, float]:
    """All CPUs' non-idle time since boot (steal included: time another guest took from us), and the steal."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / _TICKS, steal / _TICKS


def _share(seconds: float, of_seconds: float, digits: int = 3) -> float | None:
    return round(seconds / of_seconds, digits) if of_seconds else None


def cpu_seconds_of(pids: list[int]) -> float:
    """CPU seconds used so far by these processes (those that are gone count as zero)."""
    procs = _processes()
    return sum(procs[p].cpu_seconds for p in pids if p in procs)


def cpu_seconds_of_session(session: int) -> float:
    """CPU seconds used so far by every process in a session (a daemon and the children it forked), those that
    exited since included: a child's counters go to its parent's reaped-children counters when it is reaped."""
    return sum(p.cpu_seconds + p.reaped_children_cpu_seconds for p in _processes().values() if p.session == session)


def _descendants(root: int, procs: dict[int, _Proc]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, proc in procs.items():
        children.setdefault(proc.ppid, []).append(pid)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
