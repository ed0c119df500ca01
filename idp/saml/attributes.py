"""The attribute catalogue: what we can release about a Person, under which SAML name.

Names are the standard urn:oid names (eduPerson/inetOrgPerson/AD schema OIDs) with NameFormat "uri",
the form SAML2int and most SPs expect; the FriendlyName is the readable name admins see in SP consoles.
An SP's policy lists catalogue keys; exactly those are released, nothing the SP merely asks for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from saml2.attribute_converter import AttributeConverter
from saml2.saml import NAME_FORMAT_URI

from idp.directory.person import Person


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
    out: dict[str, list[str]] = {}
    for key in keys:
        try:
            definition = CATALOGUE[key]
        except KeyError:
            raise UnknownAttribute(f"attribute {key!r} is not in the catalogue ({', '.join(CATALOGUE)})") from None
        values = definition.values(person)
        if values:
            out[definition.friendly_name] = list(values)
    return out


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
