"""AD's account lockout policy as it applies to one person: the domain's, or a fine-grained one (a PSO).

The sign-in throttle stops at least one wrong password below this threshold, so nobody can use the login
page to lock an employee out of Windows. AD keeps the threshold on the domain object (lockoutThreshold,
lockOutObservationWindow) and, for people a Password Settings Object applies to, on that PSO
(msDS-LockoutThreshold, msDS-LockoutObservationWindow), named by the person's constructed msDS-ResultantPSO.
By default only domain admins may read PSOs: when the service account cannot, the threshold is unknown and
the throttle falls back to ``login.unknown_lockout_threshold``; `idp ldap test` says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

_TICKS_PER_SECOND = 10_000_000  # AD intervals are negative counts of 100 ns

DOMAIN_ATTRIBUTES = ("lockoutThreshold", "lockOutObservationWindow")
PSO_ATTRIBUTES = ("msDS-LockoutThreshold", "msDS-LockoutObservationWindow")


@dataclass(frozen=True)
class LockoutPolicy:
    threshold: int | None
    """Wrong passwords that lock the account; 0: AD never locks it; None: a PSO applies that we cannot read."""
    observation_window: float
    """Seconds after the last wrong password at which AD forgets the count."""
    source: str
    """"domain", or the DN of the PSO."""


def interval_seconds(value: str | None) -> float:
    """An AD interval attribute ("-18000000000") in seconds; missing or "never" (the minimum int64) as 0."""
    if not value:
        return 0.0
    ticks = abs(int(value))
    return 0.0 if ticks >= 2**63 - 1 else ticks / _TICKS_PER_SECOND


_FILETIME_EPOCH_OFFSET = 11_644_473_600  # seconds from 1601-01-01 (Windows FILETIME) to 1970-01-01


def filetime_seconds(value: str | None) -> float | None:
    """A FILETIME attribute (badPasswordTime, lockoutTime) as Unix seconds; None for missing or never (0)."""
    if not value or int(value) <= 0:
        return None
    return int(value) / _TICKS_PER_SECOND - _FILETIME_EPOCH_OFFSET


class LockoutPolicies:
    """Reads and caches policies: they change rarely, and one sign-in must not cost an extra search."""

    def __init__(
        self,
        read: Callable[[str, tuple[str, ...]], dict[str, str] | None],
        domain_dn: str,
        *,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``read(dn, attributes)`` returns the object's attributes (None when it cannot be read)."""
        self._read = read
        self._domain_dn = domain_dn
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, LockoutPolicy]] = {}

    def for_pso(self, pso_dn: str | None) -> LockoutPolicy:
        """The policy of a person whose msDS-ResultantPSO is ``pso_dn`` (None: the domain's applies)."""
        key = pso_dn or ""
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        policy = self._load_pso(pso_dn) if pso_dn else self._load_domain()
        with self._lock:
            self._cache[key] = (now, policy)
        return policy

    def domain(self) -> LockoutPolicy:
        return self.for_pso(None)

    def _load_domain(self) -> LockoutPolicy:
        found = self._read(self._domain_dn, DOMAIN_ATTRIBUTES) or {}
        return LockoutPolicy(
            threshold=int(found.get("lockoutThreshold") or 0),
            observation_window=interval_seconds(found.get("lockOutObservationWindow")),
            source="domain",
        )

    def _load_pso(self, pso_dn: str) -> LockoutPolicy:
        found = self._read(pso_dn, PSO_ATTRIBUTES)
        if found is None or "msDS-LockoutThreshold" not in found:
            # The PSO exists (AD named it) but is hidden from us; its window is unknown too, so take the
            # domain's, which is what most PSOs copy.
            return LockoutPolicy(None, self._load_domain().observation_window, pso_dn)
        return LockoutPolicy(
            threshold=int(found["msDS-LockoutThreshold"] or 0),
            observation_window=interval_seconds(found.get("msDS-LockoutObservationWindow")),
            source=pso_dn,
        )
