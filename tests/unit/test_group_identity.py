"""Groups are identities: what a stored group reference means, how a typed name becomes one, and how a
person's membership is compared (idp/person.py, idp/directory/groups.py)."""

from __future__ import annotations

import uuid

import pytest

from idp.access import SpFacts, refusals
from idp.directory.client import sid_text
from idp.directory.groups import Group, GroupGraph, GroupNotResolved, resolve_group
from idp.person import GroupRef, Person
from idp.sps.policy import RoleMapping, SpPolicy, matching_roles
from idp.web.sso_session import _person_from_dict, _person_to_dict

SALES_SID = "S-1-5-21-1-2-3-1101"
SHADOW_SID = "S-1-5-21-1-2-3-1201"
LIST_SID = "S-1-5-21-1-2-3-1301"
SALES = Group("CN=Sales,CN=Users,DC=corp", "Sales", (), sid=SALES_SID, security=True)
SHADOW = Group("CN=Sales,OU=Branch,DC=corp", "Sales", (), sid=SHADOW_SID, security=True)
NEWSLETTER = Group("CN=Newsletter,CN=Users,DC=corp", "Newsletter", (), sid=LIST_SID, security=False)
ROLE = {"role_arn": "acs:ram::1:role/sales", "provider_arn": "acs:ram::1:saml-provider/ad"}


def person(*groups: Group, unique: tuple[str, ...] = ()) -> Person:
    security = [g for g in groups if g.security]
    return Person(
        username="bob",
        dn="CN=bob,CN=Users,DC=corp",
        guid=uuid.UUID(int=7),
        groups=tuple(g.cn for g in groups),
        group_dns=tuple(g.dn for g in groups),
        group_sids=tuple(g.sid for g in security),
        security_group_dns=tuple(g.dn for g in security),
        unique_group_names=unique,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"CN=Sales,CN=Users,DC=corp <{SALES_SID}>", GroupRef(sid=SALES_SID, dn="CN=Sales,CN=Users,DC=corp")),
        (SALES_SID.lower(), GroupRef(sid=SALES_SID)),
        ("cn=Sales,OU=Branch,DC=corp", GroupRef(dn="cn=Sales,OU=Branch,DC=corp")),
        (" Sales ", GroupRef(name="Sales")),
        ("SSO Admins", GroupRef(name="SSO Admins")),
    ],
)
def test_a_stored_reference_reads_back_as_what_it_names(text, expected):
    ref = GroupRef.parse(text)
    assert ref == expected
    assert GroupRef.parse(str(ref)) == ref


def test_a_name_resolves_only_to_exactly_one_security_group():
    assert resolve_group("sales", [SALES, NEWSLETTER]) == GroupRef(sid=SALES_SID, dn=SALES.dn)
    with pytest.raises(GroupNotResolved) as ambiguous:
        resolve_group("Sales", [SALES, SHADOW])
    assert SALES.dn in str(ambiguous.value) and SHADOW.dn in str(ambiguous.value)
    with pytest.raises(GroupNotResolved, match="distribution group"):
        resolve_group("Newsletter", [SALES, NEWSLETTER])
    with pytest.raises(GroupNotResolved, match="no group 'Slaes'"):
        resolve_group("Slaes", [SALES])


def test_a_same_named_distribution_group_does_not_make_a_name_ambiguous():
    mailing_list = Group("CN=Sales,OU=Lists,DC=corp", "Sales", (), sid=LIST_SID, security=False)
    assert resolve_group("Sales", [SALES, mailing_list]).sid == SALES_SID


def test_a_dn_or_sid_names_its_group_even_when_the_cn_is_shared():
    assert resolve_group(SHADOW.dn.upper(), [SALES, SHADOW]) == SHADOW.ref
    assert resolve_group(SALES_SID, [SALES, SHADOW]) == SALES.ref
    assert resolve_group(str(SALES.ref), [SALES, SHADOW]) == SALES.ref
    with pytest.raises(GroupNotResolved, match="distribution group"):
        resolve_group(NEWSLETTER.dn, [NEWSLETTER])


def test_membership_compares_identities_never_the_cn():
    bob = person(SHADOW, NEWSLETTER)  # in the other OU's "Sales", and a mailing list
    assert not bob.in_any_group([SALES.ref])
    assert not bob.in_any_group([GroupRef(dn=SALES.dn)])
    assert bob.in_any_group([SHADOW.ref])
    assert bob.in_any_group([GroupRef(dn=SHADOW.dn.lower())])
    assert not bob.in_any_group([NEWSLETTER.ref, GroupRef(dn=NEWSLETTER.dn)])  # distribution groups grant nothing


def test_a_bare_name_stored_before_counts_only_while_it_names_one_security_group():
    assert person(SALES, unique=("Sales",)).in_any_group([GroupRef(name="sales")])
    assert not person(SALES).in_any_group([GroupRef(name="Sales")])  # ambiguous in the domain: not unique
    assert not person(NEWSLETTER).in_any_group([GroupRef(name="Newsletter")])


def test_the_graph_knows_which_security_names_are_unique_and_mailing_lists_pass_nothing_on():
    hr = Group("CN=HR,DC=corp", "HR", (), "S-1-9", True)
    team_list = Group("CN=Team List,DC=corp", "Team List", ("cn=hr,dc=corp",), LIST_SID, False)
    graph = GroupGraph(lambda: [SALES, SHADOW, hr, team_list], ttl=300)
    found = graph.memberships([SALES.dn, team_list.dn])
    assert [g.cn for g in found.groups] == ["HR", "Sales", "Team List"]  # released: every group
    assert found.security == [SALES]  # HR only through a mailing list
    assert found.unique_names == []  # "Sales" is two security groups
    assert graph.memberships(["CN=HR,DC=corp"]).unique_names == ["HR"]


def test_access_and_roles_go_through_identities():
    policy = SpPolicy(allowed_groups=[str(SALES.ref)], roles=[RoleMapping(group=str(SALES.ref), **ROLE)])
    facts = SpFacts("https://sp.test", policy, metadata_expired=None, can_encrypt=True)
    shadow_member = person(SHADOW)
    assert [r.reason for r in refusals(shadow_member, facts)] == ["not_in_allowed_group", "no_role_for_user"]
    assert (
        SALES.dn in refusals(shadow_member, facts)[0].detail
        and SALES_SID not in refusals(shadow_member, facts)[0].detail
    )
    member = person(SALES)
    assert refusals(member, facts) == []
    assert matching_roles(member, policy.roles) == policy.roles


def test_binary_object_sid_is_written_as_ad_does():
    raw = bytes([1, 5, 0, 0, 0, 0, 0, 5]) + b"".join(n.to_bytes(4, "little") for n in (21, 1, 2, 3, 1101))
    assert sid_text(raw) == SALES_SID


def test_sessions_keep_group_identities_and_old_sessions_stay_readable():
    bob = person(SALES, NEWSLETTER, unique=("Sales",))
    assert _person_from_dict(_person_to_dict(bob)) == bob
    old = {
        k: v
        for k, v in _person_to_dict(bob).items()
        if k not in ("group_sids", "security_group_dns", "unique_group_names")
    }
    restored = _person_from_dict(old)
    assert restored.groups == bob.groups and restored.group_sids == ()
    assert not restored.in_any_group([SALES.ref])  # until the recheck reads them from AD again: fail closed
