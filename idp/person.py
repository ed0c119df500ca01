"""What the rest of the product knows about an employee: a Person, never an LDAP entry."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_SID = re.compile(r"^S-1-\d+(?:-\d+)+$", re.IGNORECASE)
_DN_WITH_SID = re.compile(r"^(?P<dn>.+) <(?P<sid>S-1-\d+(?:-\d+)+)>$", re.IGNORECASE)
_DN = re.compile(r"^[A-Za-z][\w-]*=.+,", re.ASCII)


@dataclass(frozen=True)
class GroupRef:
    """An AD group as a policy or the configuration names it.

    A cn is unique only within one OU, so a group is named by its objectSid (stored with its DN, for people
    to read: "CN=Sales,OU=Staff,DC=corp <S-1-5-21-...>"), or by a DN, which AD keeps unique. A bare name
    (``name``) is what policies held before groups were identities, and what [admin] groups may still say."""

    sid: str | None = None
    dn: str | None = None
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> GroupRef:
        text = text.strip()
        if m := _DN_WITH_SID.match(text):
            return cls(sid=m["sid"].upper(), dn=m["dn"].strip())
        if _SID.match(text):
            return cls(sid=text.upper())
        if _DN.match(text):
            return cls(dn=text)
        return cls(name=text)

    def __str__(self) -> str:
        """The stored form, which parse() reads back."""
        if self.sid and self.dn:
            return f"{self.dn} <{self.sid}>"
        return self.sid or self.dn or self.name or ""

    @property
    def label(self) -> str:
        """What a person reads: the DN when known."""
        return self.dn or self.name or self.sid or ""


def group_refs(texts: Iterable[str]) -> list[GroupRef]:
    return [GroupRef.parse(t) for t in texts]


@dataclass(frozen=True)
class Person:
    username: str
    """sAMAccountName, e.g. "alice"."""
    dn: str
    guid: uuid.UUID
    """objectGUID: stable across renames; persistent NameIDs are derived from it."""
    upn: str | None = None
    mail: str | None = None
    display_name: str | None = None
    given_name: str | None = None
    surname: str | None = None
    groups: tuple[str, ...] = ()
    """Names (cn) of every group the person is in, nested membership included, sorted."""
    group_dns: tuple[str, ...] = ()
    """DNs of the same groups, in the same order."""
    group_sids: tuple[str, ...] = ()
    """objectSid of every security group the person is in, nested included: what access checks compare.
    Distribution groups are left out: anyone who may create a mailing list must not be able to grant access."""
    security_group_dns: tuple[str, ...] = ()
    """DNs of those security groups, in the same order as group_sids."""
    unique_group_names: tuple[str, ...] = ()
    """cn of those security groups whose cn no other security group in the domain has: the only names a
    policy stored before groups were identities may still match."""
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Further AD attributes asked for in settings (department, title, ...), by AD attribute name."""
    service_account: str | None = None
    """Why this account is not a person's (built-in, krbtgt, dns-*, our own service account, one with a
    servicePrincipalName), in words; None for a person. Such an account gets no mailbox, at sign-in as in
    the sync (idp.directory.eligibility)."""

    def in_any_group(self, refs: Iterable[GroupRef]) -> bool:
        """True when the person is in one of the given security groups (nested membership counts).

        By SID when the reference has one, else by DN; a bare name only when it names exactly one security
        group in the domain, so that a same-named group in another OU grants nothing."""
        sids = {s.upper() for s in self.group_sids}
        dns = {d.casefold() for d in self.security_group_dns}
        names = {n.casefold() for n in self.unique_group_names}
        for ref in refs:
            if ref.sid:
                if ref.sid.upper() in sids:
                    return True
            elif ref.dn:
                if ref.dn.casefold() in dns:
                    return True
            elif ref.name and ref.name.casefold() in names:
                return True
        return False
