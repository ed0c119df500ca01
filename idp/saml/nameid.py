"""NameID: which format an SP gets, and the value for each format.

persistent: HMAC-SHA256(secret, objectGUID bytes + SP entityID), hex. Opaque (reveals nothing about the
user), stable across renames (objectGUID never changes), and different at every SP, so that two SPs
cannot correlate their users by NameID.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from saml2.saml import (
    NAMEID_FORMAT_EMAILADDRESS,
    NAMEID_FORMAT_PERSISTENT,
    NAMEID_FORMAT_TRANSIENT,
    NAMEID_FORMAT_UNSPECIFIED,
)

from idp.directory.person import Person
from idp.settings import NameIdFormatName

FORMAT_URIS: dict[NameIdFormatName, str] = {
    "emailAddress": NAMEID_FORMAT_EMAILADDRESS,
    "persistent": NAMEID_FORMAT_PERSISTENT,
    "transient": NAMEID_FORMAT_TRANSIENT,
    "unspecified": NAMEID_FORMAT_UNSPECIFIED,
}
_NAMES_BY_URI = {uri: name for name, uri in FORMAT_URIS.items()}


class UnsupportedNameIdFormat(Exception):
    """The SP asked for a NameID format we do not issue."""


class NoNameIdValue(Exception):
    """The person lacks what the format needs (emailAddress without a mail attribute)."""


def choose_format(requested: str | None, default: NameIdFormatName) -> NameIdFormatName:
    """The request's NameIDPolicy Format wins when we support it; "unspecified" or none means the SP's default."""
    if requested is None or requested == NAMEID_FORMAT_UNSPECIFIED:
        return default
    try:
        return _NAMES_BY_URI[requested]
    except KeyError:
        raise UnsupportedNameIdFormat(f"NameID format {requested} is not supported") from None


def name_id_value(fmt: NameIdFormatName, person: Person, sp_entity_id: str, secret: bytes) -> str:
    if fmt == "emailAddress":
        if not person.mail:
            raise NoNameIdValue(f"{person.username} has no mail address in the directory")
        return person.mail
    if fmt == "persistent":
        return persistent_id(secret, person, sp_entity_id)
    if fmt == "transient":
        return "_" + secrets.token_hex(20)
    return person.username


def persistent_id(secret: bytes, person: Person, sp_entity_id: str) -> str:
    # bytes_le is objectGUID as AD stores it, so the value matches what other tools derive from AD.
    return hmac.new(secret, person.guid.bytes_le + sp_entity_id.encode("utf-8"), hashlib.sha256).hexdigest()
