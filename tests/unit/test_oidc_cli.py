"""`idp oidc client add|list|remove` through click, with a real config file and database."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner, Result

from idp.cli import cli
from idp.oidc.clients import ClientStore
from idp.settings import load_settings
from idp.store.db import Database
from tests.unit.sp_fixtures import write_config

CALLBACK = "https://mail.example.test/oauth/callback"


def _run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["oidc", "client", *args], env={"IDP_CONFIG": str(config)})


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
