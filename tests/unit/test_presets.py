"""Presets fill a valid SpPolicy from a few parameters, and name the parameter at fault when they cannot."""

from __future__ import annotations

import pytest

from idp.sps import presets
from idp.sps.policy import SpPolicy

UID = "1234567890123456"
ROLE = f"acs:ram::{UID}:role/cloud-admin"
PROVIDER = f"acs:ram::{UID}:saml-provider/corp-ad"

GOOD: dict[str, dict[str, str]] = {
    "aliyun_ram_user": {"account_id": UID, "nameid_domain": "corp.onaliyun.com", "nameid_attribute": "upn"},
    "aliyun_ram_role": {"roles": f"Engineering, {ROLE},{PROVIDER}\nSales,{ROLE},{PROVIDER}"},
    "aliyun_idaas": {"match_on": "mail"},
    "mailbox": {},
}


@pytest.mark.parametrize("key", sorted(presets.PRESETS))
def test_every_preset_makes_a_policy_that_survives_a_round_trip(key):
    policy = presets.apply(key, GOOD[key])
    assert policy.preset == key
    assert SpPolicy.model_validate(policy.model_dump(mode="json")) == policy
    assert policy.sign_assertion, "every provider documented here wants a signed assertion"


def test_ram_user_builds_the_logon_name_from_an_ad_attribute_and_the_default_domain():
    policy = presets.apply("aliyun_ram_user", GOOD["aliyun_ram_user"] | {"nameid_domain": "@Corp.OnAliyun.com"})
    assert (policy.nameid_format, policy.nameid_attribute, policy.nameid_domain) == (
        "emailAddress",
        "upn",
        "corp.onaliyun.com",
    )
    assert policy.attributes == []
    assert policy.idp_initiated


def test_ram_user_names_each_missing_or_bad_parameter():
    with pytest.raises(presets.PresetError) as caught:
        presets.apply("aliyun_ram_user", {"account_id": "acme", "nameid_attribute": "displayName", "site": "mars"})
    errors = caught.value.errors
    assert set(errors) == {"account_id", "nameid_domain", "nameid_attribute", "site"}
    assert "number" in errors["account_id"]
    assert errors["nameid_domain"] == "required"
    assert "samAccountName" in errors["nameid_attribute"]


def test_a_bad_domain_is_reported_against_the_domain_parameter():
    with pytest.raises(presets.PresetError) as caught:
        presets.apply("aliyun_ram_user", GOOD["aliyun_ram_user"] | {"nameid_domain": "not a domain"})
    assert list(caught.value.errors) == ["nameid_domain"]
    assert "not a domain name" in caught.value.errors["nameid_domain"]


def test_ram_role_maps_groups_to_role_and_provider_arns_and_allows_only_those_groups():
    dn = "CN=Cloud Admins,OU=Groups,DC=corp,DC=example,DC=com"
    policy = presets.apply("aliyun_ram_role", {"roles": f"{dn}, {ROLE}, {PROVIDER}", "site": "intl"})
    assert [(r.group, r.value) for r in policy.roles] == [(dn, f"{ROLE},{PROVIDER}")]
    assert policy.allowed_groups == [dn]
    assert policy.role_session_name_attribute == "samAccountName"


def test_ram_role_reports_the_line_and_the_arn_at_fault():
    text = f"Engineering, {ROLE}, {PROVIDER}\nSales, acs:ram::{UID}:user/bob, {PROVIDER}\njust a group"
    with pytest.raises(presets.PresetError) as caught:
        presets.apply("aliyun_ram_role", {"roles": text})
    message = caught.value.errors["roles"]
    assert "line 2" in message and "role/<role name>" in message
    assert "line 3" in message and "line 1" not in message


def test_ram_role_needs_a_mapping_and_an_identifier_like_session_name():
    with pytest.raises(presets.PresetError) as caught:
        presets.apply("aliyun_ram_role", {"roles": "  \n", "role_session_name_attribute": "displayName"})
    assert set(caught.value.errors) == {"roles", "role_session_name_attribute"}


@pytest.mark.parametrize(
    ("relay", "ok"),
    [
        ("https://ecs.console.aliyun.com/", True),
        ("https://home.console.alibabacloud.com/", True),
        ("https://aliyun.com.evil.example/", False),
        ("http://ecs.console.aliyun.com/", False),
    ],
)
def test_alibaba_relay_state_must_be_an_alibaba_https_url(relay, ok):
    params = GOOD["aliyun_ram_role"] | {"default_relay_state": relay}
    if ok:
        assert presets.apply("aliyun_ram_role", params).default_relay_state == relay
    else:
        with pytest.raises(presets.PresetError) as caught:
            presets.apply("aliyun_ram_role", params)
        assert list(caught.value.errors) == ["default_relay_state"]


def test_idaas_matches_on_the_chosen_identifier_under_plain_attribute_names():
    by_mail = presets.apply("aliyun_idaas", {"match_on": "mail"})
    by_name = presets.apply("aliyun_idaas", {"match_on": "samAccountName"})
    assert (by_mail.nameid_format, by_mail.nameid_attribute) == ("emailAddress", "mail")
    assert (by_name.nameid_format, by_name.nameid_attribute) == ("unspecified", "samAccountName")
    assert by_mail.attribute_name_format == "basic" and "mail" in by_mail.attributes


def test_mailbox_releases_names_and_department_and_shows_on_the_launcher():
    policy = presets.apply("mailbox", {"allowed_groups": "Mail Users\n\n Sales "})
    assert policy.nameid_format == "emailAddress"
    assert set(policy.attributes) >= {"mail", "displayName", "givenName", "sn", "department"}
    assert policy.idp_initiated
    assert policy.allowed_groups == ["Mail Users", "Sales"]


def test_mailbox_from_account_names_needs_the_mail_domain():
    with pytest.raises(presets.PresetError) as caught:
        presets.apply("mailbox", {"nameid_attribute": "samAccountName"})
    assert list(caught.value.errors) == ["nameid_domain"]
    policy = presets.apply("mailbox", {"nameid_attribute": "samAccountName", "nameid_domain": "mail.example.com"})
    assert policy.nameid_domain == "mail.example.com"


def test_unknown_parameters_and_presets_are_refused_by_name():
    with pytest.raises(presets.PresetError) as caught:
        presets.apply("mailbox", {"nameid_attribut": "mail"})
    assert list(caught.value.errors) == ["nameid_attribut"]
    with pytest.raises(presets.UnknownPreset):
        presets.apply("dingtalk", {})


def test_apply_keeps_the_display_name_and_enabled_switch_of_the_current_policy():
    current = SpPolicy(display_name="Cloud console", enabled=False, attributes=["mail"])
    policy = presets.apply("aliyun_ram_role", GOOD["aliyun_ram_role"], keep=current)
    assert (policy.display_name, policy.enabled, policy.attributes) == ("Cloud console", False, [])


def test_provider_side_gives_the_published_endpoints():
    user = presets.provider_side("aliyun_ram_user", {"account_id": UID})
    assert user.entity_id == f"https://signin.aliyun.com/{UID}/saml/SSO"
    assert user.acs_url == "https://signin.aliyun.com/saml/SSO"
    assert user.metadata_url == f"https://signin.aliyun.com/saml/SpMetadata.xml?tenantID={UID}"
    role = presets.provider_side("aliyun_ram_role", {})
    assert (role.entity_id, role.acs_url) == ("urn:alibaba:cloudcomputing", "https://signin.aliyun.com/saml-role/sso")
    intl = presets.provider_side("aliyun_ram_role", {"site": "intl"})
    assert intl.entity_id == "urn:alibaba:cloudcomputing:international"
    assert presets.provider_side("aliyun_idaas", {}).entity_id is None
