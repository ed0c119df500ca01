"""/admin/sps against the real IdP (gunicorn, Samba AD): an admin adds SPs by file, URL and by hand through
a preview, bad metadata is refused on the page with the element and reason and an audit row, and what the
admin switches on, off or deletes is what python3-saml as the SP then experiences."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from idp.demo.samba_dc import DEMO_USERS
from idp.sps.registry import POLICY_CACHE_SECONDS
from tests.e2e.browser import Browser, Page, admin_browser
from tests.e2e.saml_sp import IndependentSp
from tests.unit.sp_fixtures import Route, http_server, make_cert, sp_metadata

pytestmark = pytest.mark.ad

ALICE = next(u for u in DEMO_USERS if u.username == "alice")


def new_sp(idp_server, name: str) -> IndependentSp:
    """An SP of this test alone: the shared IdP's other SPs stay as they are."""
    tag = uuid.uuid4().hex[:8]
    return IndependentSp(
        entity_id=f"https://{name}-{tag}.admin-sps.test/saml",
        acs_url=f"http://127.0.0.1:9500/{name}-{tag}/acs",
        sign_requests=False,
        idp_metadata_xml=idp_server.metadata(),
    )


def sign_in(browser: Browser, sp: IndependentSp) -> Page:
    page = browser.get(sp.redirect_login_url())
    if page.is_login:
        page = browser.login(page, "alice", ALICE.password)
    return page


def list_page(browser: Browser, idp_server) -> Page:
    page = browser.get(idp_server.base_url + "/admin/sps")
    assert page.status == 200, page.html[:500]
    return page


def row_form(page: Page, entity_id: str, action: str) -> str:
    [form] = page.doc().xpath(f'//tr[@data-entity-id="{entity_id}"]//form[contains(@action, "/sps/{action}")]')
    return form.get("id")


def sign_in_until(browser: Browser, sp: IndependentSp, *, answered: bool) -> Page:
    """Sign in until the IdP answers (or refuses): each worker reads an SP's policy again after
    POLICY_CACHE_SECONDS, so an enable or disable reaches all of them within that time, not at once."""
    deadline = time.monotonic() + POLICY_CACHE_SECONDS + 5
    while True:
        page = sign_in(browser, sp)
        if page.is_auto_post == answered:
            return page
        assert time.monotonic() < deadline, f"sign-in {'still refused' if answered else 'still answered'}"
        time.sleep(0.3)


def upload(browser: Browser, idp_server, xml: bytes, name: str = "sp.xml") -> Page:
    return browser.submit(list_page(browser, idp_server), "sp-upload", files={"metadata": (name, xml)})


def last_admin_row(idp_server, event: str) -> dict:
    return idp_server.audit_rows(event=event, username="anna")[0]


def test_upload_preview_save_then_employees_sign_in(idp_server) -> None:
    admin = admin_browser(idp_server.base_url)
    sp = new_sp(idp_server, "upload")
    preview = upload(admin, idp_server, sp.metadata_xml())
    assert preview.status == 200, preview.html[:800]
    assert preview.text_of("preview-entity-id") == sp.entity_id
    assert sp.acs_url in (preview.text_of("preview-acs") or "")
    assert "signing" in (preview.text_of("preview-certs") or "")
    assert sign_in(Browser(), sp).status == 400  # nothing is saved by a preview

    listed = admin.submit(preview, "sp-save")
    assert listed.status == 200 and listed.url.endswith("/admin/sps")
    assert sp.entity_id in listed.html
    row = last_admin_row(idp_server, "sp_added")
    assert (row["result"], row["sp_entity_id"]) == ("success", sp.entity_id)
    assert json.loads(row["detail"])["after"]["acs_urls"] == [sp.acs_url]

    result = sp.consume(*Browser().saml_post(sign_in(Browser(), sp)))
    assert result.nameid == ALICE.mail
    signed_in = (
        list_page(admin, idp_server)
        .doc()
        .xpath(f'//tr[@data-entity-id="{sp.entity_id}"]//td[@class="sp-last-signin"]')[0]
    )
    assert signed_in.text_content().strip().startswith(f"{datetime.now(UTC):%Y-%m-%d}")


EXPIRED = make_cert("expired.example.test", not_after=datetime.now(UTC) - timedelta(days=3))
NO_SP = (
    b'<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.test">'
    b'<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/></md:EntityDescriptor>'
)


def _hostile(entity: str) -> bytes:
    return sp_metadata(entity).replace(
        b"<md:EntityDescriptor", b'<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/hostname">]><md:EntityDescriptor', 1
    )


# name -> (metadata for a fresh entityID, fragment of the reason, fragment of the element or None)
REFUSALS = {
    "hostile_xml": (_hostile, "hostile XML", None),
    "no_spssodescriptor": (lambda e: NO_SP, "no SPSSODescriptor", "EntityDescriptor"),
    "http_acs": (lambda e: sp_metadata(e, acs="http://mail.example.test/acs"), "must use https", "AssertionConsumer"),
    "expired_cert": (lambda e: sp_metadata(e, cert=EXPIRED), "expired on", "X509Certificate"),
    "unparsable_cert": (lambda e: sp_metadata(e, cert="bm90IGEgY2VydA=="), "not a valid base64 DER", "X509Certificate"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_metadata_is_refused_on_the_page_with_element_reason_and_audit_row(idp_server, case: str) -> None:
    admin = admin_browser(idp_server.base_url)
    build, reason, element = REFUSALS[case]
    entity = f"https://{case.replace('_', '-')}-{uuid.uuid4().hex[:8]}.admin-sps.test/saml"
    page = upload(admin, idp_server, build(entity), name=f"{case}.xml")
    assert page.status == 400
    assert reason in (page.text_of("problem-reason") or "")
    if element:
        assert element in (page.text_of("problem-element") or "")
    assert page.text_of("problem-code") == "invalid_metadata"
    row = last_admin_row(idp_server, "sp_added")
    assert (row["result"], row["reason"], row["client_ip"]) == ("refused", "invalid_metadata", "127.0.0.1")
    assert reason in json.loads(row["detail"])["note"]
    assert entity not in list_page(admin, idp_server).html


def test_a_duplicate_entity_id_needs_replace(idp_server) -> None:
    admin = admin_browser(idp_server.base_url)
    sp = new_sp(idp_server, "dup")
    admin.submit(upload(admin, idp_server, sp.metadata_xml()), "sp-save")
    again = upload(admin, idp_server, sp.metadata_xml())
    assert again.status == 200 and again.text_of("preview-replaces")
    refused = admin.submit(again, "sp-save")  # "replace" left unticked
    assert refused.status == 400 and "already registered" in (refused.text_of("problem-reason") or "")
    row = last_admin_row(idp_server, "sp_added")
    assert (row["result"], row["reason"], row["sp_entity_id"]) == ("refused", "duplicate_entity_id", sp.entity_id)


def test_a_preview_token_cannot_be_replayed_or_forged(idp_server) -> None:
    admin = admin_browser(idp_server.base_url)
    sp = new_sp(idp_server, "token")
    preview = upload(admin, idp_server, sp.metadata_xml())
    forged = admin.submit(preview, "sp-save", {"token": "not-the-token"})
    assert "no longer available" in forged.html and sp.entity_id not in forged.html
    assert admin.submit(preview, "sp-save").status == 200
    replayed = admin.submit(preview, "sp-save")
    assert "no longer available" in replayed.html


def test_metadata_urls_that_serve_junk_or_time_out_are_refused(idp_server) -> None:
    admin = admin_browser(idp_server.base_url)
    routes = {
        "/html": Route(b"<html><body>Please log in</body></html>", content_type="text/html"),
        "/slow": Route(sp_metadata("https://slow.admin-sps.test/saml"), delay=15),
    }
    with http_server(routes) as base:
        plain = admin.submit(list_page(admin, idp_server), "sp-url", {"url": f"{base}/html"})
        assert plain.status == 400 and plain.text_of("problem-code") == "fetch_refused_url"
        assert "must use https" in (plain.text_of("problem-reason") or "")

        junk = admin.submit(list_page(admin, idp_server), "sp-url", {"url": f"{base}/html", "allow_http": "on"})
        assert junk.status == 400 and "HTML page" in (junk.text_of("problem-reason") or "")
        assert junk.text_of("problem-code") == "fetch_not_xml"
        assert last_admin_row(idp_server, "sp_added")["reason"] == "fetch_not_xml"

        slow = admin.submit(list_page(admin, idp_server), "sp-url", {"url": f"{base}/slow", "allow_http": "on"})
        assert slow.status == 400 and "time limit" in (slow.text_of("problem-reason") or "")
        assert slow.text_of("problem-code") == "fetch_timeout"
        assert last_admin_row(idp_server, "sp_added")["reason"] == "fetch_timeout"


def test_manual_registration_works_for_an_independent_sp(idp_server) -> None:
    admin = admin_browser(idp_server.base_url)
    sp = new_sp(idp_server, "manual")
    fields = {
        "entity_id": sp.entity_id,
        "acs_url": sp.acs_url,
        "certificate": sp.cert_pem,
        "name": "企业邮箱",
        "nameid_format": "emailAddress",
    }
    preview = admin.submit(list_page(admin, idp_server), "sp-manual", fields)
    assert preview.status == 200, preview.html[:800]
    assert preview.text_of("preview-name") == "企业邮箱"
    assert "encryption" in (preview.text_of("preview-certs") or "")
    admin.submit(preview, "sp-save")
    assert json.loads(last_admin_row(idp_server, "sp_added")["detail"])["note"] == "manual"

    result = sp.consume(*Browser().saml_post(sign_in(Browser(), sp)))
    assert result.nameid == ALICE.mail and result.friendly["mail"] == [ALICE.mail]

    bad = admin.submit(list_page(admin, idp_server), "sp-manual", {**fields, "certificate": "hello"})
    assert bad.status == 400 and "certificate" in (bad.text_of("problem-element") or "")


def test_disable_enable_and_delete_change_what_employees_get(idp_server) -> None:
    admin = admin_browser(idp_server.base_url)
    sp = new_sp(idp_server, "toggle")
    admin.submit(upload(admin, idp_server, sp.metadata_xml()), "sp-save")
    employee = Browser()
    assert sign_in(employee, sp).is_auto_post

    page = list_page(admin, idp_server)
    page = admin.submit(page, row_form(page, sp.entity_id, "enabled"))
    assert "disabled" in page.html
    refused = sign_in_until(employee, sp, answered=False)
    assert refused.status in (400, 403) and "switched off" in refused.html
    row = last_admin_row(idp_server, "sp_disabled")
    assert json.loads(row["detail"])["after"] == {"enabled": False}

    page = admin.submit(page, row_form(page, sp.entity_id, "enabled"))
    sign_in_until(employee, sp, answered=True)
    assert last_admin_row(idp_server, "sp_enabled")["sp_entity_id"] == sp.entity_id

    [link] = page.doc().xpath(f'//tr[@data-entity-id="{sp.entity_id}"]//a[contains(@class, "sp-delete")]')
    confirm = admin.get(idp_server.base_url + link.get("href"))
    assert confirm.status == 200 and sp.entity_id in (confirm.text_of("delete-text") or "")
    assert sign_in(employee, sp).is_auto_post  # asking is not deleting
    gone = admin.submit(confirm, "sp-delete")
    assert gone.status == 200 and not gone.doc().xpath(f'//tr[@data-entity-id="{sp.entity_id}"]')
    unknown = sign_in(employee, sp)
    assert unknown.status == 400 and "not registered" in unknown.html
    assert last_admin_row(idp_server, "sp_removed")["sp_entity_id"] == sp.entity_id


def test_an_oversized_upload_is_refused_as_an_admin_upload(idp_server):
    admin = admin_browser(idp_server.base_url)
    page = admin.get(idp_server.base_url + "/admin/sps")
    big = b"<x>" + b" " * (1024 * 1024) + b"</x>"
    page = admin.submit(page, "sp-upload", files={"metadata": ("huge.xml", big)})
    assert page.status == 400
    assert "KB" in page.text_of("error") and "metadata" in page.text_of("error")
    rows = idp_server.audit_rows(event="admin_upload")
    assert rows and rows[0]["reason"] == "too_large" and rows[0]["username"] == "anna"
