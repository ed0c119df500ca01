"""`idp oidc client add|list|update|rotate-secret|remove` through click, with a real config file and database."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner, Result

from idp.audit import AuditTrail
from idp.cli import cli
from idp.oidc.clients import ClientStore, OidcClient
from idp.settings import load_settings
from idp.store.db import Database
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
    added = _run(config, "add", "crm", "--name", "CRM", "--redirect-uri", CALLBACK, "--group", "Sales")
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
        config, "add", "crm", "--name", "CRM", "--redirect-uri", CALLBACK, "--group", "Sales",
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
        config, "update", "crm", "--group", "Finance", "--group", "CN=IT,OU=Groups,DC=corp,DC=example,DC=test"
    )
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
    assert len(refused) == 4 and {r["result"] for r in refused} == {"refused"}


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
