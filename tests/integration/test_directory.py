"""The directory client against a real Samba AD DC: lookups, binds, AD's refusal codes, groups, failover."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from idp.demo.samba_dc import BASE_DN, DEMO_USERS, NETBIOS, REALM, SambaDC
from idp.directory import errors
from idp.directory.client import Directory, normalize_username
from idp.person import GroupRef, Person
from idp.settings import LdapSettings

pytestmark = pytest.mark.ad

USERS = {u.username: u for u in DEMO_USERS}
ALICE = USERS["alice"]
DEAD_DC = "ldaps://127.0.0.99"  # a loopback address nothing listens on: connections are refused at once

REFUSAL_BY_STATE = {
    "disabled": errors.AccountDisabled,
    "expired": errors.AccountExpired,
    "must_change": errors.PasswordMustChange,
    "password_expired": errors.PasswordExpired,
    "locked": errors.AccountLocked,
    "logon_hours": errors.LogonHoursRestricted,
    "workstation": errors.WorkstationRestricted,
}


def sign_in_alice(settings: LdapSettings) -> Person:
    """One sign-in through a Directory of its own, made from these settings."""
    with Directory(settings) as directory:
        return directory.authenticate("alice", ALICE.password)


def with_urls(settings: LdapSettings, *urls: str, **changes: object) -> LdapSettings:
    return settings.model_copy(update={"urls": list(urls), **changes})


@pytest.mark.parametrize(
    "typed",
    [
        "alice",
        "ALICE",
        " alice ",
        "alice@corp.example.com",
        "Alice@Corp.Example.Com",
        "CORP\\alice",
        "corp\\Alice",
        "corp.example.com\\alice",
    ],
)
def test_every_username_form_signs_alice_in(directory: Directory, typed: str) -> None:
    person = directory.authenticate(typed, ALICE.password)
    assert person.username == "alice"
    assert person.upn == ALICE.upn
    assert person.dn == ALICE.dn


def test_a_mail_address_that_is_not_the_upn_signs_in(directory: Directory) -> None:
    bob = USERS["bob"]
    assert bob.mail != bob.upn
    assert directory.authenticate(bob.mail, bob.password).username == "bob"


def test_a_foreign_domain_is_refused_like_a_wrong_password(directory: Directory) -> None:
    with pytest.raises(errors.InvalidCredentials):
        directory.authenticate("OTHER\\alice", ALICE.password)
    assert directory.pool_stats()["bind"].opened == 0  # refused before any LDAP traffic


def test_normalize_username_forms(ldap_settings: LdapSettings) -> None:
    assert normalize_username(f"{NETBIOS}\\Alice", ldap_settings) == "alice"
    assert normalize_username(f" Alice@{REALM.upper()} ", ldap_settings) == f"alice@{REALM}"
    for bad in ["", "   ", "OTHER\\alice", "CORP\\", "a\\b\\c", "alice\x00", "x" * 300]:
        with pytest.raises(errors.InvalidCredentials):
            normalize_username(bad, ldap_settings)


def test_the_person_carries_ad_attributes_and_the_real_object_guid(directory: Directory, samba_dc: SambaDC) -> None:
    person = directory.authenticate("alice", ALICE.password)
    assert (person.mail, person.given_name, person.surname, person.display_name) == (
        ALICE.mail,
        "Alice",
        "Wang",
        "Alice Wang",
    )
    assert person.attributes["department"] == ("Sales",)
    assert person.attributes["title"] == ("Account Manager",)
    # Samba's own tool, not our decoding, says what the GUID is.
    out = subprocess.run(
        ["ldbsearch", "-H", str(samba_dc.target_dir / "private" / "sam.ldb"), "(sAMAccountName=alice)", "objectGUID"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"objectGUID: {person.guid}" in out


def test_nested_groups_are_resolved(directory: Directory) -> None:
    alice = directory.authenticate("alice", ALICE.password)
    assert alice.groups == ("Mail Users", "Sales")  # Mail Users only through Sales
    assert alice.group_dns == (f"CN=Mail Users,CN=Users,{BASE_DN}", f"CN=Sales,CN=Users,{BASE_DN}")
    assert alice.in_any_group([GroupRef(name="mail users")])
    assert directory.authenticate("bob", USERS["bob"].password).groups == ("Engineering", "Mail Users")
    assert directory.authenticate("carol", USERS["carol"].password).groups == ()
    assert directory.authenticate("anna", USERS["anna"].password).groups == ("SSO Admins",)


def test_wrong_password_and_unknown_user_are_indistinguishable(directory: Directory) -> None:
    with pytest.raises(errors.InvalidCredentials) as wrong:
        directory.authenticate("alice", "Not-Her-Passw0rd")
    with pytest.raises(errors.InvalidCredentials) as unknown:
        directory.authenticate("nobody.here", "Not-Her-Passw0rd")
    assert type(wrong.value) is type(unknown.value)
    assert str(wrong.value) == str(unknown.value)
    assert wrong.value.reason == unknown.value.reason == "invalid_credentials"


@pytest.mark.parametrize("user", [u for u in DEMO_USERS if u.state in REFUSAL_BY_STATE], ids=lambda u: u.username)
def test_each_account_state_gives_its_typed_error(directory: Directory, user) -> None:
    with pytest.raises(REFUSAL_BY_STATE[user.state]):
        directory.authenticate(user.username, user.password)


def test_an_account_user_filter_hides_is_never_bound_as(ldap_settings: LdapSettings) -> None:
    """Only an account the search found is tried: a name the filter (or a stray spelling) does not match
    never reaches AD as a bind, so it can neither lock an account nor slip past the throttle's count."""
    enabled_only = "(&(objectCategory=person)(objectClass=user)(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"
    with Directory(ldap_settings.model_copy(update={"user_filter": enabled_only})) as directory:
        assert directory.find("dave.disabled") is None
        with pytest.raises(errors.InvalidCredentials):
            directory.authenticate("dave.disabled", USERS["dave.disabled"].password)
        assert directory.pool_stats()["bind"].opened == 0


def test_a_user_outside_user_filter_cannot_sign_in_even_with_the_right_password(ldap_settings: LdapSettings) -> None:
    with Directory(ldap_settings.model_copy(update={"user_filter": "(department=Engineering)"})) as directory:
        assert directory.authenticate("bob", USERS["bob"].password).username == "bob"
        with pytest.raises(errors.InvalidCredentials):
            directory.authenticate("alice", ALICE.password)


@pytest.mark.parametrize("password", ["", " ", "\t \n"])
def test_an_empty_password_is_refused_before_any_ldap_traffic(ldap_settings: LdapSettings, password: str) -> None:
    # The only DC is unreachable: any LDAP attempt would surface as DirectoryUnavailable.
    with Directory(with_urls(ldap_settings, DEAD_DC)) as directory, pytest.raises(errors.InvalidCredentials):
        directory.authenticate("alice", password)
    with Directory(ldap_settings) as directory:
        with pytest.raises(errors.InvalidCredentials):
            directory.authenticate("alice", password)
        assert directory.pool_stats()["search"].opened == directory.pool_stats()["bind"].opened == 0


@pytest.mark.parametrize("typed", ["*", "a*", "*)(sAMAccountName=*", ")(", "alice)(|(objectClass=*)", "*@*", "al\\2a"])
def test_ldap_filter_injection_finds_nobody(directory: Directory, typed: str) -> None:
    assert directory.find(typed) is None
    with pytest.raises(errors.InvalidCredentials):
        directory.authenticate(typed, ALICE.password)


def test_find_uses_the_service_account_only(directory: Directory) -> None:
    person = directory.find("CORP\\bob")
    assert person is not None and person.username == "bob" and "Mail Users" in person.groups
    assert directory.find("nobody.here") is None
    assert directory.pool_stats()["bind"].opened == 0


def test_sign_ins_reuse_open_connections(directory: Directory) -> None:
    directory.authenticate("alice", ALICE.password)
    before = directory.pool_stats()
    for _ in range(20):
        directory.authenticate("alice", ALICE.password)
    after = directory.pool_stats()
    assert (after["search"].opened, after["bind"].opened) == (before["search"].opened, before["bind"].opened) == (1, 1)


def test_concurrent_sign_ins_share_a_small_pool(ldap_settings: LdapSettings) -> None:
    failures: list[BaseException] = []

    def sign_in_five_times() -> None:
        try:
            for _ in range(5):
                directory.authenticate("bob", USERS["bob"].password)
        except BaseException as exc:  # handed to the main thread's assertion
            failures.append(exc)

    with Directory(ldap_settings.model_copy(update={"pool_size": 2})) as directory:
        threads = [threading.Thread(target=sign_in_five_times) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        stats = directory.pool_stats()
        # At most 2 stay open; a burst above that opens extra connections, which are closed afterwards.
        assert stats["bind"].idle <= 2 and stats["search"].idle <= 2
        assert stats["bind"].opened < 20  # 20 sign-ins: connections were reused


def test_failover_skips_a_dead_dc(ldap_settings: LdapSettings, samba_dc: SambaDC) -> None:
    assert sign_in_alice(with_urls(ldap_settings, DEAD_DC, samba_dc.ldaps_url)).username == "alice"


def test_starttls_on_port_389_works(ldap_settings: LdapSettings, samba_dc: SambaDC) -> None:
    assert sign_in_alice(with_urls(ldap_settings, samba_dc.ldap_url, start_tls=True)).username == "alice"


def test_all_dcs_down_is_reported_quickly(ldap_settings: LdapSettings) -> None:
    start = time.monotonic()
    with pytest.raises(errors.DirectoryUnavailable) as raised:
        sign_in_alice(with_urls(ldap_settings, DEAD_DC, "ldaps://127.0.0.98"))
    assert time.monotonic() - start < 3
    assert "127.0.0.99" in str(raised.value) and "127.0.0.98" in str(raised.value)


@pytest.fixture
def silent_dc() -> Iterator[str]:
    """A "DC" that accepts TCP connections and then never says a word (a hung server)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield f"ldaps://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_a_hung_dc_times_out_and_the_next_one_answers(
    ldap_settings: LdapSettings, samba_dc: SambaDC, silent_dc: str
) -> None:
    fast = {"connect_timeout": 1.0, "receive_timeout": 1.0}
    start = time.monotonic()
    with pytest.raises(errors.DirectoryUnavailable):
        sign_in_alice(with_urls(ldap_settings, silent_dc, **fast))
    assert time.monotonic() - start < 5
    start = time.monotonic()
    assert sign_in_alice(with_urls(ldap_settings, silent_dc, samba_dc.ldaps_url, **fast)).username == "alice"
    # One sign-in opens two connections (search, bind); the hung DC is in back-off for the second one.
    assert time.monotonic() - start < 1.9


def test_a_wrong_service_password_is_the_admins_problem(ldap_settings: LdapSettings) -> None:
    with pytest.raises(errors.ServiceAccountRejected):
        sign_in_alice(ldap_settings.model_copy(update={"bind_password": "Not-The-Passw0rd"}))


def test_a_certificate_for_another_name_is_refused(ldap_settings: LdapSettings) -> None:
    with pytest.raises(errors.DirectoryUnavailable):
        sign_in_alice(ldap_settings.model_copy(update={"tls_valid_names": ["dc9.elsewhere.example"]}))


def test_connections_broken_by_a_dc_restart_are_replaced_transparently(directory: Directory, samba_dc: SambaDC) -> None:
    directory.authenticate("alice", ALICE.password)
    samba_dc.stop()
    samba_dc.start()
    assert directory.authenticate("alice", ALICE.password).username == "alice"
    stats = directory.pool_stats()
    assert stats["search"].replaced == 1 and stats["bind"].replaced == 1
