"""The one address rule (idp.mail_address): what JIT, the sync, the NameID and the console all use."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from idp.mail_address import NoMailAddress, mail_address, mail_domains
from idp.person import Person
from idp.settings import ProvisioningSettings

SCIM = {"base_url": "https://saas.example.com/scim/v2", "bearer_token": "t"}


def settings(**over: Any) -> ProvisioningSettings:
    return ProvisioningSettings(**{"provider": "scim", "scim": SCIM, "mail_domain": "example.com", **over})


def person(**over: Any) -> Person:
    values: dict[str, Any] = {
        "username": "alice",
        "dn": "CN=Alice,DC=corp",
        "guid": uuid.UUID(int=1),
        "upn": "alice@corp.example.com",
        "given_name": "Alice",
        "surname": "Wang",
    }
    return Person(**{**values, **over})


def test_ad_mail_comes_first() -> None:
    assert mail_address(person(mail=" a.wang@elsewhere.org "), settings()) == "a.wang@elsewhere.org"


def test_the_upn_when_its_suffix_is_a_mail_domain() -> None:
    assert mail_address(person(), settings(mail_domains=["Corp.Example.com"])) == "alice@corp.example.com"
    assert mail_address(person(upn="alice@example.com"), settings()) == "alice@example.com"


def test_else_the_default_pattern_reproduces_username_at_mail_domain() -> None:
    assert mail_address(person(), settings()) == "alice@example.com"


def test_a_pattern_of_names() -> None:
    rule = settings(address_pattern="{given_name}.{surname}@{mail_domain}")
    assert mail_address(person(), rule) == "Alice.Wang@example.com"
    with pytest.raises(NoMailAddress) as refused:
        mail_address(person(surname=None), rule)
    assert refused.value.missing == "sn"
    assert "sn" in str(refused.value) and "alice" in str(refused.value)


def test_without_provisioning_only_mail_gives_an_address() -> None:
    assert mail_domains(None) == ()
    with pytest.raises(NoMailAddress) as refused:
        mail_address(person(), None)
    assert refused.value.missing == "mail"


def test_alibaba_mail_uses_its_own_mail_domain() -> None:
    alimail = {"client_id": "c", "client_secret": "s", "mail_domain": "Mail.Example.cn"}
    rule = ProvisioningSettings(provider="alimail", alimail=alimail)
    assert mail_domains(rule) == ("mail.example.cn",)
    assert mail_address(person(), rule) == "alice@mail.example.cn"


@pytest.mark.parametrize("pattern", ["{user}@{mail_domain}", "{username}", "{username}@{mail_domain}@x", "{0}@x"])
def test_a_bad_pattern_is_refused_at_start_naming_the_key(pattern: str) -> None:
    with pytest.raises(ValidationError, match="address_pattern"):
        settings(address_pattern=pattern)
