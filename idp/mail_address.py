"""The one rule for a person's mail address: the mailbox the sync and JIT make, and the emailAddress NameID.

AD's ``mail`` first; else the UPN, when its suffix is one of our mail domains; else the configured pattern
(``{username}@{mail_domain}`` by default). Mailbox and NameID must agree: a new hire whose mailbox was made
at username@domain and whose NameID needed ``mail`` used to land on the mail provider's error page.

Without a ``[provisioning]`` section there is no mail domain, so only ``mail`` gives an address.
"""

from __future__ import annotations

import string

from idp.person import Person
from idp.settings import ADDRESS_PATTERN_FIELDS, ProvisioningSettings


class NoMailAddress(Exception):
    """No address can be made for the person; ``missing`` is the AD attribute whose value would give one."""

    def __init__(self, username: str, missing: str, why: str) -> None:
        super().__init__(f"{username} has no mail address: {why}")
        self.username = username
        self.missing = missing


def mail_domains(settings: ProvisioningSettings | None) -> tuple[str, ...]:
    """Our mail domains, lower-case: the provider's own first (the pattern's {mail_domain}), then the others."""
    if settings is None:
        return ()
    domains = (settings.mapping[1], *settings.mail_domains)
    return tuple(dict.fromkeys(d.strip().lower() for d in domains if d.strip()))


def mail_address(person: Person, settings: ProvisioningSettings | None) -> str:
    """The person's mail address; raise NoMailAddress naming what AD lacks when none can be made."""
    if person.mail and person.mail.strip():
        return person.mail.strip()
    domains = mail_domains(settings)
    upn = (person.upn or "").strip()
    if upn.count("@") == 1 and upn.split("@")[0] and upn.split("@")[1].lower() in domains:
        return upn
    if settings is None or not domains:
        raise NoMailAddress(person.username, "mail", "AD has no mail for them and no mail domain is configured")
    values = {
        "username": person.username,
        "given_name": person.given_name,
        "surname": person.surname,
        "mail_domain": domains[0],
    }
    pattern = settings.address_pattern
    for _, name, _, _ in string.Formatter().parse(pattern):
        if name is not None and not (values[name] or "").strip():
            attribute = ADDRESS_PATTERN_FIELDS[name]
            raise NoMailAddress(
                person.username,
                attribute,
                f"AD has no mail for them, and the address pattern {pattern} needs their {attribute}",
            )
    address = pattern.format(**{k: (v or "").strip() for k, v in values.items()})
    if any(ch.isspace() for ch in address):
        raise NoMailAddress(
            person.username, "mail", f"AD has no mail for them, and the address pattern gives {address!r}"
        )
    return address
