"""Who may open /admin: the ordinary AD login, then membership (nested counts) of [admin] groups."""

from __future__ import annotations

import pytest

from idp.directory.groups import MIN_RELOAD_INTERVAL
from tests.e2e.ad_admin import AdAdmin
from tests.e2e.browser import Browser, Page
from tests.e2e.harness import eventually

ANNA = ("anna", "Passw0rd!Anna")
ALICE = ("alice", "Passw0rd!Alice")


def test_signed_out_admin_is_sent_to_the_login_and_back(idp_server):
    browser = Browser()
    page = browser.get(idp_server.base_url + "/admin/?x=1")
    assert page.is_login
    page = browser.login(page, *ANNA)
    assert page.status == 200
    assert page.url == idp_server.base_url + "/admin/?x=1"
    assert page.text_of("admin-user") == "Anna Admin"
    assert page.doc().get_element_by_id("key-summary") is not None


def test_an_employee_outside_the_admin_group_is_refused_with_a_reason(idp_server):
    browser = Browser()
    page = browser.login(browser.get(idp_server.base_url + "/admin/"), *ALICE)
    assert page.status == 403
    assert "alice" in page.text_of("error")
    assert "SSO Admins" in page.text_of("error")
    rows = idp_server.audit_rows(event="admin_access", username="alice")
    assert rows and rows[0]["result"] == "refused" and rows[0]["reason"] == "admin_not_member"


def test_refusal_reads_in_chinese(idp_server):
    browser = Browser(accept_language="zh-CN")
    page = browser.login(browser.get(idp_server.base_url + "/admin/"), *ALICE)
    assert page.status == 403
    assert "管理员" in page.text_of("error")


def test_membership_through_a_nested_group_counts(idp_server, samba_dc):
    ad = AdAdmin(samba_dc)
    try:
        user = ad.add_user("nina.nested", "Passw0rd!Nina1")
        ad.add_group("Helpdesk Leads", members=[user], member_of=["SSO Admins"])
        # A group a worker has not seen yet reloads its nesting, at most once per MIN_RELOAD_INTERVAL.
        page = eventually(
            lambda: _admin_page_or_none("nina.nested", "Passw0rd!Nina1", idp_server.base_url),
            within=MIN_RELOAD_INTERVAL + 10,
            what="the nested group let nina into the console",
        )
        assert page.text_of("admin-user")
    finally:
        ad.undo()


def _admin_page_or_none(username: str, password: str, base_url: str) -> Page | None:
    browser = Browser()
    page = browser.login(browser.get(base_url + "/admin/"), username, password)
    return page if page.status == 200 else None


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example/"])
def test_next_never_leaves_the_site(idp_server, target):
    browser = Browser()
    page = browser.get(idp_server.base_url + "/login?next=" + target)
    page = browser.login(page, *ALICE)
    assert page.url == idp_server.base_url + "/"


def test_admin_pages_are_not_cached_and_refuse_forms_without_csrf(idp_server):
    browser = Browser()
    browser.login(browser.get(idp_server.base_url + "/admin/"), *ANNA)
    r = browser.http.get(idp_server.base_url + "/admin/", timeout=30)
    assert r.headers["Cache-Control"] == "no-store"
    r = browser.http.post(idp_server.base_url + "/logout", data={}, timeout=30)
    assert r.status_code == 400


def test_language_switch_is_remembered(idp_server):
    browser = Browser()
    browser.login(browser.get(idp_server.base_url + "/admin/"), *ANNA)
    page = browser.get(idp_server.base_url + "/lang?to=zh-CN&next=/admin/")
    assert page.url == idp_server.base_url + "/admin/"
    assert "概览" in page.html
