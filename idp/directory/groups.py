"""Nested group membership without a search per sign-in.

AD's "member of, transitively" search (LDAP_MATCHING_RULE_IN_CHAIN) costs the DC more than the password
bind itself (measured: 87 searches/s against 174 binds/s on the test DC). Instead, the person's direct
groups come with the user lookup (``memberOf``) and the nesting between groups, which changes rarely,
is read once and kept: a sign-in then costs the DC one search and one bind.

Direct membership is always current (memberOf is read at every sign-in). A change in how groups nest
shows after ``ttl`` seconds, or at once when a sign-in meets a group the graph does not know yet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from idp.directory.errors import DirectoryError
from idp.person import GroupRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Group:
    dn: str
    cn: str
    parents: tuple[str, ...]
    """DNs of the groups this group is a member of (its own memberOf), lower-cased."""
    sid: str = ""
    """objectSid, as S-1-5-21-..."""
    security: bool = False
    """groupType has the security bit. Distribution groups (mailing lists) never grant access."""

    @property
    def ref(self) -> GroupRef:
        return GroupRef(sid=self.sid, dn=self.dn)


SECURITY_GROUP_BIT = 0x80000000
"""In groupType (a signed 32-bit value: -2147483646 is a global security group, 2 a global distribution one)."""


class GroupNotResolved(ValueError):
    """A group name or DN an admin typed does not lead to exactly one security group; the message says why."""


def resolve_group(text: str, groups: Iterable[Group]) -> GroupRef:
    """The security group ``text`` (a name, a DN or a SID) means, as an identity to store.

    A name must match exactly one security group's cn: guessing between two same-named groups in different
    OUs would let whoever may create a group in any OU decide who gets in."""
    ref = GroupRef.parse(text)
    if ref.sid:
        found = [g for g in groups if g.sid.upper() == ref.sid]
        what = ref.sid
    elif ref.dn:
        found = [g for g in groups if g.dn.casefold() == ref.dn.casefold()]
        what = ref.dn
    else:
        found = [g for g in groups if g.cn.casefold() == (ref.name or "").casefold()]
        what = repr(ref.name)
    security = [g for g in found if g.security]
    if len(security) == 1:
        return security[0].ref
    if len(security) > 1:
        dns = "; ".join(sorted(g.dn for g in security))
        raise GroupNotResolved(f"{what} names {len(security)} security groups ({dns}): give the DN of the one you mean")
    if found:
        raise GroupNotResolved(f"{what} is a distribution group: only security groups can grant access")
    raise GroupNotResolved(f"AD has no group {what}")


class GroupsNotResolved(ValueError):
    """Some of the groups an admin typed are not one security group each: ``refused`` are those texts, and the
    message says why for every one, so that all are mended at once."""

    def __init__(self, refused: list[str], problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.refused = refused


def resolve_groups(texts: Iterable[str], groups: Sequence[Group]) -> list[GroupRef]:
    """Each of ``texts`` as ``resolve_group`` gives it, in order; GroupsNotResolved names every one that is not."""
    refs: list[GroupRef] = []
    refused: list[str] = []
    problems: list[str] = []
    for text in texts:
        try:
            refs.append(resolve_group(text, groups))
        except GroupNotResolved as exc:
            refused.append(text)
            problems.append(str(exc))
    if refused:
        raise GroupsNotResolved(refused, problems)
    return refs


@dataclass(frozen=True)
class Memberships:
    """A person's groups, read from one state of the graph."""

    groups: list[Group]
    """Every group, nested included, sorted by cn: what attribute release lists."""
    security: list[Group]
    """The security groups reached through security groups only, sorted by cn: what access compares. A
    mailing list nested in a security group passes on no membership: distribution groups grant nothing."""
    unique_names: list[str]
    """cn of those security groups no other security group in the domain shares."""


def _walk(groups: dict[str, Group], direct: list[str], *, security_only: bool) -> list[Group]:
    found: dict[str, Group] = {}
    todo = list(direct)
    while todo:
        dn = todo.pop()
        if dn in found:
            continue  # AD allows cycles between groups
        group = groups.get(dn)
        if group is None:
            continue  # outside base_dn (another domain's group): nothing known about its nesting
        if security_only and not group.security:
            continue
        found[dn] = group
        todo.extend(group.parents)
    return sorted(found.values(), key=lambda g: g.cn.casefold())


GroupLoader = Callable[[], Iterable[Group]]
"""Reads every group under the base DN with its cn and memberOf (a paged search)."""

MIN_RELOAD_INTERVAL = 5.0
"""A burst of sign-ins naming unknown groups (a new group, or a DN outside base_dn) reloads at most this often."""


class GroupGraph:
    def __init__(self, load: GroupLoader, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._load = load
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._groups: dict[str, Group] = {}
        self._security_names: dict[str, int] = {}
        """How many security groups have each (case-folded) cn."""
        self._loaded_at = float("-inf")

    def resolve(self, direct_group_dns: Iterable[str]) -> list[Group]:
        """Every group the direct groups lead to (themselves included), sorted by cn."""
        return self.memberships(direct_group_dns).groups

    def memberships(self, direct_group_dns: Iterable[str]) -> Memberships:
        direct = [dn.lower() for dn in direct_group_dns]
        with self._lock:
            groups, names = self._current(direct), self._security_names
        security = _walk(groups, direct, security_only=True)
        return Memberships(
            groups=_walk(groups, direct, security_only=False),
            security=security,
            unique_names=[g.cn for g in security if names.get(g.cn.casefold()) == 1],
        )

    def _current(self, wanted: list[str]) -> dict[str, Group]:
        """The groups as last read, read again first when stale; with the lock held."""
        age = self._clock() - self._loaded_at
        unknown = any(dn not in self._groups for dn in wanted)
        if age > self._ttl or (unknown and age > MIN_RELOAD_INTERVAL):
            self._reload()
        return self._groups

    def _reload(self) -> None:
        started = time.monotonic()  # how long AD took, for the log: real time whatever the cache's clock
        try:
            groups = {g.dn.lower(): g for g in self._load()}
        except DirectoryError as exc:
            if not self._groups:
                raise
            # Nesting a few minutes old beats refusing every sign-in while one DC is down; try again soon.
            log.warning("could not re-read the group nesting, keeping the last one: %s", exc)
            self._loaded_at = self._clock() - self._ttl + MIN_RELOAD_INTERVAL
            return
        names: dict[str, int] = {}
        for group in groups.values():
            if group.security:
                names[group.cn.casefold()] = names.get(group.cn.casefold(), 0) + 1
        self._groups, self._security_names = groups, names
        self._loaded_at = self._clock()
        log.info("read %d groups and their nesting in %.0f ms", len(groups), 1000 * (time.monotonic() - started))
