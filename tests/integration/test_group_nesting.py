"""Nested groups come from each person's memberOf plus a cached graph of how groups nest (idp/directory/groups.py):
no nested-group search per sign-in, yet changes in AD show up."""

from __future__ import annotations

import pytest

from idp.demo.samba_dc import BASE_DN, DEMO_USERS
from idp.directory.client import Directory
from idp.directory.groups import MIN_RELOAD_INTERVAL, Group, GroupGraph
from tests.e2e.ad_admin import AdAdmin
from tests.support import FakeClock

USERS = {u.username: u for u in DEMO_USERS}


@pytest.fixture
def ad_admin(samba_dc):
    admin = AdAdmin(samba_dc)
    yield admin
    admin.undo()


@pytest.mark.ad
def test_a_group_created_after_the_cache_was_read_counts_at_the_next_sign_in(ldap_settings, ad_admin):
    carol = USERS["carol"]
    clock = FakeClock()
    with Directory(ldap_settings, clock=clock) as directory:
        assert directory.authenticate("carol", carol.password).groups == ()  # the group graph is cached now
        ad_admin.add_group("Project X", members=[carol.dn], member_of=["Mail Users"])
        clock.advance(MIN_RELOAD_INTERVAL)
        # A burst of sign-ins naming an unknown group must not reload the graph at each one.
        assert directory.authenticate("carol", carol.password).groups == ()
        clock.advance(0.1)
        person = directory.authenticate("carol", carol.password)
    assert person.groups == ("Mail Users", "Project X")
    assert any(dn.lower().startswith("cn=mail users,") for dn in person.group_dns)


@pytest.mark.ad
def test_a_direct_membership_removed_in_ad_is_gone_at_the_next_sign_in(directory: Directory, ad_admin):
    carol = USERS["carol"]
    group = ad_admin.add_group("Temp Access", members=[carol.dn], member_of=["Mail Users"])
    assert "Mail Users" in directory.authenticate("carol", carol.password).groups
    ad_admin.conn.modify(group, {"member": [("MODIFY_DELETE", [carol.dn])]})
    assert directory.authenticate("carol", carol.password).groups == ()


@pytest.mark.ad
def test_only_security_groups_carry_identities_and_a_name_two_ous_share_is_not_unique(ldap_settings, ad_admin):
    carol = USERS["carol"]
    branch = ad_admin.add_ou("Nesting Branch")
    ad_admin.add_group("Carol List", members=[carol.dn], member_of=["Mail Users"], security=False)
    team = ad_admin.add_group("Carol Team", members=[carol.dn])
    ad_admin.add_group("Carol Team", container=branch, account_name="CarolTeamBranch")
    crew = ad_admin.add_group("Carol Crew", members=[carol.dn])
    with Directory(ldap_settings) as directory:
        person = directory.authenticate("carol", carol.password)
        by_dn = {g.dn.lower(): g for g in directory.groups()}
    # Released attributes still list every group, the mailing list and what it is nested in included...
    assert person.groups == ("Carol Crew", "Carol List", "Carol Team", "Mail Users")
    # ...but access compares only security groups, and a mailing list passes on no membership.
    assert person.security_group_dns == (crew, team)
    assert person.group_sids == (by_dn[crew.lower()].sid, by_dn[team.lower()].sid)
    assert all(sid.startswith("S-1-5-21-") for sid in person.group_sids)
    assert by_dn[f"cn=mail users,cn=users,{BASE_DN}".lower()].security
    assert not by_dn[f"cn=carol list,cn=users,{BASE_DN}".lower()].security
    assert person.unique_group_names == ("Carol Crew",)  # "Carol Team" names two security groups


def test_cycles_and_unknown_groups_are_harmless():
    a = Group("CN=A,DC=x", "A", ("cn=b,dc=x",))
    b = Group("CN=B,DC=x", "B", ("cn=a,dc=x",))
    graph = GroupGraph(lambda: [a, b], ttl=300)
    assert [g.cn for g in graph.resolve(["CN=A,DC=x", "CN=Elsewhere,DC=other"])] == ["A", "B"]


def test_nesting_is_read_again_after_the_ttl_and_not_before():
    loads: list[int] = []

    def load() -> list[Group]:
        loads.append(1)
        return [Group("CN=A,DC=x", "A", ())]

    cached = GroupGraph(load, ttl=300)
    for _ in range(3):
        cached.resolve(["CN=A,DC=x"])
    assert len(loads) == 1
    always = GroupGraph(load, ttl=0)
    always.resolve(["CN=A,DC=x"])
    always.resolve(["CN=A,DC=x"])
    assert len(loads) == 3
