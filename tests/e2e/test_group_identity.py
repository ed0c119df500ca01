"""Groups are identities, not names: a group created in another OU under a name a policy or [admin] groups
uses, or a mailing list, grants nothing.

These tests make same-named groups in the run's AD, which would make the bare names the shared IdP's other
tests use ambiguous while they exist: they run against an IdP of their own, which reads the group nesting
at every sign-in (group_cache_seconds = 0), so each test sees AD as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from idp.demo.samba_dc import DEMO_USERS
from idp.sps.policy import SpPolicy
from tests.e2e.ad_admin import BASE_DN, AdAdmin
from tests.e2e.browser import Browser, Page, admin_browser
from tests.e2e.harness import IdpServer, base_config, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, register_sp, write_metadata

pytestmark = pytest.mark.ad

USERS = {u.username: u for u in DEMO_USERS}
SALES = f"CN=Sales,CN=Users,{BASE_DN}"


@pytest.fixture(scope="module")
def server(samba_dc, tmp_path_factory) -> Iterator[IdpServer]:
    root = tmp_path_factory.mktemp("idp-groups")
    port = free_port()
    ldap = {**samba_dc.ldap_settings(), "group_cache_seconds": 0}
    server = serve_idp(prepare_idp(root, base_config(root, f"http://127.0.0.1:{port}", ldap)), port, workers=1)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ad(samba_dc) -> Iterator[AdAdmin]:
    with AdAdmin(samba_dc) as admin:
        yield admin


def sign_in(sp: IndependentSp, username: str) -> Page:
    browser = Browser()
    page = browser.get(sp.redirect_login_url())
    return browser.login(page, username, USERS[username].password)


def refusal(page: Page) -> str | None:
    found = page.doc().get_element_by_id("error", None)
    return None if found is None else found.get("data-reason")


def add_sp_with_cli(server: IdpServer, name: str, *groups: str, check: bool = True):
    sp = IndependentSp(
        entity_id=f"https://{name}.groups.sp.test/saml",
        acs_url=f"http://127.0.0.1:9801/{name}/acs",
        sign_requests=False,
        idp_metadata_xml=server.metadata(),
    )
    folder = server.root / "sp-metadata"
    folder.mkdir(exist_ok=True)
    options = [arg for group in groups for arg in ("--group", group)]
    return sp, server.idp("sp", "add", str(write_metadata(sp, folder)), *options, check=check)


def test_a_same_named_group_in_another_ou_grants_nothing(server, ad):
    sales_only, _ = add_sp_with_cli(server, "salesonly", "Sales")  # resolved to the one Sales there is now
    legacy = register_sp(server, "legacysales", SpPolicy(allowed_groups=["Sales"]))  # stored before: a bare name
    assert sign_in(legacy, "alice").is_auto_post  # while it names one security group, it still counts
    branch = ad.add_ou("Sales Branch")
    shadow = ad.add_group("Sales", members=[USERS["bob"].dn], container=branch, account_name="SalesBranch")

    page = sign_in(sales_only, "bob")
    assert (page.status, refusal(page)) == (403, "not_in_allowed_group")
    assert sign_in(sales_only, "alice").is_auto_post  # a member of the Sales the SP was given

    # The bare name now names two security groups: it grants nothing, not even to the original's members...
    page = sign_in(legacy, "alice")
    assert (page.status, refusal(page)) == (403, "not_in_allowed_group")
    # ...and the console says so.
    admin = admin_browser(server.base_url)
    flagged = admin.get(f"{server.base_url}/admin/sps/policy?entity_id={legacy.entity_id}").text_of("unknown-groups")
    assert flagged and SALES in flagged and shadow in flagged

    refused = add_sp_with_cli(server, "ambiguous", "Sales", check=False)[1]
    assert refused.returncode != 0
    assert SALES in refused.stderr and shadow in refused.stderr and "security groups" in refused.stderr


def test_a_distribution_group_grants_nothing(server, ad):
    carol = USERS["carol"].dn
    ad.add_group("Carol Club", members=[carol])
    mailing_list = ad.add_group("Carol Mailing", members=[carol], security=False)
    club = register_sp(server, "club", SpPolicy(allowed_groups=["Carol Club"]))
    by_name = register_sp(server, "mailingname", SpPolicy(allowed_groups=["Carol Mailing"]))
    by_dn = register_sp(server, "mailingdn", SpPolicy(allowed_groups=[mailing_list]))

    assert sign_in(club, "carol").is_auto_post  # the control: a security group does let her in
    for sp in (by_name, by_dn):
        page = sign_in(sp, "carol")
        assert (page.status, refusal(page)) == (403, "not_in_allowed_group")

    admin = admin_browser(server.base_url)
    url = f"{server.base_url}/admin/sps/policy?entity_id={club.entity_id}"
    page = admin.submit(admin.get(url), "policy-form", {"allowed_groups": "Carol Mailing"})
    assert page.status == 400 and "distribution group" in (page.text_of("error-allowed_groups") or "")
    refused = add_sp_with_cli(server, "mailing", "Carol Mailing", check=False)[1]
    assert refused.returncode != 0 and "distribution group" in refused.stderr


def test_an_ambiguous_admin_group_opens_the_console_to_nobody(server, ad):
    admin_browser(server.base_url)  # the control: anna is in the one "SSO Admins"
    branch = ad.add_ou("Admins Branch")
    shadow = ad.add_group("SSO Admins", container=branch, account_name="SSOAdminsBranch")
    browser = Browser()
    page = browser.login(browser.get(server.base_url + "/admin/"), "anna", USERS["anna"].password)
    assert page.status == 403
    error = page.text_of("error") or ""
    assert f"CN=SSO Admins,CN=Users,{BASE_DN}" in error and shadow in error
    assert "[admin] groups" in Path(server.log).read_text() and shadow in Path(server.log).read_text()
    [row] = server.audit_rows(event="admin_access", username="anna")
    assert (row["result"], row["reason"]) == ("refused", "admin_not_member") and shadow in row["detail"]
