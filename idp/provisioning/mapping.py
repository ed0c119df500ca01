"""From a Person (what AD says) to a MailboxSpec (what the mail provider should hold)."""

from __future__ import annotations

from typing import Literal

from idp.person import Person
from idp.provisioning.provider import MailboxSpec

DepartmentSource = Literal["attribute", "ou"]


class PersonNotProvisionable(ValueError):
    """AD lacks something a mailbox needs (an email address); the message names what."""


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


def spec_from_person(
    person: Person, department_source: DepartmentSource = "attribute", mail_domain: str = ""
) -> MailboxSpec:
    """The mailbox ``person`` should have; the address is AD's ``mail``, else ``username@mail_domain``."""
    email = person.mail or (f"{person.username}@{mail_domain}" if mail_domain else "")
    if not email:
        raise PersonNotProvisionable(f"{person.username} has no mail attribute in AD and no mail domain is set")
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
    )
