"""Who is a person the default scope gives a mailbox: someone who signs in, not an account that only
exists for the domain or a program.

``objectCategory=person`` and ``objectClass=user`` (the sign-in filter) still match Administrator, Guest,
krbtgt, the DC's ``dns-*`` account, service accounts and this service's own LDAP account; every one of
those would get a mailbox and count as an employee. Disabled and expired accounts are people who may come
back: they are not excluded here but frozen (see ListedPerson.inactive).
"""

from __future__ import annotations

from idp.settings import LdapSettings

FIRST_ORDINARY_RID = 1000
"""Relative IDs below this are the domain's well-known accounts (500 Administrator, 501 Guest, 502 krbtgt,
503 DefaultAccount, ...); accounts an admin creates start above it."""


def relative_id(sid: bytes) -> int | None:
    """The last sub-authority of a binary objectSid (the RID), or None for a SID too short to have one."""
    if len(sid) < 12 or sid[1] == 0:
        return None
    return int.from_bytes(sid[-4:], "little")


def is_service_account(settings: LdapSettings, *, username: str, dn: str, upn: str | None) -> bool:
    """True for the account this service binds as (``bind_dn`` as a DN, a UPN or DOMAIN\\name)."""
    bound = settings.bind_dn.strip().casefold()
    if bound in (dn.casefold(), (upn or "").casefold()):
        return True
    return "\\" in bound and bound.rsplit("\\", 1)[1] == username.casefold()


def exclusion(
    settings: LdapSettings,
    *,
    username: str,
    dn: str,
    upn: str | None,
    sid: bytes | None,
    has_spn: bool,
    in_no_mailbox_group: bool,
) -> str | None:
    """Why the default scope leaves this account out, in words for the admin; None for a person."""
    rid = relative_id(sid) if sid else None
    if rid is not None and rid < FIRST_ORDINARY_RID:
        return f"built-in account (RID {rid})"
    name = username.casefold()
    if name == "krbtgt" or name.startswith("krbtgt_"):
        return "built-in account (krbtgt)"
    if name.startswith("dns-"):
        return "DNS service account (dns-*)"
    if is_service_account(settings, username=username, dn=dn, upn=upn):
        return "this service's own LDAP account (bind_dn)"
    if has_spn:
        return "service account (has servicePrincipalName)"
    if in_no_mailbox_group:
        return "in the no-mailbox group"
    return None
