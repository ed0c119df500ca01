"""NameID: which format an SP gets, and the value for each format.

emailAddress and unspecified: the first value of the SP's ``nameid_attribute`` (a catalogue key; by default
mail for emailAddress, sAMAccountName for unspecified), optionally re-homed to ``nameid_domain``: an Alibaba
Cloud RAM user signs in as <name>@<account default domain>, so alice@corp.example becomes
alice@corp.onaliyun.com. "mail" means the person's address by the one address rule (idp.mail_address), the
same the mailbox was made with; when none can be made, NoMailAddress says which AD attribute is missing.

persistent: HMAC-SHA256(secret, objectGUID bytes + SP entityID), hex. Opaque (reveals nothing about the
user), stable across renames (objectGUID never changes), and different at every SP, so that two SPs
cannot correlate their users by NameID.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from saml2.saml import NAMEID_FORMAT_UNSPECIFIED

from idp.mail_address import mail_address
from idp.person import Person
from idp.settings import NameIdFormatName, ProvisioningSettings
from idp.sps.vocabulary import CATALOGUE, FORMAT_URIS

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


_DEFAULT_SOURCE: dict[NameIdFormatName, str] = {"emailAddress": "mail", "unspecified": "samAccountName"}


def name_id_value(
    fmt: NameIdFormatName,
    person: Person,
    sp_entity_id: str,
    secret: bytes,
    *,
    attribute: str | None = None,
    domain: str | None = None,
    provisioning: ProvisioningSettings | None = None,
) -> str:
    """The NameID value; ``attribute`` and ``domain`` (the SP's policy) apply to emailAddress and unspecified
    only: persistent and transient NameIDs never come from AD, so they cannot leak or change with it.
    ``provisioning`` holds the mail domains and pattern of the address rule."""
    if fmt == "persistent":
        return persistent_id(secret, person, sp_entity_id)
    if fmt == "transient":
        return "_" + secrets.token_hex(20)
    key = attribute or _DEFAULT_SOURCE[fmt]
    values = [mail_address(person, provisioning)] if key == "mail" else CATALOGUE[key].values(person)
    if not values:
        raise NoNameIdValue(f"{person.username} has no {key} in the directory")
    value = values[0]
    if domain:
        local = value.split("@", 1)[0]
        if not local:
            raise NoNameIdValue(f"the {key} of {person.username} has nothing before the @")
        value = f"{local}@{domain}"
    return value


def persistent_id(secret: bytes, person: Person, sp_entity_id: str) -> str:
    # bytes_le is objectGUID as AD stores it, so the value matches what other tools derive from AD.
    return hmac.new(secret, person.guid.bytes_le + sp_entity_id.encode("utf-8"), hashlib.sha256).hexdigest()
