"""IdP-initiated sign-in (/saml/init) and the app launcher (/apps), end to end: an unsolicited response that
python3-saml accepts, refusals with a page and an audit row, and tiles that depend on who is signed in."""

from __future__ import annotations

import base64
from urllib.parse import quote

import pytest
from lxml import etree

from idp.demo.samba_dc import DEMO_USERS
from idp.sps.policy import SpPolicy
from tests.e2e.browser import Browser, Page
from tests.e2e.saml_sp import register_sp

pytestmark = pytest.mark.ad

USERS = {u.username: u for u in DEMO_USERS}
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"


def init_url(base_url: str, entity_id: str, relay_state: str | None = None) -> str:
    url = f"{base_url}/saml/init?sp={quote(entity_id, safe='')}"
    return url + (f"&RelayState={quote(relay_state, safe='')}" if relay_state is not None else "")


def reason(page: Page) -> str | None:
    found = page.doc().get_element_by_id("error", None)
    return None if found is None else found.get("data-reason")


def tiles(page: Page) -> list[tuple[str, str]]:
    """(name, sp entityID) of every tile, in page order."""
    return [(a.text_content().strip(), a.get("data-sp")) for a in page.doc().xpath("//nav[@id='apps']/a")]


@pytest.fixture(scope="module")
def launchable(idp_server):
    return register_sp(
        idp_server,
        "launch",
        SpPolicy(idp_initiated=True, default_relay_state="/welcome", relay_state_allowed=["/inbox?x=1"]),
    )


def test_unsolicited_response_after_login_goes_to_the_default_acs(idp_server, launchable):
    browser = Browser()
    page = browser.get(init_url(idp_server.base_url, launchable.entity_id))
    assert page.is_login  # no SSO session yet: the login page, then back here
    page = browser.login(page, "alice", USERS["alice"].password)
    action, fields = browser.saml_post(page)
    raw = etree.fromstring(base64.b64decode(fields["SAMLResponse"]), etree.XMLParser(resolve_entities=False))
    assert raw.get("InResponseTo") is None
    assert all(d.get("InResponseTo") is None for d in raw.iter(f"{{{SAML}}}SubjectConfirmationData"))
    result = launchable.consume(action, fields, unsolicited=True)
    assert result.nameid == USERS["alice"].mail
    assert result.relay_state == "/welcome"  # the policy's default_relay_state
    rows = idp_server.audit_rows(event="signin", sp_entity_id=launchable.entity_id, result="success")
    assert rows[0]["username"] == "alice" and rows[0]["detail"] == "idp_initiated"

    # With the session open, a second start answers at once, and a RelayState the policy allows is used.
    page = browser.get(init_url(idp_server.base_url, launchable.entity_id, "/inbox?x=1"))
    assert launchable.consume(*browser.saml_post(page), unsolicited=True).relay_state == "/inbox?x=1"

    # Any other RelayState in the link is refused with a page and an audit row: the link's author does not
    # choose where the SP takes the person.
    page = browser.get(init_url(idp_server.base_url, launchable.entity_id, "https://evil.example/phish"))
    assert page.status == 400 and reason(page) == "relay_state_not_allowed"
    refused = idp_server.audit_rows(event="idp_initiated", sp_entity_id=launchable.entity_id, result="refused")
    assert refused[0]["reason"] == "relay_state_not_allowed" and refused[0]["username"] == "alice"


def test_sp_without_idp_initiated_is_refused(idp_server):
    closed = register_sp(idp_server, "closed", SpPolicy())
    browser = Browser()
    page = browser.get(init_url(idp_server.base_url, closed.entity_id))
    assert page.status == 403 and reason(page) == "idp_initiated_not_allowed" and not page.is_login
    rows = idp_server.audit_rows(event="idp_initiated", sp_entity_id=closed.entity_id)
    assert rows[0]["result"] == "refused" and rows[0]["reason"] == "idp_initiated_not_allowed"


def test_unknown_and_disabled_sps_are_refused(idp_server):
    browser = Browser()
    unknown = "https://nobody.sp.test/saml"
    page = browser.get(init_url(idp_server.base_url, unknown))
    assert page.status == 404 and reason(page) == "unknown_sp"
    assert idp_server.audit_rows(event="idp_initiated", sp_entity_id=unknown)[0]["reason"] == "unknown_sp"
    assert reason(browser.get(idp_server.base_url + "/saml/init")) == "unknown_sp"

    off = register_sp(idp_server, "off", SpPolicy(idp_initiated=True, enabled=False))
    page = browser.get(init_url(idp_server.base_url, off.entity_id))
    # Switched off is the access decision's refusal, the first step of every sign-in: no password is asked.
    assert page.status == 403 and reason(page) == "sp_disabled" and not page.is_login
    [row] = idp_server.audit_rows(event="signin", sp_entity_id=off.entity_id)
    assert row["result"] == "failure" and row["reason"] == "sp_disabled"


def test_idp_initiated_runs_the_group_check(idp_server):
    sales_only = register_sp(idp_server, "salesonly", SpPolicy(idp_initiated=True, allowed_groups=["Sales"]))
    browser = Browser()
    page = browser.login(browser.get(init_url(idp_server.base_url, sales_only.entity_id)), "bob", USERS["bob"].password)
    assert page.status == 403 and reason(page) == "not_in_allowed_group"
    rows = idp_server.audit_rows(event="signin", sp_entity_id=sales_only.entity_id, username="bob")
    assert rows[0]["result"] == "failure" and rows[0]["reason"] == "not_in_allowed_group"


def test_app_launcher_shows_the_tiles_each_person_may_open(idp_server, launchable):
    mail = register_sp(idp_server, "mailbox", SpPolicy(idp_initiated=True, preset="mailbox", display_name="Webmail"))
    crm = register_sp(
        idp_server, "crm", SpPolicy(idp_initiated=True, display_name="Atlas CRM", allowed_groups=["Sales"])
    )
    hidden = register_sp(idp_server, "hidden", SpPolicy(display_name="Hidden"))
    off = register_sp(idp_server, "offtile", SpPolicy(idp_initiated=True, enabled=False, display_name="Off"))

    alice = Browser()
    page = alice.get(idp_server.base_url + "/apps")
    assert page.is_login
    page = alice.login(page, "alice", USERS["alice"].password)
    assert page.status == 200 and page.url.endswith("/apps")
    shown = [entity for _, entity in tiles(page)]
    assert mail.entity_id in shown and crm.entity_id in shown and launchable.entity_id in shown
    assert hidden.entity_id not in shown and off.entity_id not in shown
    # The mailbox first, although "Atlas CRM" sorts before "Webmail"; then by name.
    assert shown.index(mail.entity_id) < shown.index(crm.entity_id)
    assert ("Webmail", mail.entity_id) in tiles(page) and ("Atlas CRM", crm.entity_id) in tiles(page)
    # The tile starts IdP-initiated sign-in; the session is already open.
    href = page.doc().xpath(f"//nav[@id='apps']/a[@data-sp='{crm.entity_id}']/@href")[0]
    result = crm.consume(*alice.saml_post(alice.get(idp_server.base_url + href)), unsolicited=True)
    assert result.nameid == USERS["alice"].mail

    bob = Browser(accept_language="zh-CN")
    page = bob.login(bob.get(idp_server.base_url + "/apps"), "bob", USERS["bob"].password)
    shown = [entity for _, entity in tiles(page)]
    assert mail.entity_id in shown and crm.entity_id not in shown  # bob is not in Sales
    assert "我的应用" in page.html
