"""Every person in the provisioning scope, read page by page with AD's paged-results control.

AD answers at most MaxPageSize (1000) entries per page, so a directory of 10,000 people is ten pages
on one kept-open connection of the service account. Only the attributes a mailbox needs are asked for,
and group memberships are not resolved per person (one search each): the scope's group is checked by
the search filter itself, with AD's in-chain rule so nested membership counts.

An incomplete answer (a missing OU, a DC that stopped half way) raises: a listing that silently came
back short would look like a mass departure to the sync.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ldap3 import BASE, SUBTREE, Connection
from ldap3.utils.conv import escape_filter_chars

from idp.directory.errors import DirectoryError
from idp.directory.pool import ConnectionPool, DomainControllers
from idp.person import Person
from idp.settings import LdapSettings

# AD's rule for "member of, transitively" (LDAP_MATCHING_RULE_IN_CHAIN).
_IN_CHAIN = "1.2.840.113556.1.4.1941"
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
    "userAccountControl",
    "uSNChanged",
)


@dataclass(frozen=True)
class Scope:
    """Whose mailboxes the sync manages: people under any of ``base_dns`` (all of the domain when
    empty) and, when ``group_dn`` is set, members of that group, directly or through nested groups."""

    base_dns: tuple[str, ...] = ()
    group_dn: str = ""


@dataclass(frozen=True)
class ListedPerson:
    person: Person
    """Without groups: the listing does not resolve memberships (see the module docstring)."""
    enabled: bool
    """False when userAccountControl has ACCOUNTDISABLE (bit 2) set."""
    usn_changed: int


@dataclass(frozen=True)
class Watermark:
    """Where AD's change counter stood on the DC that answered; USNs are per DC and mean nothing on
    another one, so the DC's identity (``dsServiceName``) travels with the number."""

    dc: str
    usn: int


class DirectoryListing:
    """Enumerates people for the sync with the service account. Keep one per run; close() it after."""

    def __init__(self, settings: LdapSettings) -> None:
        self._settings = settings
        self._pool = ConnectionPool(settings, DomainControllers(settings), bind_as_service=True)
        self._attributes = tuple(dict.fromkeys((*_LISTING_ATTRIBUTES, *settings.extra_attributes)))

    def watermark(self) -> Watermark:
        """The DC's highest committed USN now: changes after this have a larger uSNChanged."""
        return self._pool.run(_read_watermark)

    def people(self, scope: Scope, changed_after: int | None = None) -> list[ListedPerson]:
        """People in ``scope``; with ``changed_after``, only those whose uSNChanged is larger."""
        scope_filter = f"(memberOf:{_IN_CHAIN}:={escape_filter_chars(scope.group_dn)})" if scope.group_dn else ""
        return self._search(scope.base_dns or (self._settings.base_dn,), scope_filter, changed_after)

    def changed_anywhere(self, changed_after: int) -> list[ListedPerson]:
        """Every person in the domain changed after ``changed_after``, in scope or not: the incremental
        sync compares this with ``people(scope, changed_after)`` to see who left the scope."""
        return self._search((self._settings.base_dn,), "", changed_after)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> DirectoryListing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _search(self, bases: Iterable[str], extra_filter: str, changed_after: int | None) -> list[ListedPerson]:
        usn_filter = f"(uSNChanged>={changed_after + 1})" if changed_after is not None else ""
        search_filter = f"(&{self._settings.user_filter}{extra_filter}{usn_filter})"
        found: dict[uuid.UUID, ListedPerson] = {}
        for base in bases:
            # (A def rather than a lambda: mypy cannot type a lambda with a default argument.)
            def search(conn: Connection, base: str = base) -> list[ListedPerson]:
                return list(self._page_through(conn, base, search_filter))

            for listed in self._pool.run(search):
                found[listed.person.guid] = listed  # overlapping OUs list someone once
        return list(found.values())

    def _page_through(self, conn: Connection, base: str, search_filter: str) -> Iterator[ListedPerson]:
        entries = conn.extend.standard.paged_search(
            base,
            search_filter,
            SUBTREE,
            attributes=list(self._attributes),
            paged_size=PAGE_SIZE,
            generator=True,
        )
        for item in entries:
            # Referrals to other partitions come back as searchResRef items; they are not people.
            if item.get("type") == "searchResEntry":
                yield self._listed(item["dn"], item["raw_attributes"])
        # With raise_exceptions off, ldap3 ends the generator quietly on an error: check the last page.
        result = conn.result or {}
        if result.get("result") != 0:
            raise DirectoryError(
                f"listing people under {base} failed: {result.get('description')} {result.get('message', '')}".strip()
            )

    def _listed(self, dn: str, raw_attributes: dict[str, list[bytes]]) -> ListedPerson:
        raw = {k.lower(): v for k, v in raw_attributes.items()}

        def first(name: str) -> str | None:
            values = raw.get(name.lower())
            return values[0].decode("utf-8") if values else None

        guid = raw.get("objectguid")
        if not guid:
            raise DirectoryError(f"{dn} has no objectGUID; is base_dn an Active Directory domain?")
        extra = {
            name: tuple(v.decode("utf-8", errors="replace") for v in raw[name.lower()])
            for name in self._settings.extra_attributes
            if raw.get(name.lower())
        }
        person = Person(
            username=first("sAMAccountName") or "",
            dn=dn,
            guid=uuid.UUID(bytes_le=guid[0]),
            upn=first("userPrincipalName"),
            mail=first("mail"),
            display_name=first("displayName"),
            given_name=first("givenName"),
            surname=first("sn"),
            attributes=extra,
        )
        uac = int(first("userAccountControl") or 0)
        return ListedPerson(person, enabled=not uac & _UF_ACCOUNTDISABLE, usn_changed=int(first("uSNChanged") or 0))


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
