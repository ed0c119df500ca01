"""Settings: one typed object, TOML + IDP_SECTION__KEY, and start-up errors that name the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from idp.settings import SettingsError, load_settings, render_toml

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = {
    "ldap": {
        "urls": ["ldaps://dc1.corp.example.com"],
        "base_dn": "DC=corp,DC=example,DC=com",
        "bind_dn": "svc@corp.example.com",
        "bind_password": "x",
    }
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "idp.toml"
    path.write_text(render_toml(data))
    return path


def test_the_shipped_example_is_valid(tmp_path):
    s = load_settings(ROOT / "idp.example.toml", environ={"IDP_LDAP__BIND_PASSWORD": "from-env"})
    assert s.ldap.urls[0].startswith("ldaps://")
    assert s.ldap.service_password() == "from-env"
    with pytest.raises(SettingsError, match=r"ldap.bind_password_file: /etc/idp/ldap-password does not exist"):
        load_settings(ROOT / "idp.example.toml", environ={})
    assert s.entity_id == "https://sso.corp.example.com/saml/metadata"


def test_a_missing_metrics_token_file_is_named_at_start(tmp_path):
    """Not at Prometheus's first scrape, as a 500 nobody reads."""
    config = write(tmp_path, {**MINIMAL, "server": {"metrics_token_file": "no-such.token"}})
    with pytest.raises(SettingsError, match=r"server.metrics_token_file: .*no-such.token does not exist"):
        load_settings(config, environ={})


def test_defaults_and_relative_paths(tmp_path):
    s = load_settings(write(tmp_path, MINIMAL), environ={})
    assert s.server.base_url == "http://127.0.0.1:8000"
    assert s.idp.key_file == tmp_path / "certs/idp.key"
    assert s.metadata.dir == tmp_path / "metadata"
    assert s.ldap.realm == "corp.example.com"
    assert s.database_url.startswith("sqlite:///") and s.database_url.endswith("var/idp.db")


def test_provisioning_secret_files_are_relative_to_the_config_and_checked_at_start(tmp_path):
    """As every other file the configuration names; a missing one is named at start-up, not at the first sync."""
    config = write(tmp_path, MINIMAL)
    config.write_text(
        config.read_text() + '\n[provisioning]\nprovider = "alimail"\n'
        '[provisioning.alimail]\nclient_id = "app"\nclient_secret_file = "secrets/alimail.secret"\n'
        'mail_domain = "corp.example.com"\n'
        '[provisioning.scim]\nbase_url = "https://saas.example.com/scim/v2"\nbearer_token_file = "secrets/scim.token"\n'
    )
    with pytest.raises(SettingsError, match=r"alimail.client_secret_file: .*alimail.secret does not exist"):
        load_settings(config, environ={})
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "alimail.secret").write_text("s3cret\n")
    with pytest.raises(SettingsError, match=r"provisioning.scim.bearer_token_file: .*scim.token does not exist"):
        load_settings(config, environ={})
    (tmp_path / "secrets" / "scim.token").write_text("t0ken\n")
    s = load_settings(config, environ={})
    assert s.provisioning is not None and s.provisioning.alimail is not None and s.provisioning.scim is not None
    assert s.provisioning.alimail.client_secret_file == tmp_path / "secrets/alimail.secret"
    assert s.provisioning.alimail.secret() == "s3cret" and s.provisioning.scim.token() == "t0ken"


def test_environment_overrides_single_keys(tmp_path):
    env = {
        "IDP_LDAP__URLS": '["ldaps://a.example", "ldaps://b.example"]',
        "IDP_LDAP__BIND_PASSWORD": "12345",
        "IDP_SERVER__SESSION_LIFETIME": "600",
        "IDP_SERVER__BASE_URL": "https://sso.example.com/",
    }
    s = load_settings(write(tmp_path, MINIMAL), environ=env)
    assert s.ldap.urls == ["ldaps://a.example", "ldaps://b.example"]
    assert s.ldap.bind_password == "12345"  # a numeric-looking password stays a string
    assert s.server.session_lifetime == 600
    assert s.server.base_url == "https://sso.example.com"


@pytest.mark.parametrize(
    ("data", "env", "named"),
    [
        ({**MINIMAL, "server": {"base_url": "sso.example.com"}}, {}, "server.base_url"),
        ({**MINIMAL, "server": {"sesion_lifetime": 60}}, {}, "server.sesion_lifetime"),
        ({**MINIMAL, "idp": {"assertion_lifetime": 5}}, {}, "idp.assertion_lifetime"),
        ({"ldap": {**MINIMAL["ldap"], "urls": ["http://dc1"]}}, {}, "ldap.urls"),
        ({}, {}, "ldap"),
        (MINIMAL, {"IDP_SERVER__COOKIE_SAMESITE": "None"}, "server"),
        (MINIMAL, {"IDP_LDAP__CONNECT_TIMEOUT": "soon"}, "IDP_LDAP__CONNECT_TIMEOUT"),
    ],
)
def test_bad_keys_are_named(tmp_path, data, env, named):
    with pytest.raises(SettingsError) as err:
        load_settings(write(tmp_path, data), environ=env)
    assert named in str(err.value)


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[ldap\nurls = 1")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(bad, environ={})
