"""From a Person (what AD says) to a MailboxSpec (what the mail provider should hold)."""

from __future__ import annotations

from typing import Literal

from idp.mail_address import NoMailAddress, mail_address
from idp.person import Person
from idp.provisioning.provider import MailboxSpec
from idp.settings import ProvisioningSettings

DepartmentSource = Literal["attribute", "ou"]


class PersonNotProvisionable(ValueError):
    """AD lacks something a mailbox needs (an email address); ``missing`` names the AD attribute."""

    def __init__(self, message: str, *, missing: str) -> None:
        super().__init__(message)
        self.missing = missing


def _first(person: Person, *names: str) -> str | None:
    """First non-empty value among AD attributes, matched case-insensitively (AD names are)."""
    by_lower = {k.lower(): v for k, v in person.attributes.items()}
    for name in names:
        for value in by_lower.get(name.lower(), ()):
            if value and value.strip():
                return value.strip()
    return None


def department_from_dn(dn: str) -> tuple[str, ...]:
    """OU path from the top down: "CN=a,OU=Platform,OU=Engineering,DC=corp" -> ("Engineering", "Platform").

    Escaped commas (``\\,``) inside a name stay part of it.
    """
    parts: list[str] = []
    current = ""
    escaped = False
    for ch in dn:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    ous = [p.strip().split("=", 1)[1].strip() for p in parts if p.strip().lower().startswith("ou=")]
    return tuple(reversed(ous))


def department_from_attribute(value: str | None) -> tuple[str, ...]:
    """AD's ``department`` as a path; "Engineering/Platform" names a sub-department."""
    if not value:
        return ()
    return tuple(level.strip() for level in value.split("/") if level.strip())


def aliases_from(person: Person) -> tuple[str, ...]:
    """AD ``proxyAddresses`` as mailbox aliases: the ``smtp:`` entries (lower-case prefix, secondary
    addresses); ``SMTP:`` marks the primary address, which is the mailbox itself, and x500:, sip: and the
    like are not mail."""
    by_lower = {k.lower(): v for k, v in person.attributes.items()}
    return tuple(
        value[5:].strip()
        for value in by_lower.get("proxyaddresses", ())
        if value.startswith("smtp:") and value[5:].strip()
    )


def spec_from_person(person: Person, settings: ProvisioningSettings | None = None) -> MailboxSpec:
    """The mailbox ``person`` should have, at the address the one address rule gives (idp.mail_address)."""
    try:
        email = mail_address(person, settings)
    except NoMailAddress as exc:
        raise PersonNotProvisionable(str(exc), missing=exc.missing) from None
    department_source: DepartmentSource = settings.mapping[0] if settings is not None else "attribute"
    if department_source == "ou":
        department = department_from_dn(person.dn)
    else:
        department = department_from_attribute(_first(person, "department"))
    given, surname = person.given_name or None, person.surname or None
    display = person.display_name or " ".join(p for p in (given, surname) if p) or person.username
    return MailboxSpec(
        email=email,
        display_name=display,
        given_name=given,
        surname=surname,
        department=department,
        title=_first(person, "title"),
        phone=_first(person, "telephoneNumber", "mobile"),
        employee_number=_first(person, "employeeID", "employeeNumber"),
        aliases=aliases_from(person),
    )
