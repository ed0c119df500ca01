"""`idp oidc client add|list|update|rotate-secret|remove` through click, with a real config file and database."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import get_args

import pytest
from click.testing import CliRunner, Result

from idp.audit import AuditTrail
from idp.cli import cli
from idp.oidc.clients import SCOPES, ClientStore, OidcClient, OidcClientError, OidcErrorCode
from idp.settings import load_settings
from idp.store.db import Database
from idp.web.i18n import LANGUAGES, MESSAGES
from tests.unit.sp_fixtures import write_config

CALLBACK = "https://mail.example.test/oauth/callback"
LOGOUT = "https://mail.example.test/oauth/logout"


def _run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["oidc", "client", *args], env={"IDP_CONFIG": str(config)})


def _stored(config: Path, client_id: str) -> OidcClient:
    client = ClientStore(Database(load_settings(config).database_url)).get(client_id)
    assert client is not None
    return client


def _audit(config: Path, event: str) -> list[dict]:
    rows = AuditTrail(Database(load_settings(config).database_url)).recent(50)
    return [json.loads(r.detail or "{}") | {"result": r.result, "sp": r.sp_entity_id} for r in rows if r.event == event]


def test_a_secret_is_shown_once_and_stored_only_as_a_hash(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    added = _run(
        config, "add", "crm", "--name", "CRM", "--redirect-uri", CALLBACK, "--group", "Sales", "--no-check-groups"
    )
    assert added.exit_code == 0, added.output
    secret = re.search(r"client secret: (\S+)", added.output)
    assert secret
    client = ClientStore(Database(load_settings(config).database_url)).get("crm")
    assert client is not None and client.secret_matches(secret[1]) and not client.secret_matches(secret[1] + "x")
    assert secret[1] not in (client.secret_hash or "")
    listed = _run(config, "list")
    assert "crm  CRM  (confidential)" in listed.output and secret[1] not in listed.output
    assert "groups:   Sales" in listed.output

    again = _run(config, "add", "crm", "--name", "CRM", "--redirect-uri", CALLBACK)
    assert again.exit_code == 1 and "exists already" in again.output
    assert _run(config, "remove", "crm").exit_code == 0
    assert _run(config, "remove", "crm").exit_code == 1
    assert "No OpenID Connect client" in _run(config, "list").output
    removed = _audit(config, "oidc_client_removed")  # newest first
    assert [r["result"] for r in removed] == ["refused", "success"]
    assert removed[0]["note"] == "no OpenID Connect client 'crm' is registered"


def test_bad_registrations_are_refused_naming_the_value(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    plain_http = _run(config, "add", "app", "--name", "App", "--redirect-uri", "http://app.example.test/cb")
    assert plain_http.exit_code == 1 and "must be https://" in plain_http.output
    fragment = _run(config, "add", "app", "--name", "App", "--redirect-uri", CALLBACK + "#x")
    assert fragment.exit_code == 1 and "#fragment" in fragment.output
    no_openid = _run(config, "add", "app", "--name", "App", "--redirect-uri", CALLBACK, "--scope", "email")
    assert no_openid.exit_code == 1 and "openid" in no_openid.output


def test_the_alibaba_mail_preset_fills_the_client_and_says_what_to_do_there(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    added = _run(config, "add", "alimail", "--preset", "alimail", "--redirect-uri", CALLBACK, "--public")
    assert added.exit_code == 0, added.output
    assert "help.aliyun.com/en/document_detail/2937171.html" in added.output
    assert "urn:ad-sso-bridge:oidc:alimail" in added.output  # what jit_sps must name for JIT
    client = ClientStore(Database(load_settings(config).database_url)).get("alimail")
    assert client is not None and client.name == "Alibaba Mail" and client.public
    assert client.scopes == ("openid", "profile", "email")


def _add_crm(config: Path) -> str:
    added = _run(
        config, "add", "crm", "--name", "CRM", "--redirect-uri", CALLBACK, "--group", "Sales", "--no-check-groups",
        "--scope", "openid", "--scope", "email", "--frontchannel-logout-uri", LOGOUT,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    secret = re.search(r"client secret: (\S+)", added.output)
    assert secret
    return secret[1]


def test_the_front_channel_logout_uri_is_registered_and_listed(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    _add_crm(config)
    assert _stored(config, "crm").frontchannel_logout_uri == LOGOUT
    assert _run(config, "add", "wiki", "--name", "Wiki", "--redirect-uri", CALLBACK, "--public").exit_code == 0
    listed = _run(config, "list").output
    crm, wiki = listed.split("wiki  Wiki")
    assert f"front-channel logout: {LOGOUT}" in crm
    assert "front-channel logout: none" in wiki and "(public)" in wiki


def test_update_changes_what_is_given_and_keeps_the_rest(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    secret = _add_crm(config)
    other = "https://crm2.example.test/cb"

    renamed = _run(config, "update", "crm", "--name", "CRM 2")
    assert renamed.exit_code == 0, renamed.output
    client = _stored(config, "crm")
    assert client.name == "CRM 2" and client.redirect_uris == (CALLBACK,) and client.scopes == ("openid", "email")
    assert client.allowed_groups == ("Sales",) and client.frontchannel_logout_uri == LOGOUT
    assert client.secret_matches(secret) and "front-channel logout: " + LOGOUT in renamed.output

    moved = _run(config, "update", "crm", "--redirect-uri", other, "--redirect-uri", CALLBACK, "--scope", "openid")
    assert moved.exit_code == 0, moved.output
    client = _stored(config, "crm")
    assert client.redirect_uris == (other, CALLBACK) and client.scopes == ("openid",) and client.name == "CRM 2"
    assert client.allowed_groups == ("Sales",) and client.secret_matches(secret)

    regrouped = _run(
        config, "update", "crm", "--no-check-groups",
        "--group", "Finance", "--group", "CN=IT,OU=Groups,DC=corp,DC=example,DC=test",
    )  # fmt: skip
    assert regrouped.exit_code == 0, regrouped.output
    assert _stored(config, "crm").allowed_groups == ("Finance", "CN=IT,OU=Groups,DC=corp,DC=example,DC=test")

    changes = _audit(config, "oidc_client_changed")
    assert [c["result"] for c in changes] == ["success"] * 3 and {c["sp"] for c in changes} == {
        "urn:ad-sso-bridge:oidc:crm"
    }
    assert changes[-1]["before"]["name"] == "CRM" and changes[-1]["after"]["name"] == "CRM 2"
    assert secret not in json.dumps(changes)


def test_update_clears_the_groups_and_the_logout_uri(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    _add_crm(config)
    cleared = _run(config, "update", "crm", "--no-groups", "--frontchannel-logout-uri", "")
    assert cleared.exit_code == 0, cleared.output
    client = _stored(config, "crm")
    assert client.allowed_groups == () and client.frontchannel_logout_uri is None
    assert "groups:   everyone" in cleared.output and "front-channel logout: none" in cleared.output
    assert client.name == "CRM" and client.scopes == ("openid", "email")

    both = _run(config, "update", "crm", "--no-groups", "--group", "Sales")
    assert both.exit_code == 2 and "--no-groups" in both.output
    nothing = _run(config, "update", "crm")
    assert nothing.exit_code == 2 and "nothing to change" in nothing.output


def test_refused_updates_name_the_value_and_change_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    _add_crm(config)
    before = _stored(config, "crm")

    plain_http = _run(config, "update", "crm", "--redirect-uri", "http://crm.example.test/cb")
    assert plain_http.exit_code == 1 and "'http://crm.example.test/cb'" in plain_http.output
    assert "must be https://" in plain_http.output
    logout = _run(config, "update", "crm", "--frontchannel-logout-uri", LOGOUT + "#top")
    assert logout.exit_code == 1 and f"'{LOGOUT}#top'" in logout.output and "#fragment" in logout.output
    no_openid = _run(config, "update", "crm", "--scope", "email")
    assert no_openid.exit_code == 1 and "openid" in no_openid.output
    unknown_scope = _run(config, "update", "crm", "--scope", "phone")
    assert unknown_scope.exit_code == 2 and "'phone'" in unknown_scope.output
    no_name = _run(config, "update", "crm", "--name", " ")
    assert no_name.exit_code == 1 and "needs a name" in no_name.output
    missing = _run(config, "update", "nope", "--name", "Nope")
    assert missing.exit_code == 1 and "'nope'" in missing.output

    assert _stored(config, "crm") == before
    refused = _audit(config, "oidc_client_changed")
    assert len(refused) == 5 and {r["result"] for r in refused} == {"refused"}
    # The unknown client is refused like any other change: under its entity id, with the reason.
    assert refused[0]["sp"] == "urn:ad-sso-bridge:oidc:nope" and refused[0]["before"] is None
    assert refused[0]["note"] == "no OpenID Connect client 'nope' is registered"
    assert refused[1]["sp"] == "urn:ad-sso-bridge:oidc:crm" and refused[1]["before"]["name"] == "CRM"


def test_rotate_secret_prints_a_new_secret_once_and_the_old_one_stops_matching(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    old = _add_crm(config)
    rotated = _run(config, "rotate-secret", "crm")
    assert rotated.exit_code == 0, rotated.output
    new = re.search(r"client secret: (\S+)", rotated.output)
    assert new and new[1] != old
    client = _stored(config, "crm")
    assert client.secret_matches(new[1]) and not client.secret_matches(old)
    assert new[1] not in _run(config, "list").output
    [row] = _audit(config, "oidc_client_secret_rotated")
    assert row["sp"] == "urn:ad-sso-bridge:oidc:crm" and row["result"] == "success"
    assert new[1] not in json.dumps(row) and old not in json.dumps(row)

    assert _run(config, "add", "spa", "--name", "SPA", "--redirect-uri", CALLBACK, "--public").exit_code == 0
    public = _run(config, "rotate-secret", "spa")
    assert public.exit_code == 1 and "public" in public.output and "client secret:" not in public.output
    assert _stored(config, "spa").public
    missing = _run(config, "rotate-secret", "nope")
    assert missing.exit_code == 1 and "'nope'" in missing.output

    # Both refusals leave a row, under the client they name, with the sentence the shell printed.
    refused, nope, _ = _audit(config, "oidc_client_secret_rotated")[:3]
    assert (refused["result"], refused["sp"]) == ("refused", "urn:ad-sso-bridge:oidc:nope")
    assert refused["note"] == "no OpenID Connect client 'nope' is registered" and refused["note"] in missing.output
    assert (nope["result"], nope["sp"]) == ("refused", "urn:ad-sso-bridge:oidc:spa")
    assert nope["note"] == "client 'spa' is public: it has no secret, PKCE proves its codes"


def test_no_scope_given_is_every_scope_and_an_empty_list_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    store = ClientStore(Database(load_settings(config).database_url))
    assert _run(config, "add", "all", "--name", "All", "--redirect-uri", CALLBACK).exit_code == 0
    assert _stored(config, "all").scopes == SCOPES  # the shell says nothing: None, every scope

    with pytest.raises(OidcClientError) as empty:
        store.add("none", "None", [CALLBACK], public=True, scopes=[])
    assert str(empty.value) == "the scopes must include openid" and empty.value.field == "scopes"
    assert store.get("none") is None
    with pytest.raises(OidcClientError) as emptied:
        store.update("all", "All", [CALLBACK], scopes=[])
    assert emptied.value.code == "scope_openid" and _stored(config, "all").scopes == SCOPES
    assert store.update("all", "All", [CALLBACK], scopes=None).scopes == SCOPES


def test_groups_stored_unchecked_are_kept_in_the_form_an_sp_policy_keeps(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    sid = "s-1-5-21-1-2-3-1105"
    added = _run(
        config, "add", "crm", "--name", "CRM", "--redirect-uri", CALLBACK, "--no-check-groups",
        "--group", f"CN=Sales,CN=Users,DC=corp,DC=example,DC=test <{sid}>", "--group", " Sales ", "--group", "Sales",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "groups stored without checking them in AD" in added.output
    client = _stored(config, "crm")
    assert client.allowed_groups == (f"CN=Sales,CN=Users,DC=corp,DC=example,DC=test <{sid.upper()}>", "Sales")
    assert client.policy().allowed_groups == list(client.allowed_groups)
    assert "groups:   CN=Sales,CN=Users,DC=corp,DC=example,DC=test; Sales" in _run(config, "list").output


def test_groups_are_looked_up_in_ad_and_refused_when_it_cannot_answer(tmp_path: Path) -> None:
    """Nothing answers at the configured DC: the groups cannot be checked, so nothing is stored."""
    config = write_config(tmp_path)
    added = _run(config, "add", "crm", "--name", "CRM", "--redirect-uri", CALLBACK, "--group", "Sales")
    assert added.exit_code == 1 and "cannot check the groups in Active Directory" in added.output
    assert "--no-check-groups" in added.output
    assert ClientStore(Database(load_settings(config).database_url)).get("crm") is None
    [row] = _audit(config, "oidc_client_added")
    assert row["result"] == "refused" and row["note"].startswith("cannot check the groups in Active Directory")

    _add_crm(config)
    regrouped = _run(config, "update", "crm", "--group", "Finance")
    assert regrouped.exit_code == 1 and "cannot check the groups" in regrouped.output
    assert _stored(config, "crm").allowed_groups == ("Sales",)
    # Groups the client holds stay as stored: changing something else does not ask AD.
    renamed = _run(config, "update", "crm", "--name", "CRM 2")
    assert renamed.exit_code == 0, renamed.output
    assert _stored(config, "crm").allowed_groups == ("Sales",) and _stored(config, "crm").name == "CRM 2"


def _refusal(attempt) -> OidcClientError:
    with pytest.raises(OidcClientError) as refused:
        attempt()
    return refused.value


def test_a_front_channel_logout_uri_must_be_served_where_a_redirect_uri_is(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    elsewhere = _run(
        config, "add", "crm", "--name", "CRM", "--redirect-uri", CALLBACK,
        "--frontchannel-logout-uri", "https://other.example.test/oauth/logout",
    )  # fmt: skip
    assert elsewhere.exit_code != 0
    assert "https://other.example.test/oauth/logout" in elsewhere.output
    assert "https://mail.example.test" in elsewhere.output  # the origins it may use
    other_port = _run(
        config, "add", "crm", "--name", "CRM", "--redirect-uri", CALLBACK,
        "--frontchannel-logout-uri", "https://mail.example.test:8443/oauth/logout",
    )  # fmt: skip
    assert other_port.exit_code != 0
    store = ClientStore(Database(load_settings(config).database_url))
    assert store.get("crm") is None
    # The scheme's own port written out is the same origin.
    store.add("crm", "CRM", [CALLBACK], public=True, frontchannel_logout_uri="https://MAIL.example.test:443/out")
    refused = _refusal(lambda: store.update("crm", "CRM", [CALLBACK], frontchannel_logout_uri="http://127.0.0.1:9/out"))
    assert (refused.field, refused.code) == ("frontchannel_logout_uri", "frontchannel_uri_origin")
    assert MESSAGES["zh-CN"][refused.key].format(**refused.params) != str(refused)


def test_each_refusal_names_its_field_and_has_words_in_every_language(tmp_path: Path) -> None:
    store = ClientStore(Database(load_settings(write_config(tmp_path)).database_url))
    store.add("spa", "SPA", [CALLBACK], public=True)
    refusals = {
        "client_id": _refusal(lambda: store.add("no spaces", "X", [CALLBACK], public=True)),
        "name": _refusal(lambda: store.add("x", " ", [CALLBACK], public=True)),
        "redirect_uris": _refusal(lambda: store.add("x", "X", ["http://app.example.test/cb"], public=True)),
        "scopes": _refusal(lambda: store.add("x", "X", [CALLBACK], public=True, scopes=["openid", "phone"])),
        "frontchannel_logout_uri": _refusal(
            lambda: store.add("x", "X", [CALLBACK], public=True, frontchannel_logout_uri=LOGOUT + "#top")
        ),
        None: _refusal(lambda: store.new_secret("spa")),
    }
    exists = _refusal(lambda: store.add("spa", "SPA", [CALLBACK], public=True))
    assert {field: exc.field for field, exc in refusals.items()} == {field: field for field in refusals}
    assert exists.field == "client_id" and store.get("x") is None
    for exc in [*refusals.values(), exists]:
        # English words are the shell's sentence; Chinese ones fill in the same values, in Chinese.
        assert MESSAGES["en"][exc.key].format(**exc.params) == str(exc)
        chinese = MESSAGES["zh-CN"][exc.key].format(**exc.params)
        assert re.search(r"[\u4e00-\u9fff]", chinese) and chinese != str(exc)
    for lang in LANGUAGES:
        assert [c for c in get_args(OidcErrorCode) if f"oidc.error.{c}" not in MESSAGES[lang]] == [], lang
