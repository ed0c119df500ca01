"""OpenID Connect clients managed in the console (/admin/sps), as `idp oidc client` does: registered (from a
preset or not), changed after registration, given a new secret, removed; the secret shown once and working at
the token endpoints, bad input refused with the form kept, every change audited under the admin's name, and
each client's activity one link away. The IdP under gunicorn against the run's Samba AD DC."""

from __future__ import annotations

import json
import re
from urllib.parse import urljoin

import httpx
import pytest

from tests.e2e.browser import Browser, Page, admin_browser

pytestmark = pytest.mark.ad

REDIRECT = "https://console-app.example.com/callback"
LOGOUT = "https://console-app.example.com/logout"
ENTITY = "urn:ad-sso-bridge:oidc:"


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


def _cli_add(idp_server, client_id: str, *options: str) -> str | None:
    """Register a client from the shell: its secret (None for a public client)."""
    added = idp_server.idp("oidc", "client", "add", client_id, "--redirect-uri", REDIRECT, *options).stdout
    secret = re.search(r"client secret: (\S+)", added)
    return secret[1] if secret else None


def _listed(idp_server, client_id: str) -> list[str]:
    """The client's entry in `idp oidc client list` (what is stored), a line each."""
    lines = idp_server.idp("oidc", "client", "list").stdout.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(f"{client_id}  "))
    end = next((n for n in range(start + 1, len(lines)) if not lines[n].startswith(" ")), len(lines))
    return lines[start:end]


def _row_link(page: Page, client_id: str, cls: str) -> str | None:
    found = page.doc().xpath(f'//tr[@id="oidc-{client_id}"]//a[contains(concat(" ", @class, " "), " {cls} ")]/@href')
    return urljoin(page.url, str(found[0])) if found else None


def _checked_scopes(page: Page, form_id: str) -> list[str]:
    _, pairs = page.form_values(form_id)
    return [value for name, value in pairs if name == "scopes"]


def _token_error(idp_server, client_id: str, secret: str) -> tuple[int, str]:
    """A code exchange with a code that was never issued: the error says whether the client authenticated
    (invalid_grant: the code is wrong) or not (invalid_client)."""
    r = httpx.post(
        idp_server.base_url + "/oidc/token",
        data={"grant_type": "authorization_code", "code": "never-issued", "redirect_uri": REDIRECT},
        auth=(client_id, secret),
        timeout=10,
    )
    return r.status_code, r.json()["error"]


def test_a_client_edited_in_the_console_changes_and_is_audited_before_and_after(idp_server, admin):
    secret = _cli_add(idp_server, "console-edit", "--name", "Edit App", "--group", "Sales")
    assert secret
    edit = admin.get(_row_link(_sps(idp_server, admin), "console-edit", "oidc-edit") or "")
    assert edit.status == 200 and edit.text_of("oidc-client-id") == "console-edit"
    assert edit.text_of("oidc-entity-id") == ENTITY + "console-edit"
    _, shown = edit.form_values("oidc-edit")
    assert ("name", "Edit App") in shown and ("redirect_uris", REDIRECT) in shown and ("groups", "Sales") in shown
    assert _checked_scopes(edit, "oidc-edit") == ["openid", "profile", "email", "groups"]

    other = "https://console-app.example.com/other"
    saved = admin.submit(
        edit,
        "oidc-edit",
        {
            "name": "Edited App",
            "redirect_uris": f"{REDIRECT}\n{other}\n",
            "scopes": ["openid", "email"],
            "groups": "Sales\nEngineering\n",
            "frontchannel_logout_uri": LOGOUT,
        },
    )
    assert saved.status == 200 and saved.url.startswith(idp_server.base_url + "/admin/sps")
    assert "Saved the changes to Edited App (console-edit)" in saved.html
    row = saved.text_of("oidc-console-edit") or ""
    assert "Edited App" in row and other in row and "openid email" in row and "Engineering" in row and LOGOUT in row
    assert _listed(idp_server, "console-edit") == [
        "console-edit  Edited App  (confidential)",
        f"  redirect: {REDIRECT}",
        f"  redirect: {other}",
        "  scopes:   openid email",
        "  groups:   Sales, Engineering",
        f"  front-channel logout: {LOGOUT}",
    ]
    assert _token_error(idp_server, "console-edit", secret) == (400, "invalid_grant")  # the secret stays

    [audit] = idp_server.audit_rows(event="oidc_client_changed", sp_entity_id=ENTITY + "console-edit")
    assert audit["username"] == "anna" and audit["result"] == "success"
    detail = json.loads(audit["detail"])
    assert detail["before"]["name"] == "Edit App" and detail["after"]["name"] == "Edited App"
    assert detail["before"]["scopes"] == ["openid", "profile", "email", "groups"]
    assert detail["after"]["scopes"] == ["openid", "email"]
    assert detail["before"]["frontchannel_logout_uri"] is None and detail["after"]["frontchannel_logout_uri"] == LOGOUT

    # Emptied, the groups let everyone in and the logout URI is gone.
    again = admin.get(_row_link(saved, "console-edit", "oidc-edit") or "")
    cleared = admin.submit(again, "oidc-edit", {"groups": "", "frontchannel_logout_uri": ""})
    assert cleared.status == 200 and "Everyone" in (cleared.text_of("oidc-console-edit") or "")
    stored = _listed(idp_server, "console-edit")
    assert stored[0] == "console-edit  Edited App  (confidential)" and "  scopes:   openid email" in stored
    assert "  groups:   everyone" in stored and "  front-channel logout: none" in stored


@pytest.mark.parametrize(
    ("case", "changes", "words", "shown"),
    [
        ("http", {"redirect_uris": "http://app.example.com/cb"}, "'http://app.example.com/cb'", None),
        ("fragment", {"frontchannel_logout_uri": LOGOUT + "#end"}, f"'{LOGOUT}#end'", None),
        # A form posted without openid (the page always posts it): email stays ticked, openid is shown fixed.
        ("no-openid", {"scopes": ["email"]}, "openid", ["openid", "email"]),
        ("no-name", {"name": ""}, "name", None),
    ],
)
def test_a_refused_edit_keeps_what_was_typed_and_changes_nothing(idp_server, admin, case, changes, words, shown):
    client_id = f"console-refused-{case}"
    _cli_add(idp_server, client_id, "--name", "Refused App")
    stored = _listed(idp_server, client_id)
    edit = admin.get(f"{idp_server.base_url}/admin/oidc/clients/edit?client_id={client_id}")
    refused = admin.submit(edit, "oidc-edit", {"groups": "Typed Group", **changes})

    assert refused.status == 400
    error = refused.text_of("oidc-edit-error") or ""
    assert error.startswith("Nothing was saved: ") and words in error
    _, pairs = refused.form_values("oidc-edit")
    assert ("groups", "Typed Group") in pairs  # nothing typed is lost, the refused value included
    [(field, typed)] = changes.items()
    assert [v for n, v in pairs if n == field] == (shown or [typed])
    assert _listed(idp_server, client_id) == stored
    [audit] = idp_server.audit_rows(event="oidc_client_changed", sp_entity_id=ENTITY + client_id)
    assert audit["result"] == "refused" and audit["username"] == "anna"
    assert words in json.loads(audit["detail"])["note"]


def test_a_new_secret_replaces_the_old_one_at_the_token_endpoint(idp_server, admin):
    old = _cli_add(idp_server, "console-rotate", "--name", "Rotate App")
    assert old and _token_error(idp_server, "console-rotate", old) == (400, "invalid_grant")
    confirm = admin.get(_row_link(_sps(idp_server, admin), "console-rotate", "oidc-rotate") or "")
    assert confirm.status == 200 and "Rotate App" in (confirm.text_of("rotate-text") or "")
    assert _token_error(idp_server, "console-rotate", old) == (400, "invalid_grant")  # nothing changes before the POST

    action, pairs = confirm.form_values("oidc-rotate")
    answer = admin.http.post(action, data=dict(pairs), timeout=30)
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    page = Page(str(answer.url), answer.status_code, answer.text)
    new = page.text_of("oidc-secret")
    assert new and new != old and page.text_of("oidc-secret-once")

    assert _token_error(idp_server, "console-rotate", old) == (401, "invalid_client")
    assert _token_error(idp_server, "console-rotate", new) == (400, "invalid_grant")
    assert new not in _sps(idp_server, admin).html
    [audit] = idp_server.audit_rows(event="oidc_client_secret_rotated", sp_entity_id=ENTITY + "console-rotate")
    assert audit["username"] == "anna" and audit["result"] == "success"
    assert new not in audit["detail"] and old not in audit["detail"]

    # Without a CSRF token, nothing happens.
    forged = admin.http.post(action, data={"client_id": "console-rotate"}, timeout=30)
    assert forged.status_code == 400 and "oidc-secret" not in forged.text
    assert _token_error(idp_server, "console-rotate", new) == (400, "invalid_grant")


def test_a_public_client_is_offered_no_new_secret(idp_server, admin):
    assert _cli_add(idp_server, "console-public", "--name", "Public App", "--public") is None
    listed = _sps(idp_server, admin)
    assert _row_link(listed, "console-public", "oidc-edit") and not _row_link(listed, "console-public", "oidc-rotate")
    asked = admin.get(f"{idp_server.base_url}/admin/oidc/clients/secret?client_id=console-public")
    assert asked.url.startswith(idp_server.base_url + "/admin/sps") and "is a public client" in asked.html
    assert not idp_server.audit_rows(event="oidc_client_secret_rotated", sp_entity_id=ENTITY + "console-public")


def test_the_alibaba_mail_preset_fills_the_form_and_the_answer_says_what_to_do_there(idp_server, admin):
    listed = _sps(idp_server, admin)
    action, pairs = listed.form_values("oidc-preset-choice")
    assert ("preset", "alimail") in pairs
    filled = admin.get(action + "?preset=alimail")
    assert filled.status == 200
    _, shown = filled.form_values("oidc-add")
    assert ("name", "Alibaba Mail") in shown and ("preset", "alimail") in shown
    assert _checked_scopes(filled, "oidc-add") == ["openid", "profile", "email"]
    assert "help.aliyun.com/en/document_detail/2937171.html" in (filled.text_of("oidc-preset-source") or "")

    added = admin.submit(filled, "oidc-add", {"client_id": "console-alimail", "redirect_uris": REDIRECT})
    assert added.status == 200 and added.text_of("oidc-secret")
    notes = added.text_of("oidc-preset-notes") or ""
    assert "AI Premium Edition" in notes and ENTITY + "console-alimail" in notes and "jit_sps" in notes
    assert "help.aliyun.com/en/document_detail/2937171.html" in notes
    stored = _listed(idp_server, "console-alimail")
    assert stored[0] == "console-alimail  Alibaba Mail  (confidential)" and "  scopes:   openid profile email" in stored

    plain = admin.submit(_sps(idp_server, admin), "oidc-add", {
        "client_id": "console-plain", "name": "Plain", "redirect_uris": REDIRECT,
    })  # fmt: skip
    assert plain.status == 200 and plain.text_of("oidc-preset-notes") is None


def test_each_client_links_to_its_own_activity(idp_server, admin):
    added = admin.submit(
        _sps(idp_server, admin),
        "oidc-add",
        {"client_id": "console-act", "name": "Activity App", "redirect_uris": REDIRECT},
    )
    assert added.status == 200
    _cli_add(idp_server, "console-other", "--name", "Other App")
    edit = admin.get(f"{idp_server.base_url}/admin/oidc/clients/edit?client_id=console-act")
    assert admin.submit(edit, "oidc-edit", {"groups": "Sales"}).status == 200

    link = _row_link(_sps(idp_server, admin), "console-act", "oidc-activity")
    assert link
    activity = admin.get(link)
    assert activity.status == 200
    doc = activity.doc()
    [chosen] = doc.xpath('//select[@id="f-sp"]/option[@selected]')
    assert chosen.get("value") == ENTITY + "console-act" and chosen.text_content().strip() == "Activity App"
    rows = doc.xpath('//table[@id="audit-rows"]/tbody/tr')
    events = [tr.xpath("./td[2]/@data-code")[0] for tr in rows]
    assert events == ["oidc_client_changed", "oidc_client_added"]
    assert {tr.xpath("string(./td[6])").strip() for tr in rows} == {"Activity App"}


def test_the_edit_and_secret_pages_speak_chinese(idp_server, admin):
    _cli_add(idp_server, "console-zh", "--name", "ZH App")
    admin.http.headers["Accept-Language"] = "zh-CN"
    try:
        edit = admin.get(f"{idp_server.base_url}/admin/oidc/clients/edit?client_id=console-zh")
        confirm = admin.get(f"{idp_server.base_url}/admin/oidc/clients/secret?client_id=console-zh")
        refused = admin.submit(edit, "oidc-edit", {"redirect_uris": "http://x.example.com/cb"})
    finally:
        admin.http.headers["Accept-Language"] = "en"
    assert "编辑 ZH App" in edit.html and "作用域" in edit.html and "前端通道登出 URI" in edit.html
    assert "生成新密钥" in confirm.html
    assert (refused.text_of("oidc-edit-error") or "").startswith("未保存任何内容")
