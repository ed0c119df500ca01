"""The attribute catalogue: what we can release about a Person, under which SAML name.

Names are the standard urn:oid names (eduPerson/inetOrgPerson/AD schema OIDs) with NameFormat "uri",
the form SAML2int and most SPs expect; the FriendlyName is the readable name admins see in SP consoles.
An SP's policy lists catalogue keys; exactly those are released, nothing the SP merely asks for.
A policy may instead release them under their friendly names (NameFormat "basic"), or rename single ones.

Alibaba Cloud role-based SSO adds two attributes of its own (help.aliyun.com, "SAML response for
role-based SSO"): .../SAML-Role/Attributes/Role, one "role-ARN,provider-ARN" value per role the person may
assume, and .../SAML-Role/Attributes/RoleSessionName, the name the console shows for the session.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from saml2 import saml
from saml2.attribute_converter import AttributeConverter
from saml2.saml import NAME_FORMAT_BASIC, NAME_FORMAT_URI

from idp.directory.person import Person

if TYPE_CHECKING:  # policy.py imports this module's CATALOGUE
    from idp.sps.policy import RoleMapping

ROLE_ATTRIBUTE = "https://www.aliyun.com/SAML-Role/Attributes/Role"
ROLE_SESSION_NAME_ATTRIBUTE = "https://www.aliyun.com/SAML-Role/Attributes/RoleSessionName"
# Alibaba Cloud's RoleSessionName: letters, digits and . @ - _, at most 64 characters.
_SESSION_NAME_OUTSIDE = re.compile(r"[^A-Za-z0-9.@_-]")
_SESSION_NAME_MAX = 64


@dataclass(frozen=True)
class AttributeDef:
    name: str
    """The SAML Name (an urn:oid)."""
    friendly_name: str
    values: Callable[[Person], tuple[str, ...]]


def _one(value: str | None) -> tuple[str, ...]:
    return (value,) if value else ()


def _ad(attribute: str) -> Callable[[Person], tuple[str, ...]]:
    return lambda p: tuple(v for v in p.attributes.get(attribute, ()) if v)


CATALOGUE: dict[str, AttributeDef] = {
    "mail": AttributeDef("urn:oid:0.9.2342.19200300.100.1.3", "mail", lambda p: _one(p.mail)),
    "displayName": AttributeDef("urn:oid:2.16.840.1.113730.3.1.241", "displayName", lambda p: _one(p.display_name)),
    "givenName": AttributeDef("urn:oid:2.5.4.42", "givenName", lambda p: _one(p.given_name)),
    "sn": AttributeDef("urn:oid:2.5.4.4", "sn", lambda p: _one(p.surname)),
    "groups": AttributeDef("urn:oid:1.3.6.1.4.1.5923.1.5.1.1", "isMemberOf", lambda p: p.groups),
    "upn": AttributeDef("urn:oid:1.2.840.113556.1.4.656", "userPrincipalName", lambda p: _one(p.upn)),
    "samAccountName": AttributeDef("urn:oid:1.2.840.113556.1.4.221", "sAMAccountName", lambda p: _one(p.username)),
    "uid": AttributeDef("urn:oid:0.9.2342.19200300.100.1.1", "uid", lambda p: _one(p.username)),
    "department": AttributeDef("urn:oid:1.2.840.113556.1.2.141", "department", _ad("department")),
    "title": AttributeDef("urn:oid:2.5.4.12", "title", _ad("title")),
    "telephoneNumber": AttributeDef("urn:oid:2.5.4.20", "telephoneNumber", _ad("telephoneNumber")),
    "mobile": AttributeDef("urn:oid:0.9.2342.19200300.100.1.41", "mobile", _ad("mobile")),
    "employeeID": AttributeDef("urn:oid:1.2.840.113556.1.4.35", "employeeID", _ad("employeeID")),
    "employeeNumber": AttributeDef("urn:oid:2.16.840.1.113730.3.1.3", "employeeNumber", _ad("employeeNumber")),
    "company": AttributeDef("urn:oid:1.2.840.113556.1.2.146", "company", _ad("company")),
}


class UnknownAttribute(KeyError):
    """A policy names an attribute the catalogue does not have."""


def released(person: Person, keys: Iterable[str]) -> dict[str, list[str]]:
    """FriendlyName -> values for exactly the catalogue keys given; attributes without a value are left out."""
    return {CATALOGUE[key].friendly_name: values for key, values in released_by_key(person, keys).items()}


def is_uri_name(name: str) -> bool:
    """A Name that is a URI (urn:..., https://...) goes out with NameFormat uri; anything else is "basic"."""
    return name.startswith("urn:") or "://" in name


def _attribute(name: str, values: Iterable[str], friendly_name: str | None = None) -> saml.Attribute:
    attribute = saml.Attribute(
        name=name,
        name_format=NAME_FORMAT_URI if is_uri_name(name) else NAME_FORMAT_BASIC,
        friendly_name=friendly_name if friendly_name and friendly_name != name else None,
    )
    for value in values:
        attribute_value = saml.AttributeValue()
        attribute_value.set_text(value)  # typed xs:string, as pysaml2's own converter writes them
        attribute.attribute_value.append(attribute_value)
    return attribute


def attribute_statement(
    person: Person,
    keys: Iterable[str],
    *,
    name_format: Literal["uri", "basic"] = "uri",
    names: Mapping[str, str] | None = None,
    roles: Sequence[RoleMapping] = (),
    role_session_name_key: str | None = None,
) -> saml.AttributeStatement | None:
    """The AttributeStatement an SP's policy releases; None when it would be empty.

    uri: the catalogue's urn:oid Name with NameFormat uri and the FriendlyName beside it; basic: the
    FriendlyName itself as Name, NameFormat basic. ``names`` renames single keys (NameFormat from the name).
    With ``roles``, the Alibaba Cloud role attributes follow: call :func:`matching_roles` first and refuse
    a person with none, since Alibaba Cloud would refuse the assertion anyway.
    """
    names = names or {}
    attributes = []
    for key, values in released_by_key(person, keys).items():
        definition = CATALOGUE[key]
        if key in names:
            attributes.append(_attribute(names[key], values, definition.friendly_name))
        elif name_format == "basic":
            attributes.append(_attribute(definition.friendly_name, values))
        else:
            attributes.append(_attribute(definition.name, values, definition.friendly_name))
    if roles:
        attributes.append(_attribute(ROLE_ATTRIBUTE, [m.value for m in matching_roles(person, roles)]))
        attributes.append(_attribute(ROLE_SESSION_NAME_ATTRIBUTE, [role_session_name(person, role_session_name_key)]))
    return saml.AttributeStatement(attribute=attributes) if attributes else None


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


def matching_roles(person: Person, roles: Sequence[RoleMapping]) -> list[RoleMapping]:
    """The role mappings whose group the person is in (nested membership counts), each role once."""
    seen: set[str] = set()
    out = []
    for mapping in roles:
        if mapping.value not in seen and person.in_any_group([mapping.group]):
            seen.add(mapping.value)
            out.append(mapping)
    return out


def role_session_name(person: Person, key: str | None) -> str:
    """The first value of ``key`` (default: the sAMAccountName), cut to what Alibaba Cloud accepts: other
    characters become "_" (a Chinese display name would otherwise be refused), at most 64 of them."""
    values = CATALOGUE[key].values(person) if key else ()
    name = _SESSION_NAME_OUTSIDE.sub("_", values[0] if values else person.username)[:_SESSION_NAME_MAX]
    return name if len(name) >= 2 else (name + "__")[:2]  # Alibaba Cloud wants at least two


def converter() -> AttributeConverter:
    """A pysaml2 converter that turns our FriendlyNames into urn:oid names with NameFormat uri."""
    conv = AttributeConverter()
    conv.from_dict(
        {
            "identifier": NAME_FORMAT_URI,
            "to": {d.friendly_name: d.name for d in CATALOGUE.values()},
            "fro": {d.name: d.friendly_name for d in CATALOGUE.values()},
        }
    )
    return conv
