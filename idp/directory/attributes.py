"""The AD attributes a Person carries in ``Person.attributes``: those the settings ask for, and those a
mailbox is made from. Sign-in (client.py) and the sync's listing read the same ones, so JIT and the sync
build the same mailbox for the same person and never undo each other's writes."""

from __future__ import annotations

from idp.settings import LdapSettings

MAILBOX_ATTRIBUTES = ("proxyAddresses",)
"""Read whatever the settings say: a mailbox's aliases come from here."""


def further_attributes(settings: LdapSettings) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*settings.extra_attributes, *MAILBOX_ATTRIBUTES)))
