"""OpenID Connect clients registered and removed in the console (/admin/sps), as `idp oidc client` does: the
secret shown once and working at the token endpoints, bad input refused with the form kept, every change
audited under the admin's name. The IdP under gunicorn against the run's Samba AD DC."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.browser import Browser, Page, admin_browser

pytestmark = pytest.mark.ad

REDIRECT = "https://console-app.example.com/callback"


@pytest.fixture(scope="module")
def admin(idp_server) -> Browser:
    return admin_browser(idp_server.base_url)


def _sps(idp_server, admin: Browser) -> Page:
    page = admin.get(idp_server.base_url + "/admin/sps")
    assert page.status == 200
    return page


def _introspect(idp_server, client_id: str, secret: str) -> httpx.Response:
    return httpx.post(
        idp_server.base_url + "/oidc/introspect", data={"token": "not-a-token"}, auth=(client_id, secret), timeout=10
    )


def test_a_confidential_client_added_in_the_console_gets_its_secret_once(idp_server, admin):
    added = admin.submit(
        _sps(idp_server, admin),
        "oidc-add",
        {"client_id": "console-app", "name": "Console App", "redirect_uris": f"{REDIRECT}\n", "groups": "Sales\n"},
    )
    assert added.status == 200 and added.text_of("oidc-added-client-id") == "console-app"
    secret = added.text_of("oidc-secret")
    assert secret and added.text_of("oidc-secret-once")
    assert _introspect(idp_server, "console-app", secret).json() == {"active": False}  # the secret authenticates
    assert _introspect(idp_server, "console-app", secret + "x").status_code == 401

    listed = _sps(idp_server, admin)
    row = listed.text_of("oidc-console-app")
    assert row is not None and "Console App" in row and REDIRECT in row and "Sales" in row
    assert secret not in listed.html and secret not in idp_server.idp("oidc", "client", "list").stdout
    [audit] = idp_server.audit_rows(event="oidc_client_added", sp_entity_id="urn:ad-sso-bridge:oidc:console-app")
    assert audit["username"] == "anna" and audit["result"] == "success" and secret not in audit["detail"]
    assert json.loads(audit["detail"])["after"]["allowed_groups"] == ["Sales"]


def test_a_public_client_has_no_secret_and_bad_input_keeps_the_form(idp_server, admin):
    refused = admin.submit(
        _sps(idp_server, admin),
        "oidc-add",
        {
            "client_id": "console-spa",
            "name": "Console SPA",
            "redirect_uris": "http://spa.example.com/cb",
            "kind": "public",
        },
    )
    assert refused.status == 400 and "https://" in (refused.text_of("oidc-add-error") or "")
    _, kept = refused.form_values("oidc-add")
    assert ("client_id", "console-spa") in kept and ("kind", "public") in kept  # nothing typed is lost
    assert idp_server.audit_rows(event="oidc_client_added", result="refused", username="anna")

    added = admin.submit(refused, "oidc-add", {"redirect_uris": "https://spa.example.com/cb"})
    assert added.status == 200 and added.text_of("oidc-secret") is None and added.text_of("oidc-public")
    assert "public" in idp_server.idp("oidc", "client", "list").stdout.split("console-spa", 1)[1].splitlines()[0]


def test_a_client_removed_in_the_console_is_gone_and_audited(idp_server, admin):
    idp_server.idp("oidc", "client", "add", "console-gone", "--name", "Gone App", "--redirect-uri", REDIRECT)
    confirm = admin.get(idp_server.base_url + "/admin/oidc/clients/delete?client_id=console-gone")
    assert "Gone App" in (confirm.text_of("delete-text") or "")
    done = admin.submit(confirm, "oidc-delete")
    assert done.url.startswith(idp_server.base_url + "/admin/sps") and done.text_of("oidc-console-gone") is None
    assert "console-gone" not in idp_server.idp("oidc", "client", "list").stdout
    [audit] = idp_server.audit_rows(event="oidc_client_removed", sp_entity_id="urn:ad-sso-bridge:oidc:console-gone")
    assert audit["username"] == "anna"


def test_the_console_form_speaks_chinese(idp_server, admin):
    admin.http.headers["Accept-Language"] = "zh-CN"
    try:
        page = _sps(idp_server, admin)
    finally:
        admin.http.headers["Accept-Language"] = "en"
    action, _ = page.form_values("oidc-add")
    assert action.endswith("/admin/oidc/clients") and "注册客户端" in page.html
