"""Every person in the provisioning scope, read page by page with AD's paged-results control; the
mail-enabled groups and their members; what was deleted since a given change number.

AD answers at most MaxPageSize (1000) entries per page, so a directory of 10,000 people is ten pages
on one kept-open connection of the service account. Only the attributes a mailbox needs are asked for,
and group memberships are not resolved per person (one search each): the scope's group is checked by
the search filter itself, with AD's in-chain rule so nested membership counts.

Every account the sign-in filter matches is listed, each with why the default scope leaves it out
(eligibility.py) or why it is inactive (disabled, expired): the sync freezes the mailboxes of those and
``idp sync --dry-run --show-skipped`` says why each was left alone.

An incomplete answer (a missing OU, a DC that stopped half way) raises: a listing that silently came
back short would look like a mass departure to the sync.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from ldap3 import BASE, SUBTREE, Connection
from ldap3.utils.conv import escape_filter_chars

from idp.directory.account import filetime, has_expired
from idp.directory.attributes import further_attributes
from idp.directory.eligibility import exclusion
from idp.directory.errors import DirectoryError
from idp.directory.pool import ConnectionPool, DomainControllers
from idp.person import Person
from idp.settings import LdapSettings

# AD's rule for "member of, transitively" (LDAP_MATCHING_RULE_IN_CHAIN).
_IN_CHAIN = "1.2.840.113556.1.4.1941"
SHOW_DELETED = "1.2.840.113556.1.4.417"
"""LDAP_SERVER_SHOW_DELETED_OID: without it, deleted objects are invisible to every search."""
PAGE_SIZE = 1000
"""AD's default MaxPageSize; asking for more still gets 1000 per page."""
_UF_ACCOUNTDISABLE = 0x2
_LISTING_ATTRIBUTES = (
    "sAMAccountName",
    "userPrincipalName",
    "mail",
    "displayName",
    "givenName",
    "sn",
    "objectGUID",
    "objectSid",
    "userAccountControl",
    "accountExpires",
    "servicePrincipalName",
    "uSNChanged",
)
_GROUP_ATTRIBUTES = ("objectGUID", "cn", "displayName", "mail", "uSNChanged")


@dataclass(frozen=True)
class Scope:
    """Whose mailboxes the sync manages: people under any of ``base_dns`` (all of the domain when
    empty) and, when ``group_dn`` is set, members of that group, directly or through nested groups.
    Members of ``no_mailbox_group_dn`` (nested too) are listed as excluded."""

    base_dns: tuple[str, ...] = ()
    group_dn: str = ""
    no_mailbox_group_dn: str = ""


@dataclass(frozen=True)
class ListedPerson:
    person: Person
    """Without groups: the listing does not resolve memberships (see the module docstring)."""
    usn_changed: int
    inactive: str | None = None
    """Why AD would refuse this person a sign-in ("disabled in AD", "expired in AD"); None when active."""
    excluded: str | None = None
    """Why the default scope gives this account no mailbox (built-in, service account, ...); None for a person."""

    @property
    def enabled(self) -> bool:
        return self.inactive is None


@dataclass(frozen=True)
class ListedGroup:
    """A mail-enabled AD group: a group with a ``mail`` address."""

    guid: uuid.UUID
    dn: str
    name: str
    mail: str
    member_guids: frozenset[uuid.UUID]
    """Every person in the group, nested groups flattened (AD's in-chain rule)."""


@dataclass(frozen=True)
class Watermark:
    """Where AD's change counter stood on the DC that answered; USNs are per DC and mean nothing on
    another one, so the DC's identity (``dsServiceName``) travels with the number."""

    dc: str
    usn: int


class DirectoryListing:
    """Enumerates people for the sync with the service account. Keep one per run; close() it after.

    ``clock`` (epoch seconds) decides which accounts have expired; tests move it instead of waiting."""

    def __init__(self, settings: LdapSettings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._pool = ConnectionPool(settings, DomainControllers(settings), bind_as_service=True)
        self._further = further_attributes(settings)
        self._attributes = tuple(dict.fromkeys((*_LISTING_ATTRIBUTES, *self._further)))

    def watermark(self) -> Watermark:
        """The DC's highest committed USN now: changes after this have a larger uSNChanged."""
        return self._pool.run(_read_watermark)

    def people(self, scope: Scope, changed_after: int | None = None) -> list[ListedPerson]:
        """Every account in ``scope``, each with why it is excluded or inactive, if it is.

        With ``changed_after``, only those whose uSNChanged is larger, and those whose accountExpires has
        passed: an account that expires changes nothing in AD, so no change number would show it."""
        scope_filter = f"(memberOf:{_IN_CHAIN}:={escape_filter_chars(scope.group_dn)})" if scope.group_dn else ""
        change_filter = ""
        if changed_after is not None:
            expired = f"(&(accountExpires>=1)(accountExpires<={filetime(self._clock())}))"
            change_filter = f"(|(uSNChanged>={changed_after + 1}){expired})"
        no_mailbox = self._members_of(scope.no_mailbox_group_dn) if scope.no_mailbox_group_dn else frozenset()
        return self._search(scope.base_dns or (self._settings.base_dn,), scope_filter + change_filter, no_mailbox)

    def changed_anywhere(self, changed_after: int) -> set[uuid.UUID]:
        """objectGUIDs of every person in the domain changed after ``changed_after``, in scope or not: the
        incremental sync compares them with ``people(scope, changed_after)`` to see who left the scope. Only
        the GUID is read: this covers the whole domain, and nothing else of these entries is used."""
        search_filter = f"(&{self._settings.user_filter}(uSNChanged>={changed_after + 1}))"
        entries = self._entries((self._settings.base_dn,), search_filter, ("objectGUID",))
        return {uuid.UUID(bytes_le=raw["objectguid"][0]) for _, raw in entries if raw.get("objectguid")}

    def groups_changed(self, changed_after: int) -> list[str]:
        """DNs of the groups changed after ``changed_after``. A membership change touches the group only
        (``member`` lives on the group), so the people it moves in or out of scope show up here, not above."""
        search_filter = f"(&(objectClass=group)(uSNChanged>={changed_after + 1}))"
        entries = self._entries((self._settings.base_dn,), search_filter, ("objectGUID",))
        return [dn for dn, _ in entries]

    def deleted(self, changed_after: int) -> list[uuid.UUID]:
        """objectGUIDs of the people deleted after ``changed_after``, read from the Deleted Objects container
        with the show-deleted control. Raises DirectoryError when the service account may not read it."""
        search_filter = f"(&(isDeleted=TRUE)(objectClass=user)(uSNChanged>={changed_after + 1}))"
        base = f"CN=Deleted Objects,{self._settings.base_dn}"
        entries = self._entries((base,), search_filter, ("objectGUID",), show_deleted=True)
        return [uuid.UUID(bytes_le=raw["objectguid"][0]) for _, raw in entries if raw.get("objectguid")]

    def mail_groups(self, scope: Scope) -> list[ListedGroup]:
        """The mail-enabled groups under the scope's base DNs, each with every person in it (nested too)."""
        bases = scope.base_dns or (self._settings.base_dn,)
        groups: dict[uuid.UUID, ListedGroup] = {}
        for dn, raw in self._entries(bases, "(&(objectClass=group)(mail=*))", _GROUP_ATTRIBUTES):
            guid = uuid.UUID(bytes_le=raw["objectguid"][0])
            name = _first(raw, "displayName") or _first(raw, "cn") or dn
            groups[guid] = ListedGroup(guid, dn, name, _first(raw, "mail") or "", self._members_of(dn))
        return list(groups.values())

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> DirectoryListing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _members_of(self, group_dn: str) -> frozenset[uuid.UUID]:
        member_filter = f"(&{self._settings.user_filter}(memberOf:{_IN_CHAIN}:={escape_filter_chars(group_dn)}))"
        entries = self._entries((self._settings.base_dn,), member_filter, ("objectGUID",))
        return frozenset(uuid.UUID(bytes_le=raw["objectguid"][0]) for _, raw in entries if raw.get("objectguid"))

    def _search(self, bases: Iterable[str], extra_filter: str, no_mailbox: frozenset[uuid.UUID]) -> list[ListedPerson]:
        search_filter = f"(&{self._settings.user_filter}{extra_filter})"
        found: dict[uuid.UUID, ListedPerson] = {}
        now = self._clock()
        for dn, raw in self._entries(bases, search_filter, self._attributes):
            listed = self._listed(dn, raw, now, no_mailbox)
            found[listed.person.guid] = listed  # overlapping OUs list someone once
        return list(found.values())

    def _entries(
        self, bases: Iterable[str], search_filter: str, attributes: tuple[str, ...], *, show_deleted: bool = False
    ) -> list[tuple[str, dict[str, list[bytes]]]]:
        """(dn, raw attributes with lower-case names) of every entry under ``bases``."""
        found: list[tuple[str, dict[str, list[bytes]]]] = []
        controls = [(SHOW_DELETED, True, None)] if show_deleted else None
        for base in bases:
            # (A def rather than a lambda: mypy cannot type a lambda with a default argument.)
            def search(conn: Connection, base: str = base) -> list[tuple[str, dict[str, list[bytes]]]]:
                return list(_page_through(conn, base, search_filter, attributes, controls))

            found.extend(self._pool.run(search))
        return found

    def _listed(
        self, dn: str, raw: dict[str, list[bytes]], now: float, no_mailbox: frozenset[uuid.UUID]
    ) -> ListedPerson:
        guid = raw.get("objectguid")
        if not guid:
            raise DirectoryError(f"{dn} has no objectGUID; is base_dn an Active Directory domain?")
        extra = {
            name: tuple(v.decode("utf-8", errors="replace") for v in raw[name.lower()])
            for name in self._further
            if raw.get(name.lower())
        }
        person = Person(
            username=_first(raw, "sAMAccountName") or "",
            dn=dn,
            guid=uuid.UUID(bytes_le=guid[0]),
            upn=_first(raw, "userPrincipalName"),
            mail=_first(raw, "mail"),
            display_name=_first(raw, "displayName"),
            given_name=_first(raw, "givenName"),
            surname=_first(raw, "sn"),
            attributes=extra,
        )
        sid = raw.get("objectsid")
        excluded = exclusion(
            self._settings,
            username=person.username,
            dn=dn,
            upn=person.upn,
            sid=sid[0] if sid else None,
            has_spn=bool(raw.get("serviceprincipalname")),
            in_no_mailbox_group=person.guid in no_mailbox,
        )
        inactive = None
        if int(_first(raw, "userAccountControl") or 0) & _UF_ACCOUNTDISABLE:
            inactive = "disabled in AD"
        elif has_expired(int(_first(raw, "accountExpires") or 0), now):
            inactive = "expired in AD (accountExpires)"
        return ListedPerson(person, int(_first(raw, "uSNChanged") or 0), inactive=inactive, excluded=excluded)


def _first(raw: dict[str, list[bytes]], name: str) -> str | None:
    values = raw.get(name.lower())
    return values[0].decode("utf-8") if values else None


def _page_through(
    conn: Connection,
    base: str,
    search_filter: str,
    attributes: tuple[str, ...],
    controls: list[tuple[str, bool, None]] | None,
) -> Iterator[tuple[str, dict[str, list[bytes]]]]:
    entries = conn.extend.standard.paged_search(
        base,
        search_filter,
        SUBTREE,
        attributes=list(attributes),
        controls=controls,
        paged_size=PAGE_SIZE,
        generator=True,
    )
    for item in entries:
        # Referrals to other partitions come back as searchResRef items; they are not entries.
        if item.get("type") == "searchResEntry":
            yield item["dn"], {k.lower(): v for k, v in item["raw_attributes"].items()}
    # With raise_exceptions off, ldap3 ends the generator quietly on an error: check the last page.
    result = conn.result or {}
    if result.get("result") != 0:
        why = f"{result.get('description')} {result.get('message', '')}".strip()
        raise DirectoryError(f"listing {search_filter} under {base} failed: {why}")


def _read_watermark(conn: Connection) -> Watermark:
    ok = conn.search("", "(objectClass=*)", BASE, attributes=["highestCommittedUSN", "dsServiceName"])
    if not ok or not conn.response:
        raise DirectoryError(f"could not read the rootDSE: {conn.result.get('description')}")
    raw = {k.lower(): v for k, v in conn.response[0]["raw_attributes"].items()}
    try:
        usn = int(raw["highestcommittedusn"][0])
        dc = raw["dsservicename"][0].decode("utf-8")
    except (KeyError, IndexError, ValueError) as exc:
        raise DirectoryError("the rootDSE lacks highestCommittedUSN or dsServiceName: not Active Directory?") from exc
    return Watermark(dc=dc, usn=usn)
