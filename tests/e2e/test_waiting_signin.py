"""A sign-in waits at the password page while an admin changes who may use the SP: the change applies.

The parked request names the SP only; the sign-in reads the SP's policy when the password arrives, and AD
says which groups the person is in at that moment. Each test opens the login page first, changes the
policy (from another process, as `idp sp` or the console of another worker would) or AD, then types the
right password: no assertion may leave.
"""

from __future__ import annotations

import pytest

from idp.demo.samba_dc import DEMO_USERS
from idp.settings import load_settings
from idp.sps.policy import SpPolicy
from idp.sps.registry import SpRegistry
from idp.store.db import Database
from tests.e2e.ad_admin import AdAdmin
from tests.e2e.browser import Browser, Page
from tests.e2e.harness import IdpServer
from tests.e2e.saml_sp import IndependentSp, register_sp

pytestmark = pytest.mark.ad

ALICE = next(u for u in DEMO_USERS if u.username == "alice")


def set_policy(server: IdpServer, sp: IndependentSp, policy: SpPolicy) -> None:
    settings = load_settings(server.config)
    db = Database(settings.database_url)
    try:
        SpRegistry(settings.metadata.dir, db, settings.sp_defaults).set_policy(sp.entity_id, policy)
    finally:
        db.dispose()


def waiting_at_password_page(sp: IndependentSp) -> tuple[Browser, Page]:
    browser = Browser()
    page = browser.get(sp.redirect_login_url())
    assert page.is_login
    return browser, page


def refusal(page: Page) -> str | None:
    found = page.doc().get_element_by_id("error", None)
    return None if found is None else found.get("data-reason")


def assert_refused(server: IdpServer, sp: IndependentSp, page: Page, reason: str, *, username: str | None) -> None:
    assert page.status == 403 and refusal(page) == reason
    assert not page.is_auto_post and "SAMLResponse" not in page.html
    [row] = server.audit_rows(event="signin", sp_entity_id=sp.entity_id)
    assert (row["result"], row["reason"], row["username"]) == ("failure", reason, username)


def test_switching_the_sp_off_stops_a_waiting_sign_in(idp_server):
    sp = register_sp(idp_server, "switchedoff", SpPolicy())
    browser, page = waiting_at_password_page(sp)
    set_policy(idp_server, sp, SpPolicy(enabled=False))
    # Refused before the password goes to AD: nobody was authenticated, so the row names no one.
    assert_refused(idp_server, sp, browser.login(page, "alice", ALICE.password), "sp_disabled", username=None)


def test_tightening_the_groups_stops_a_waiting_sign_in(idp_server):
    sp = register_sp(idp_server, "tightened", SpPolicy())
    browser, page = waiting_at_password_page(sp)
    set_policy(idp_server, sp, SpPolicy(allowed_groups=["Engineering"]))
    assert_refused(
        idp_server, sp, browser.login(page, "alice", ALICE.password), "not_in_allowed_group", username="alice"
    )


def test_leaving_the_group_in_ad_stops_a_waiting_sign_in(idp_server, samba_dc):
    ad = AdAdmin(samba_dc)
    try:
        group = ad.add_group("Waiting Room", members=[ad.dn_of("alice")])
        sp = register_sp(idp_server, "adgroup", SpPolicy(allowed_groups=["Waiting Room"]))
        browser, page = waiting_at_password_page(sp)
        ad.remove_member(group, ad.dn_of("alice"))
        assert_refused(
            idp_server, sp, browser.login(page, "alice", ALICE.password), "not_in_allowed_group", username="alice"
        )
    finally:
        ad.undo()


def test_an_unchanged_policy_still_signs_in(idp_server):
    """The control: the same steps without a change end in an assertion the SP accepts."""
    sp = register_sp(idp_server, "unchanged", SpPolicy())
    browser, page = waiting_at_password_page(sp)
    set_policy(idp_server, sp, SpPolicy(display_name="Still the same rules"))
    assert sp.consume(*browser.saml_post(browser.login(page, "alice", ALICE.password))).nameid == ALICE.mail
