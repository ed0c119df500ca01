"""The words an SP's policy is written in: the attribute catalogue, the NameID formats, the Alibaba Cloud
role attributes. The policy, its validation, the console and the SAML layer all take them from here.

The catalogue: what we can release about a Person, under which SAML name. Names are the standard urn:oid
names (eduPerson/inetOrgPerson/AD schema OIDs) with NameFormat "uri", the form SAML2int and most SPs expect;
the FriendlyName is the readable name admins see in SP consoles. An SP's policy lists catalogue keys;
exactly those are released, nothing the SP merely asks for.

Alibaba Cloud role-based SSO adds two attributes of its own (help.aliyun.com, "SAML response for
role-based SSO"): .../SAML-Role/Attributes/Role, one "role-ARN,provider-ARN" value per role the person may
assume, and .../SAML-Role/Attributes/RoleSessionName, the name the console shows for the session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from idp.person import Person
from idp.settings import NameIdFormatName

NAME_FORMAT_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
NAME_FORMAT_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"

FORMAT_URIS: dict[NameIdFormatName, str] = {
    "emailAddress": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "persistent": "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
    "transient": "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
    "unspecified": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
}
"""The NameID formats a policy may choose, by the short name used in settings and the console."""

ROLE_ATTRIBUTE = "https://www.aliyun.com/SAML-Role/Attributes/Role"
ROLE_SESSION_NAME_ATTRIBUTE = "https://www.aliyun.com/SAML-Role/Attributes/RoleSessionName"


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


_FILETIME_NEVER = 0x7FFFFFFFFFFFFFFF
_FILETIME_EPOCH_OFFSET = 11_644_473_600  # seconds from 1601-01-01 (AD's FILETIME epoch) to 1970-01-01


def _password_expires(p: Person) -> tuple[str, ...]:
    """msDS-UserPasswordExpiryTimeComputed (FILETIME) as ISO 8601 UTC; nothing when it never expires."""
    value = next(iter(p.attributes.get("msDS-UserPasswordExpiryTimeComputed", ())), "")
    if not value.isdigit() or int(value) in (0, _FILETIME_NEVER):
        return ()
    at = datetime.fromtimestamp(int(value) / 10_000_000 - _FILETIME_EPOCH_OFFSET, UTC)
    return (at.strftime("%Y-%m-%dT%H:%M:%SZ"),)


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
    "passwordExpires": AttributeDef(
        "urn:oid:1.2.840.113556.1.4.1996", "msDS-UserPasswordExpiryTimeComputed", _password_expires
    ),
}


def is_uri_name(name: str) -> bool:
    """A Name that is a URI (urn:..., https://...) goes out with NameFormat uri; anything else is "basic"."""
    return name.startswith("urn:") or "://" in name
