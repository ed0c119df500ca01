"""Whether this node holds the same secrets as the other nodes that share its database.

Nodes behind one name must share the secret key (a login form served by one node is posted to another: with
two keys its CSRF token is refused), the signing key, the persistent-NameID secret (an SP would otherwise
see a person's NameID change with the node that answered) and the MFA key (a second factor enrolled through
one node must open on the others). A node that made its own secret key in its own
data directory works alone and fails its neighbours' forms; nothing else says so.

Each node announces fingerprints of its secrets in the shared database (a row of the small ``sync_leases``
table named ``node <host> <pid>``, whose expiry /readyz keeps pushing ROW_LIFETIME ahead: a stopped node's row
runs out) and compares them with every other live node's. A fingerprint is a keyed digest of the secret
(or the signing certificate's SHA-256): it tells two secrets apart and reveals nothing of either.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from idp.store.db import Database, rowcount
from idp.store.models import SyncLeaseRow, utcnow

ROW_PREFIX = "node "
ANNOUNCE_EVERY = timedelta(seconds=20)
"""How often one process rewrites its node's row (and reads the others'), however often /readyz is asked."""
ROW_LIFETIME = timedelta(seconds=120)
"""A node whose row was not refreshed for this long has stopped: its secrets no longer count."""
_LABEL = b"ad-sso-bridge node fingerprint"


def fingerprint(secret: bytes) -> str:
    """12 hex digits that differ between two secrets and say nothing about either."""
    return hmac.new(secret, _LABEL, hashlib.sha256).hexdigest()[:12]


def this_node() -> str:
    """The host and the gunicorn master's pid (the workers' parent): one name for every worker of a server."""
    return f"{socket.gethostname()[:40]} {os.getppid()}"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    words: str
    """``ok`` or what differs from which node."""


class NodeSecrets:
    def __init__(
        self,
        db: Database,
        mine: Callable[[], dict[str, str]],
        *,
        node: str | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        """``mine`` returns this node's fingerprints by name (secret_key, signing_key, persistent_id_secret,
        mfa_key); it is called once per announcement, so a rotated key is seen within ANNOUNCE_EVERY."""
        self._db = db
        self._mine = mine
        self._node = node or this_node()
        self._now = now
        self._lock = threading.Lock()
        self._verdict: Verdict | None = None
        self._next_check: datetime | None = None

    def check(self) -> Verdict:
        """The last verdict, renewed when ANNOUNCE_EVERY has passed; raises what the database raises."""
        with self._lock:
            now = self._now()
            if self._verdict is None or self._next_check is None or now >= self._next_check:
                self._verdict = self._announce_and_compare(now)
                self._next_check = now + ANNOUNCE_EVERY
            return self._verdict

    def _announce_and_compare(self, now: datetime) -> Verdict:
        mine = self._mine()
        holder = _encode(mine)
        name = (ROW_PREFIX + self._node)[:60]
        expires = now + ROW_LIFETIME
        with self._db.engine.begin() as conn:
            stopped = SyncLeaseRow.name.startswith(ROW_PREFIX) & (SyncLeaseRow.expires_at < now)
            conn.execute(delete(SyncLeaseRow).where(stopped))
            found = conn.execute(
                update(SyncLeaseRow).where(SyncLeaseRow.name == name).values(holder=holder, expires_at=expires)
            )
        if not rowcount(found):
            try:
                with self._db.engine.begin() as conn:
                    conn.execute(insert(SyncLeaseRow).values(name=name, holder=holder, expires_at=expires))
            except IntegrityError:
                pass  # another worker of this node wrote the same row a moment ago
        with self._db.engine.connect() as conn:
            others = conn.execute(
                select(SyncLeaseRow.name, SyncLeaseRow.holder).where(
                    SyncLeaseRow.name.startswith(ROW_PREFIX),
                    SyncLeaseRow.name != name,
                    SyncLeaseRow.expires_at >= now,
                )
            ).all()
        problems = []
        for other, their_holder in others:
            theirs = _decode(their_holder)
            differ = sorted(k for k in mine if k in theirs and theirs[k] != mine[k])
            if differ:
                problems.append(f"node {other.removeprefix(ROW_PREFIX)} has another {', '.join(differ)}")
        if problems:
            return Verdict(False, "error: " + "; ".join(problems))
        return Verdict(True, "ok")


def _encode(prints: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(prints.items()))[:200]


def _decode(holder: str) -> dict[str, str]:
    pairs = (part.partition("=") for part in holder.split())
    return {k: v for k, sep, v in pairs if sep}
