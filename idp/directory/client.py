"""The directory client used at every sign-in: find the person, check the password, read their groups.

One sign-in costs three LDAP round trips on already open connections: a search as the service account,
a bind as the person, and a search for their groups (nested membership included). Nothing else.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

from ldap3 import SIMPLE, SUBTREE, Connection
from ldap3.utils.conv import escape_filter_chars

from idp.directory.ad_codes import WRONG_USERNAME_OR_PASSWORD, bind_refusal
from idp.directory.errors import DirectoryError, InvalidCredentials
from idp.directory.groups import Group, GroupGraph
from idp.directory.pool import ConnectionPool, DomainControllers, PoolStats
from idp.person import Person
from idp.settings import LdapSettings

log = logging.getLogger(__name__)

_PERSON_ATTRIBUTES = (
    "sAMAccountName",
    "userPrincipalName",
    "mail",
    "displayName",
    "givenName",
    "sn",
    "objectGUID",
    "memberOf",
)
_MAX_USERNAME = 256
_GROUP_PAGE = 1000  # AD's default MaxPageSize


def normalize_username(raw: str, settings: LdapSettings) -> str:
    """What the person typed, in one canonical form: "alice" (sAMAccountName) or "alice@corp.example.com"
    (a UPN or a mail address). "CORP\\alice" becomes "alice" when CORP is our domain.

    Raises InvalidCredentials (with the same message as a wrong password) for a name that cannot be ours.
    """
    name = raw.strip()
    if "\\" in name:
        domain, _, name = name.partition("\\")
        ours = {settings.domain.casefold(), settings.realm.casefold()} - {""}
        if settings.domain and domain.strip().casefold() not in ours:
            raise InvalidCredentials(WRONG_USERNAME_OR_PASSWORD)
        name = name.strip()
    if not name or len(name) > _MAX_USERNAME or "\\" in name or not name.isprintable():
        raise InvalidCredentials(WRONG_USERNAME_OR_PASSWORD)
    return name.casefold()


@dataclass(frozen=True)
class _Entry:
    dn: str
    attributes: Mapping[str, list[bytes]]
    """Raw values by lower-cased attribute name."""

    def first(self, name: str) -> str | None:
        values = self.attributes.get(name.lower())
        return values[0].decode("utf-8") if values else None


class Directory:
    """Active Directory as the sign-in needs it. Thread-safe; keep one per process and close() it at exit."""

    def __init__(self, settings: LdapSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock`` times the group nesting cache (``group_cache_seconds``); tests pass one they can move."""
        self._settings = settings
        if not settings.start_tls and any(url.startswith("ldap://") for url in settings.urls):
            log.warning("ldap:// without start_tls sends passwords in clear text; use ldaps:// or start_tls")
        controllers = DomainControllers(settings)
        self._searches = ConnectionPool(settings, controllers, bind_as_service=True)
        self._binds = ConnectionPool(settings, controllers, bind_as_service=False)
        self._attributes = tuple(dict.fromkeys((*_PERSON_ATTRIBUTES, *settings.extra_attributes)))
        self._groups = GroupGraph(self._all_groups, ttl=settings.group_cache_seconds, clock=clock)

    def authenticate(self, username: str, password: str) -> Person:
        """The Person when the password is right; otherwise a DirectoryError subclass saying why not."""
        if not password or not password.strip():
            # AD treats a bind with an empty password as an anonymous bind, which "succeeds".
            raise InvalidCredentials(WRONG_USERNAME_OR_PASSWORD)
        name = normalize_username(username, self._settings)
        entry = self._lookup(name)
        # Someone the search did not find (unknown, or outside user_filter) still gets a real bind, so AD
        # reports a locked or disabled account as such, and unknown users take as long as wrong passwords.
        bind_as = entry.dn if entry else self._principal(name)
        ok, result = self._binds.run(lambda conn: _bind(conn, bind_as, password))
        if not ok:
            raise bind_refusal(result)
        if entry is None:
            raise InvalidCredentials(WRONG_USERNAME_OR_PASSWORD)
        return self._person(entry)

    def find(self, username: str) -> Person | None:
        """Look someone up with the service account alone (no password): None when not found."""
        try:
            name = normalize_username(username, self._settings)
        except InvalidCredentials:
            return None
        entry = self._lookup(name)
        return self._person(entry) if entry else None

    def groups(self) -> list[Group]:
        """Every group under the base DN, read now (the console checks the group names an admin types)."""
        return self._all_groups()

    def pool_stats(self) -> dict[str, PoolStats]:
        """Connections opened and reused so far, by pool ("search" as the service account, "bind" as users)."""
        return {"search": self._searches.stats(), "bind": self._binds.stats()}

    def close(self) -> None:
        self._searches.close()
        self._binds.close()

    def __enter__(self) -> Directory:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _principal(self, name: str) -> str:
        return name if "@" in name else f"{name}@{self._settings.realm}"

    def _lookup(self, name: str) -> _Entry | None:
        value = escape_filter_chars(name)
        by_principal = f"(|(userPrincipalName={value})(mail={value}))"
        wanted = by_principal if "@" in name else f"(sAMAccountName={value})"
        search_filter = f"(&{self._settings.user_filter}{wanted})"
        entries = self._searches.run(lambda conn: self._search(conn, search_filter, self._attributes, 2))
        if len(entries) > 1:
            # A UPN that is also somebody else's mail address: the UPN wins, anything else is ambiguous.
            entries = [e for e in entries if (e.first("userPrincipalName") or "").casefold() == name]
            if len(entries) != 1:
                log.warning("%d directory entries match the sign-in name; refusing to guess", len(entries))
                return None
        return entries[0] if entries else None

    def _all_groups(self) -> list[Group]:
        entries = self._searches.run(lambda conn: self._search(conn, "(objectClass=group)", ("cn", "memberOf"), 0))
        return [
            Group(
                dn=e.dn,
                cn=e.first("cn") or e.dn,
                parents=tuple(_text(v).lower() for v in e.attributes.get("memberof", ())),
            )
            for e in entries
        ]

    def _person(self, entry: _Entry) -> Person:
        groups = self._groups.resolve(_text(v) for v in entry.attributes.get("memberof", ()))
        guid = entry.attributes.get("objectguid")
        if not guid:
            raise DirectoryError(f"{entry.dn} has no objectGUID; is base_dn an Active Directory domain?")
        extra = {
            name: tuple(_text(v) for v in entry.attributes[name.lower()])
            for name in self._settings.extra_attributes
            if entry.attributes.get(name.lower())
        }
        return Person(
            username=entry.first("sAMAccountName") or "",
            dn=entry.dn,
            guid=uuid.UUID(bytes_le=guid[0]),
            upn=entry.first("userPrincipalName"),
            mail=entry.first("mail"),
            display_name=entry.first("displayName"),
            given_name=entry.first("givenName"),
            surname=entry.first("sn"),
            groups=tuple(g.cn for g in groups),
            group_dns=tuple(g.dn for g in groups),
            attributes=extra,
        )

    def _search(
        self, conn: Connection, search_filter: str, attributes: tuple[str, ...], size_limit: int
    ) -> list[_Entry]:
        entries: list[_Entry] = []
        cookie: bytes | None = None
        while True:
            conn.search(
                self._settings.base_dn,
                search_filter,
                SUBTREE,
                attributes=list(attributes),
                size_limit=size_limit,
                paged_size=None if size_limit else _GROUP_PAGE,
                paged_cookie=cookie,
            )
            # 4 = sizeLimitExceeded: the entries that did come back are still good.
            if conn.result.get("result") not in (0, 4):
                raise DirectoryError(
                    f"search under {self._settings.base_dn} failed: {conn.result.get('description')} "
                    f"{conn.result.get('message', '')}".strip()
                )
            for item in conn.response or ():
                # Referrals to other partitions come back as searchResRef items; they are not people.
                if item.get("type") == "searchResEntry":
                    raw = {k.lower(): list(v) for k, v in item["raw_attributes"].items()}
                    entries.append(_Entry(dn=item["dn"], attributes=raw))
            controls = conn.result.get("controls") or {}
            cookie = controls.get("1.2.840.113556.1.4.319", {}).get("value", {}).get("cookie")
            if not cookie:
                return entries


def _bind(conn: Connection, user: str, password: str) -> tuple[bool, dict[str, object]]:
    ok = conn.rebind(user, password, authentication=SIMPLE)
    # The connection goes back to the pool: it must not keep the last person's password.
    conn.password = None
    return bool(ok), dict(conn.result)


def _text(value: bytes) -> str:
    # Binary attributes (a photo, a SID) are not text; base64 keeps them intact in a string.
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii")
