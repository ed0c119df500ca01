"""One address rule at sign-in, end to end: `idp serve` against the run's Samba AD DC, python3-saml as the SP.

A person without AD ``mail`` gets the emailAddress NameID their mailbox was made with (the pattern's
username@<mail domain>), and when no address can be made they read our own page naming the missing
attribute, never the SP's InvalidNameIDPolicy."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import ldap3
import pytest

from idp.demo.alimail_emulator import RunningEmulator, run_emulator
from idp.demo.samba_dc import REALM, SambaDC
from tests.e2e.ad_admin import AdAdmin
from tests.e2e.browser import Browser
from tests.e2e.harness import IdpServer, base_config, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, write_metadata

pytestmark = pytest.mark.ad

PASSWORD = "Addr-Passw0rd!" + secrets.token_hex(3)


@pytest.fixture
def no_mail_user(samba_dc: SambaDC) -> Iterator[str]:
    """A user of this test only, in CN=Users, without a mail attribute; removed afterwards."""
    admin = AdAdmin(samba_dc)
    username = "nomail" + secrets.token_hex(3)
    admin.add_user(username, PASSWORD)
    yield username
    admin.undo()


@pytest.mark.parametrize(
    ("language", "words"), [("en", "no e-mail address in the company directory"), ("zh-CN", "没有电子邮件地址")]
)
def test_without_any_address_the_person_reads_our_page_naming_mail(
    idp_server: IdpServer, no_mail_user: str, language: str, words: str
) -> None:
    # The session's IdP has no [provisioning]: no mail domain, so only AD's mail could give an address.
    browser = Browser(accept_language=language)
    page = browser.login(browser.get(idp_server.sps["webmail"].redirect_login_url()), no_mail_user, PASSWORD)
    assert page.status == 403 and not page.is_auto_post  # our page, not a SAML error posted to the SP
    error = page.doc().get_element_by_id("error")
    assert error.get("data-reason") == "no_mail_address"
    assert words in error.text_content() and "mail" in error.text_content()
    row = idp_server.audit_rows(event="signin", username=no_mail_user)[0]
    assert (row["result"], row["reason"]) == ("failure", "no_mail_address")
    assert "missing: mail" in (row["detail"] or "")


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_emulator(mail_domain=REALM, rate_limit=None) as emu:
        yield emu


@pytest.fixture(scope="module")
def no_mailbox_groups(samba_dc: SambaDC) -> Iterator[tuple[str, str]]:
    """(the no-mailbox group, a group nested in it), made for this module and removed afterwards."""
    admin = AdAdmin(samba_dc)
    tag = secrets.token_hex(3)
    outer = admin.add_group(f"No Mailbox {tag}")
    inner = admin.add_group(f"Kiosk Logons {tag}")
    admin.add_member(outer, inner)
    yield outer, inner
    admin.undo()


@pytest.fixture(scope="module")
def provisioning_idp(
    samba_dc: SambaDC,
    emulator: RunningEmulator,
    no_mailbox_groups: tuple[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[IdpServer]:
    """An IdP with JIT into the emulator, whose mail domain gives the pattern its {mail_domain}."""
    root = tmp_path_factory.mktemp("address")
    port = free_port()
    emu = emulator.emulator
    config = base_config(root, f"http://127.0.0.1:{port}", samba_dc.ldap_settings())
    config["provisioning"] = {"provider": "alimail", "no_mailbox_group": no_mailbox_groups[0]}
    config["provisioning.alimail"] = {
        "host": emulator.url,
        "client_id": emu.client_id,
        "client_secret": emu.client_secret,
        "mail_domain": emu.mail_domain,
        "rate_per_second": 1000,
    }
    server = serve_idp(prepare_idp(root, config), port)
    sp = IndependentSp(
        entity_id="https://mail-address.sp.test/saml",
        acs_url="http://127.0.0.1:9200/address/acs",
        sign_requests=False,
        idp_metadata_xml=server.metadata(),
    )
    server.idp("sp", "add", str(write_metadata(sp, root)))
    server.sps["mail"] = sp
    yield server
    server.stop()


def test_without_mail_the_nameid_is_the_address_the_mailbox_was_made_with(
    provisioning_idp: IdpServer, emulator: RunningEmulator, no_mail_user: str
) -> None:
    browser = Browser()
    page = browser.login(browser.get(provisioning_idp.sps["mail"].redirect_login_url()), no_mail_user, PASSWORD)
    assert page.is_auto_post, page.html[:500]
    name_id = provisioning_idp.sps["mail"].consume(*browser.saml_post(page)).nameid
    assert name_id == f"{no_mail_user}@{REALM}"
    assert [u["email"] for u in emulator.emulator.users() if u["email"].startswith(no_mail_user)] == [name_id]


def test_a_member_of_the_no_mailbox_group_signs_in_without_getting_a_mailbox(
    provisioning_idp: IdpServer, emulator: RunningEmulator, samba_dc: SambaDC, no_mailbox_groups: tuple[str, str]
) -> None:
    admin = AdAdmin(samba_dc)
    username = "kiosk" + secrets.token_hex(3)
    try:
        admin.add_member(no_mailbox_groups[1], admin.add_user(username, PASSWORD))  # nested membership counts
        browser = Browser()
        page = browser.login(browser.get(provisioning_idp.sps["mail"].redirect_login_url()), username, PASSWORD)
        assert provisioning_idp.sps["mail"].consume(*browser.saml_post(page)).nameid == f"{username}@{REALM}"
        assert not [u for u in emulator.emulator.users() if u["email"].startswith(username)]
    finally:
        admin.undo()


def test_a_service_account_signs_in_without_getting_a_mailbox(
    provisioning_idp: IdpServer, emulator: RunningEmulator, samba_dc: SambaDC
) -> None:
    """An account the sync leaves out (here: one with a servicePrincipalName) gets no mailbox at sign-in
    either; otherwise JIT would make, and at every later sign-in thaw, what the sync freezes."""
    admin = AdAdmin(samba_dc)
    username = "svcapp" + secrets.token_hex(3)
    try:
        dn = admin.add_user(username, PASSWORD)
        admin.conn.modify(dn, {"servicePrincipalName": [(ldap3.MODIFY_ADD, [f"HTTP/{username}.corp.example.com"])]})
        assert admin.conn.result["result"] == 0, admin.conn.result
        browser = Browser()
        page = browser.login(browser.get(provisioning_idp.sps["mail"].redirect_login_url()), username, PASSWORD)
        assert provisioning_idp.sps["mail"].consume(*browser.saml_post(page)).nameid == f"{username}@{REALM}"
        assert not [u for u in emulator.emulator.users() if u["email"].startswith(username)]
    finally:
        admin.undo()
