"""From a Person to the MailboxSpec a provider gets."""

from __future__ import annotations

import uuid

import pytest

from idp.person import Person
from idp.provisioning import MailboxSpec, PersonNotProvisionable, changed_fields, spec_from_person
from idp.provisioning.mapping import department_from_dn
from idp.settings import ProvisioningSettings


def scim_settings(**over: object) -> ProvisioningSettings:
    scim = {"base_url": "https://saas.example.com/scim/v2", "bearer_token": "t"}
    return ProvisioningSettings(provider="scim", scim=scim, **over)  # type: ignore[arg-type]


ALICE = Person(
    username="alice",
    dn="CN=Alice Liddell,OU=Platform,OU=Engineering,DC=corp,DC=example,DC=com",
    guid=uuid.UUID(int=1),
    mail="alice@example.com",
    display_name="Alice Liddell",
    given_name="Alice",
    surname="Liddell",
    attributes={"department": ("Research/AI",), "title": ("Engineer",), "telephoneNumber": ("+86 10 1",)},
)


def test_department_from_attribute_is_a_path() -> None:
    spec = spec_from_person(ALICE)
    assert spec == MailboxSpec(
        email="alice@example.com",
        display_name="Alice Liddell",
        given_name="Alice",
        surname="Liddell",
        department=("Research", "AI"),
        title="Engineer",
        phone="+86 10 1",
    )


def test_department_from_ou_path() -> None:
    assert spec_from_person(ALICE, scim_settings(department_source="ou")).department == ("Engineering", "Platform")


def test_escaped_comma_stays_in_an_ou_name() -> None:
    assert department_from_dn(r"CN=a,OU=R\, D,OU=HQ,DC=corp") == ("HQ", "R, D")


def test_address_falls_back_to_username_at_mail_domain() -> None:
    person = Person(username="bob", dn="CN=bob,DC=corp", guid=uuid.UUID(int=2))
    spec = spec_from_person(person, scim_settings(mail_domain="example.com"))
    assert (spec.email, spec.display_name) == ("bob@example.com", "bob")
    with pytest.raises(PersonNotProvisionable, match="bob") as refused:
        spec_from_person(person)
    assert refused.value.missing == "mail"


def test_secondary_proxy_addresses_become_aliases() -> None:
    proxies = ("SMTP:alice@example.com", "smtp:Alice.Liddell@example.com", "smtp:al@example.org", "X500:/o=corp/cn=a")
    person = Person(**{**ALICE.__dict__, "attributes": {**ALICE.attributes, "proxyAddresses": proxies}})
    assert spec_from_person(person).aliases == ("al@example.org", "alice.liddell@example.com")


def test_changed_fields_ignores_case_of_the_address() -> None:
    spec = spec_from_person(ALICE)
    same = MailboxSpec(**{**spec.__dict__, "email": "Alice@Example.com"})
    assert changed_fields(same, spec) == {}
    assert changed_fields(spec, MailboxSpec(**{**spec.__dict__, "title": None})) == {"title": None}
