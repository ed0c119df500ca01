"""What an SP's policy releases about a person: attribute names, formats and values, before any protocol.

The SAML response writes exactly this list, and the console's preview shows exactly this list, so an admin
reads what the SP will get. Alibaba Cloud's role attributes follow the catalogue ones when the policy maps
roles; a person with no matching role is refused by the access decision before anything is released.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from idp.person import Person
from idp.sps.policy import SpPolicy, matching_roles
from idp.sps.vocabulary import CATALOGUE, ROLE_ATTRIBUTE, ROLE_SESSION_NAME_ATTRIBUTE, is_uri_name

# Alibaba Cloud's RoleSessionName: letters, digits and . @ - _, at most 64 characters.
_SESSION_NAME_OUTSIDE = re.compile(r"[^A-Za-z0-9.@_-]")
_SESSION_NAME_MAX = 64


class UnknownAttribute(KeyError):
    """A policy names an attribute the catalogue does not have."""


@dataclass(frozen=True)
class ReleasedAttribute:
    name: str
    name_format: Literal["uri", "basic"]
    friendly_name: str | None
    """Written beside a urn:oid Name so admins can read it; None when it would only repeat the Name."""
    values: tuple[str, ...]


def release(policy: SpPolicy, person: Person) -> tuple[ReleasedAttribute, ...]:
    """The attributes ``policy`` releases about ``person``, in the policy's order; ones without a value are
    left out.

    uri: the catalogue's urn:oid Name with NameFormat uri and the FriendlyName beside it; basic: the
    FriendlyName itself as Name, NameFormat basic. ``attribute_names`` renames single keys (NameFormat from
    the name)."""
    out: list[ReleasedAttribute] = []
    for key, values in released_by_key(person, policy.attributes).items():
        definition = CATALOGUE[key]
        if key in policy.attribute_names:
            out.append(_attribute(policy.attribute_names[key], values, definition.friendly_name))
        elif policy.attribute_name_format == "basic":
            out.append(_attribute(definition.friendly_name, values))
        else:
            out.append(_attribute(definition.name, values, definition.friendly_name))
    if policy.roles:
        out.append(_attribute(ROLE_ATTRIBUTE, [m.value for m in matching_roles(person, policy.roles)]))
        session_name = role_session_name(person, policy.role_session_name_attribute)
        out.append(_attribute(ROLE_SESSION_NAME_ATTRIBUTE, [session_name]))
    return tuple(out)


def _attribute(name: str, values: Iterable[str], friendly_name: str | None = None) -> ReleasedAttribute:
    return ReleasedAttribute(
        name=name,
        name_format="uri" if is_uri_name(name) else "basic",
        friendly_name=friendly_name if friendly_name and friendly_name != name else None,
        values=tuple(values),
    )


def released_by_key(person: Person, keys: Iterable[str]) -> dict[str, list[str]]:
    """Catalogue key -> values for exactly the keys given; attributes without a value are left out."""
    out: dict[str, list[str]] = {}
    for key in keys:
        try:
            definition = CATALOGUE[key]
        except KeyError:
            raise UnknownAttribute(f"attribute {key!r} is not in the catalogue ({', '.join(CATALOGUE)})") from None
        values = definition.values(person)
        if values:
            out[key] = list(values)
    return out


def role_session_name(person: Person, key: str | None) -> str:
    """The first value of ``key`` (default: the sAMAccountName), cut to what Alibaba Cloud accepts: other
    characters become "_" (a Chinese display name would otherwise be refused), at most 64 of them."""
    values = CATALOGUE[key].values(person) if key else ()
    name = _SESSION_NAME_OUTSIDE.sub("_", values[0] if values else person.username)[:_SESSION_NAME_MAX]
    return name if len(name) >= 2 else (name + "__")[:2]  # Alibaba Cloud wants at least two
