"""The AD attributes a Person carries in ``Person.attributes``: those the settings ask for, and those a
mailbox is made from. Sign-in (client.py) and the sync's listing read the same ones, so JIT and the sync
build the same mailbox for the same person and never undo each other's writes."""

from __future__ import annotations

from idp.settings import LdapSettings

MAILBOX_ATTRIBUTES = ("proxyAddresses",)
"""Read whatever the settings say: a mailbox's aliases come from here."""

EXPIRY_ATTRIBUTE = "msDS-UserPasswordExpiryTimeComputed"
"""When the password expires (FILETIME). The DC constructs it, but asking for it costs the DC about a third of
the person search (0.4 ms), so it is not read: the sign-in works it out from the attributes below and the
cached maximum age of the policy that applies (idp.directory.password), and stores it under this name."""

PASSWORD_AGE_ATTRIBUTES = ("pwdLastSet", "userAccountControl", "msDS-ResultantPSO")
"""What the expiry is worked out from: plain attributes (the PSO's name is read by the search anyway)."""


def further_attributes(settings: LdapSettings) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*settings.extra_attributes, *MAILBOX_ATTRIBUTES, *PASSWORD_AGE_ATTRIBUTES)))
