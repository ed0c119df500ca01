"""OpenID Connect clients managed in the console (/admin/sps), as `idp oidc client` does: registered (from a
preset or not), changed after registration, given a new secret, removed; the secret shown once and working at
the token endpoints, bad input refused with the form kept and the field at fault marked, every change (and
every refused one) audited under the admin's name, allowed groups looked up in AD and stored as an SP policy
stores them, and each client's activity one link away. The IdP under gunicorn against the run's Samba AD DC."""

from __future__ import annotations

import json
import re
from urllib.parse import quote, urljoin

import httpx
import pytest

from idp.demo.samba_dc import DEMO_USERS
from idp.oidc.clients import ClientStore, OidcClient
from idp.settings import load_settings
from idp.store.db import Database
from idp.web.i18n import MESSAGES
from tests.e2e import test_oidc
from tests.e2e.ad_admin import BASE_DN, AdAdmin
from tests.e2e.browser import Browser, Page, admin_browser

pytestmark = pytest.mark.ad

REDIRECT = "https://console-app.example.com/callback"
LOGOUT = "https://console-app.example.com/logout"
ENTITY = "urn:ad-sso-bridge:oidc:"
USERS = {u.username: u for u in DEMO_USERS}


def identity(cn: str, container: str = f"CN=Users,{BASE_DN}") -> str:
    """The stored form of a group (an SP policy's): its DN and SID."""
    return rf"CN={re.escape(cn)},{re.escape(container)} <S-1-5-21-\d+-\d+-\d+-\d+>"


def label(cn: str) -> str:
    """How the shell and the console show a stored group: its DN."""
    return f"CN={cn},CN=Users,{BASE_DN}"


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
    assert row is not None and "Console App" in row and REDIRECT in row and label("Sales") in row
    assert secret not in listed.html and secret not in idp_server.idp("oidc", "client", "list").stdout
    [audit] = idp_server.audit_rows(event="oidc_client_added", sp_entity_id="urn:ad-sso-bridge:oidc:console-app")
    assert audit["username"] == "anna" and audit["result"] == "success" and secret not in audit["detail"]
    [group] = json.loads(audit["detail"])["after"]["allowed_groups"]
    assert re.fullmatch(identity("Sales"), group)  # looked up in AD: the group's identity, not the name typed


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
    assert ("name", "Edit App") in shown and ("redirect_uris", REDIRECT) in shown
    assert re.fullmatch(identity("Sales"), dict(shown)["groups"])  # as stored
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
        f"  groups:   {label('Sales')}; {label('Engineering')}",
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
    # The reason in Chinese too (not the shell's English after a Chinese lead-in), and the field it is about
    # marked and described by it.
    reason = MESSAGES["zh-CN"]["oidc.error.redirect_uri_scheme"].format(uri="http://x.example.com/cb")
    assert refused.status == 400
    assert refused.text_of("oidc-edit-error") == MESSAGES["zh-CN"]["admin.oidc.not_saved"].format(reason=reason)
    assert "must be" not in (refused.text_of("oidc-edit-error") or "")
    assert _marked(refused, "oidc-edit") == {"oidc-edit-redirect-uris": "oidc-edit-error oidc-edit-redirect-uris-help"}


def _marked(page: Page, form_id: str) -> dict[str, str]:
    """The form's fields marked invalid, with what describes each."""
    form = page.doc().get_element_by_id(form_id)
    return {el.get("id"): el.get("aria-describedby") for el in form.xpath('.//*[@aria-invalid="true"]')}


def _audit_note(audit: dict) -> str:
    return json.loads(audit["detail"])["note"]


def test_every_refused_action_in_the_console_leaves_an_audit_row(idp_server, admin):
    _cli_add(idp_server, "console-nosecret", "--name", "No Secret", "--public")
    _cli_add(idp_server, "console-gone-edit", "--name", "Gone Edit")
    assert _cli_add(idp_server, "console-refusals", "--name", "Refusals")

    # A new secret for a public client, asked for by hand (its pages offer none).
    confirm = admin.get(f"{idp_server.base_url}/admin/oidc/clients/secret?client_id=console-refusals")
    public = admin.submit(confirm, "oidc-rotate", {"client_id": "console-nosecret"})
    assert public.url.startswith(idp_server.base_url + "/admin/sps") and "oidc-secret" not in public.html
    assert "Nothing was changed: client 'console-nosecret' is public" in public.doc().text_content()
    [rotated] = idp_server.audit_rows(event="oidc_client_secret_rotated", sp_entity_id=ENTITY + "console-nosecret")
    assert rotated["result"] == "refused" and rotated["username"] == "anna"
    assert _audit_note(rotated) == "client 'console-nosecret' is public: it has no secret, PKCE proves its codes"

    # An edit of a client removed since its page was opened.
    edit = admin.get(f"{idp_server.base_url}/admin/oidc/clients/edit?client_id=console-gone-edit")
    idp_server.idp("oidc", "client", "remove", "console-gone-edit")
    gone = admin.submit(edit, "oidc-edit", {"name": "Renamed"})
    assert gone.url.startswith(idp_server.base_url + "/admin/sps")
    assert "No OpenID Connect client console-gone-edit is registered" in gone.doc().text_content()
    [changed] = idp_server.audit_rows(event="oidc_client_changed", sp_entity_id=ENTITY + "console-gone-edit")
    assert changed["result"] == "refused" and changed["username"] == "anna"
    assert _audit_note(changed) == "no OpenID Connect client 'console-gone-edit' is registered"

    # A new secret and a removal of a client removed meanwhile.
    idp_server.idp("oidc", "client", "remove", "console-refusals")
    assert admin.submit(confirm, "oidc-rotate").url.startswith(idp_server.base_url + "/admin/sps")
    delete = admin.get(f"{idp_server.base_url}/admin/oidc/clients/delete?client_id=console-nosecret")
    idp_server.idp("oidc", "client", "remove", "console-nosecret")
    admin.submit(delete, "oidc-delete")
    for event, client_id in (
        ("oidc_client_secret_rotated", "console-refusals"),
        ("oidc_client_removed", "console-nosecret"),
    ):
        rows = idp_server.audit_rows(event=event, sp_entity_id=ENTITY + client_id, username="anna")
        assert [r["result"] for r in rows] == ["refused"], event
        assert _audit_note(rows[0]) == f"no OpenID Connect client '{client_id}' is registered"


def test_an_empty_scope_list_is_refused_not_read_as_every_scope(idp_server, admin):
    _cli_add(idp_server, "console-noscope", "--name", "No Scope", "--scope", "openid", "--scope", "email")
    edit = admin.get(f"{idp_server.base_url}/admin/oidc/clients/edit?client_id=console-noscope")
    refused = admin.submit(edit, "oidc-edit", {"scopes": []})  # a post without even the fixed openid
    assert refused.status == 400
    assert refused.text_of("oidc-edit-error") == "Nothing was saved: the scopes must include openid"
    marked = _marked(refused, "oidc-edit")
    assert sorted(marked) == [
        "oidc-edit-scope-email",
        "oidc-edit-scope-groups",
        "oidc-edit-scope-openid",
        "oidc-edit-scope-profile",
    ]
    [fieldset] = refused.doc().xpath('//form[@id="oidc-edit"]//fieldset')
    assert fieldset.get("aria-describedby") == "oidc-edit-error oidc-edit-scopes-help"
    assert "  scopes:   openid email" in _listed(idp_server, "console-noscope")
    [audit] = idp_server.audit_rows(event="oidc_client_changed", sp_entity_id=ENTITY + "console-noscope")
    assert audit["result"] == "refused" and _audit_note(audit) == "the scopes must include openid"


def test_a_group_ad_does_not_know_is_refused_naming_it(idp_server, admin):
    typed = {"client_id": "console-nogroup", "name": "No Group", "redirect_uris": REDIRECT}
    refused = admin.submit(_sps(idp_server, admin), "oidc-add", {**typed, "groups": "Sales\nNo Such Group\n"})
    assert refused.status == 400
    error = refused.text_of("oidc-add-error") or ""
    assert error.startswith("Nothing was saved: ") and "No Such Group" in error and "Sales" not in error
    assert _marked(refused, "oidc-add") == {"oidc-add-groups": "oidc-add-error oidc-add-groups-help"}
    assert ("groups", "Sales\nNo Such Group\n") in refused.form_values("oidc-add")[1]
    [audit] = idp_server.audit_rows(event="oidc_client_added", result="refused", username="anna")[:1]
    assert "AD has no group 'No Such Group'" in _audit_note(audit)
    assert "console-nogroup" not in idp_server.idp("oidc", "client", "list").stdout

    admin.http.headers["Accept-Language"] = "zh-CN"
    try:
        chinese = admin.submit(refused, "oidc-add")
    finally:
        admin.http.headers["Accept-Language"] = "en"
    reason = MESSAGES["zh-CN"]["oidc.error.groups_not_resolved"].format(groups="No Such Group")
    assert chinese.text_of("oidc-add-error") == MESSAGES["zh-CN"]["admin.oidc.not_saved"].format(reason=reason)

    shell = _cli_refused(idp_server, "add", "console-nogroup", "--name", "No Group", *_URI, "--group", "No Such Group")
    assert "AD has no group 'No Such Group'" in shell
    _cli_add(idp_server, "console-regroup", "--name", "Regroup")
    update = _cli_refused(idp_server, "update", "console-regroup", "--group", "Sales", "--group", "Nobody Here")
    assert "AD has no group 'Nobody Here'" in update
    assert "  groups:   everyone" in _listed(idp_server, "console-regroup")


def test_a_name_two_security_groups_share_is_refused_naming_both(idp_server, samba_dc):
    ad = AdAdmin(samba_dc)
    try:
        east, west = ad.add_ou("OIDC East"), ad.add_ou("OIDC West")
        ad.add_group("OIDC Twins", container=east, account_name="oidc-twins-east")
        ad.add_group("OIDC Twins", container=west, account_name="oidc-twins-west")
        shell = _cli_refused(idp_server, "add", "console-twins", "--name", "Twins", *_URI, "--group", "OIDC Twins")
        assert "'OIDC Twins' names 2 security groups" in shell
        assert f"CN=OIDC Twins,{east}" in shell and f"CN=OIDC Twins,{west}" in shell

        # Given by its DN, the one meant is stored, with its SID.
        _cli_add(idp_server, "console-twins", "--name", "Twins", "--group", f"CN=OIDC Twins,{west}")
        [stored] = _stored(idp_server, "console-twins").allowed_groups
        assert re.fullmatch(identity("OIDC Twins", west), stored)
    finally:
        ad.undo()


_URI = ("--redirect-uri", REDIRECT)


def _cli_refused(idp_server, *args: str) -> str:
    """`idp oidc client ...` refused: what it printed on stderr."""
    done = idp_server.idp("oidc", "client", *args, check=False)
    assert done.returncode == 1, done.stdout
    return done.stderr


def _stored(idp_server, client_id: str) -> OidcClient:
    db = Database(load_settings(idp_server.config).database_url)
    try:
        client = ClientStore(db).get(client_id)
    finally:
        db.dispose()
    assert client is not None
    return client


def test_a_group_given_by_name_is_stored_as_an_sp_stores_it_and_decides_who_signs_in(idp_server, admin):
    options = ("--name", "Mail Users App", "--redirect-uri", test_oidc.REDIRECT, "--group", "Mail Users")
    secret = _cli_add(idp_server, "mail-users-app", *options)
    assert secret
    [stored] = _stored(idp_server, "mail-users-app").allowed_groups
    assert re.fullmatch(identity("Mail Users"), stored)
    # Exactly what the SAML SP registered with `idp sp add --group "Mail Users"` holds.
    restricted = idp_server.sps["restricted"]
    policy = admin.get(f"{idp_server.base_url}/admin/sps/policy?entity_id={quote(restricted.entity_id, safe='')}")
    assert policy.text_of("f-allowed_groups") == stored
    # The console's add form stores the same.
    typed = {"client_id": "console-mailusers", "name": "Console Mail Users", "redirect_uris": REDIRECT}
    assert admin.submit(_sps(idp_server, admin), "oidc-add", {**typed, "groups": "Mail Users"}).status == 200
    assert _stored(idp_server, "console-mailusers").allowed_groups == (stored,)

    config = httpx.get(idp_server.base_url + "/.well-known/openid-configuration", timeout=10).json()
    rp = test_oidc.Rp("mail-users-app", secret, config)
    carol = USERS["carol"]  # in no group
    refused = test_oidc.authorize(Browser(), test_oidc.start(rp)[1], carol.password, "carol")
    assert isinstance(refused, Page) and refused.status == 403 and not refused.is_login
    assert refused.text_of("error") == MESSAGES["en"]["not_in_allowed_group"].format(sp="Mail Users App")
    row = idp_server.audit_rows(event="signin", username="carol", sp_entity_id=ENTITY + "mail-users-app")[0]
    assert row["result"] == "failure" and row["reason"] == "not_in_allowed_group"
    # The page SAML's restricted SP shows her: the same one, naming the SP.
    browser = Browser()
    saml = browser.login(browser.get(restricted.redirect_login_url()), "carol", carol.password)
    assert saml.status == 403 and (saml.text_of("error") or "").startswith("Your account is not allowed to use")

    for username in ("alice", "bob"):  # in Mail Users through Sales, and through Engineering
        client, url, verifier, _ = test_oidc.start(rp)
        callback = test_oidc.authorize(Browser(), url, USERS[username].password, username)
        assert isinstance(callback, str) and "code=" in callback, callback
        token = client.fetch_token(config["token_endpoint"], authorization_response=callback, code_verifier=verifier)
        assert token["id_token"]
