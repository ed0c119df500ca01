"""What the rest of the product knows about an employee: a Person, never an LDAP entry."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field


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
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Further AD attributes asked for in settings (department, title, ...), by AD attribute name."""

    def in_any_group(self, names_or_dns: list[str] | tuple[str, ...]) -> bool:
        """True when the person is in one of the given groups, named by cn or by DN (case-insensitive)."""
        wanted = {n.lower() for n in names_or_dns}
        return any(g.lower() in wanted for g in (*self.groups, *self.group_dns))
