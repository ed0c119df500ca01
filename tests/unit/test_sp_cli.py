"""`idp sp add|list|remove` through click, with a real config file, database and metadata directory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from idp.audit import AuditRecord, AuditTrail
from idp.cli import cli
from idp.commands import sp as sp_command
from idp.directory.groups import Group
from idp.settings import load_settings
from idp.sps.origins import SpOrigins
from idp.sps.policy import SpPolicy
from idp.sps.registry import SpRegistry
from idp.store.db import Database
from tests.unit.sp_fixtures import DATA, Route, http_server, make_cert, sp_metadata, write_config

ENTITY = "https://webmail.example.test/saml/metadata"
MAIL_USERS = Group("CN=Mail Users,CN=Users,DC=corp,DC=example,DC=test", "Mail Users", (), "S-1-5-21-9-1101", True)
FINANCE = Group("CN=Finance,OU=Groups,DC=corp,DC=example,DC=test", "Finance", (), "S-1-5-21-9-1102", True)
SALES = Group("CN=Sales,CN=Users,DC=corp,DC=example,DC=test", "Sales", (), "S-1-5-21-9-1103", True)
SALES_BRANCH = Group("CN=Sales,OU=Branch,DC=corp,DC=example,DC=test", "Sales", (), "S-1-5-21-9-1104", True)
NEWSLETTER = Group("CN=Newsletter,CN=Users,DC=corp,DC=example,DC=test", "Newsletter", (), "S-1-5-21-9-1105", False)


@pytest.fixture(autouse=True)
def ad_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """The groups `--group` is checked against, in place of the AD the config names."""
    monkeypatch.setattr(
        sp_command, "ad_groups", lambda settings: [MAIL_USERS, FINANCE, SALES, SALES_BRANCH, NEWSLETTER]
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def idp(config: Path) -> Iterator:
    runner = CliRunner()

    def run(*args: str) -> Result:
        # Wide enough that rich does not fold entityIDs in the table.
        return runner.invoke(cli, ["sp", *args], env={"IDP_CONFIG": str(config), "COLUMNS": "300"})

    return run


def metadata_file(tmp_path: Path, xml: bytes, name: str = "sp.xml") -> str:
    path = tmp_path / name
    path.write_bytes(xml)
    return str(path)


def audit_rows(config: Path, event: str) -> list[AuditRecord]:
    db = Database(load_settings(config).database_url)
    try:
        return AuditTrail(db).recent(event=event)
    finally:
        db.dispose()


def stored_policy(config: Path, entity_id: str) -> SpPolicy:
    settings = load_settings(config)
    db = Database(settings.database_url)
    try:
        return SpRegistry(settings.metadata.dir, db, settings.sp_defaults).policy_for(entity_id)
    finally:
        db.dispose()


def assert_clean_failure(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    # click turns our errors into a message and SystemExit(1); anything else would be an unhandled crash.
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


def test_add_list_remove_round_trip(idp, config: Path, tmp_path: Path) -> None:
    xml = sp_metadata(ENTITY, acs="https://webmail.example.test/saml/acs", display_name="Webmail")

    added = idp("add", metadata_file(tmp_path, xml))
    assert added.exit_code == 0, added.output
    assert f"Added SP 'Webmail' ({ENTITY})" in added.output

    listed = idp("list")
    assert listed.exit_code == 0, listed.output
    for text in (ENTITY, "Webmail", "https://webmail.example.test/saml/acs", "emailAddress", "everyone"):
        assert text in listed.output
    assert f"{datetime.now(UTC) + timedelta(days=365):%Y-%m-%d}" in listed.output  # the certificate's expiry

    removed = idp("remove", ENTITY)
    assert removed.exit_code == 0, removed.output
    assert "No SPs are registered" in idp("list").output

    [add_row] = audit_rows(config, "sp_added")
    assert (add_row.result, add_row.sp_entity_id) == ("success", ENTITY)
    [remove_row] = audit_rows(config, "sp_removed")
    assert (remove_row.result, remove_row.sp_entity_id) == ("success", ENTITY)


def test_policy_options_are_stored(idp, config: Path, tmp_path: Path) -> None:
    result = idp(
        "add",
        metadata_file(tmp_path, sp_metadata(ENTITY)),
        "--nameid-format", "transient",
        "--attribute", "mail",
        "--attribute", "groups",
        "--require-signed-requests",
        "--sign", "assertion",
        "--group", "Mail Users",
        "--group", "CN=Finance,OU=Groups,DC=corp,DC=example,DC=test",
        "--allow-relay-state", "/inbox",
        "--allow-relay-state", "https://mail.example.test/calendar",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    policy = stored_policy(config, ENTITY)
    assert policy.relay_state_allowed == ["/inbox", "https://mail.example.test/calendar"]
    assert policy.nameid_format == "transient"
    assert policy.attributes == ["mail", "groups"]
    assert policy.require_signed_requests is True
    assert (policy.sign_response, policy.sign_assertion) == (False, True)
    assert policy.allowed_groups == [str(MAIL_USERS.ref), str(FINANCE.ref)]  # identities, not names

    listed = idp("list").output
    assert "transient" in listed and "Mail Users" in listed


@pytest.mark.parametrize(
    ("group", "words"),
    [
        ("Sales", (SALES.dn, SALES_BRANCH.dn, "2 security groups")),
        ("Newsletter", ("distribution group",)),
        ("Slaes", ("no group 'Slaes'",)),
    ],
    ids=["ambiguous", "distribution", "unknown"],
)
def test_a_group_that_is_not_exactly_one_security_group_is_refused(idp, tmp_path: Path, group, words) -> None:
    result = idp("add", metadata_file(tmp_path, sp_metadata(ENTITY)), "--group", "Mail Users", "--group", group)
    assert_clean_failure(result, "--group", *words)
    assert "No SPs are registered" in idp("list").output


def test_unknown_attribute_is_refused_before_anything_is_stored(idp, tmp_path: Path) -> None:
    result = idp("add", metadata_file(tmp_path, sp_metadata(ENTITY)), "--attribute", "password")
    assert result.exit_code == 2
    assert "'password' is not one of" in result.output and "'mail'" in result.output
    assert "No SPs are registered" in idp("list").output


def test_duplicate_is_refused_and_replace_keeps_what_is_not_overridden(idp, config: Path, tmp_path: Path) -> None:
    first = metadata_file(tmp_path, sp_metadata(ENTITY, acs="https://webmail.example.test/acs"), "first.xml")
    assert idp("add", first, "--group", "Mail Users", "--nameid-format", "persistent").exit_code == 0

    second = metadata_file(tmp_path, sp_metadata(ENTITY, acs="https://webmail.example.test/acs2"), "second.xml")
    assert_clean_failure(idp("add", second), "already registered", "--replace")
    refusal = audit_rows(config, "sp_added")[0]
    assert (refusal.result, refusal.reason, refusal.sp_entity_id) == ("refused", "duplicate_entity_id", ENTITY)

    replaced = idp("add", second, "--replace", "--group", "Finance")
    assert replaced.exit_code == 0, replaced.output
    assert "Updated SP" in replaced.output and "https://webmail.example.test/acs2" in replaced.output
    policy = stored_policy(config, ENTITY)
    assert policy.allowed_groups == [str(FINANCE.ref)]
    assert policy.nameid_format == "persistent"  # not given again, so kept


def test_invalid_metadata_names_the_element_and_is_audited(idp, config: Path, tmp_path: Path) -> None:
    result = idp("add", metadata_file(tmp_path, sp_metadata(acs="http://webmail.example.test/acs")))
    assert_clean_failure(result, "AssertionConsumerService", "must use https")
    [row] = audit_rows(config, "sp_added")
    assert (row.result, row.reason) == ("refused", "invalid_metadata")
    assert "AssertionConsumerService" in (row.detail or "")


def test_expired_certificate_is_refused(idp, tmp_path: Path) -> None:
    expired = make_cert("old", not_after=datetime.now(UTC) - timedelta(days=1))
    assert_clean_failure(idp("add", metadata_file(tmp_path, sp_metadata(cert=expired))), "expired", "CN=old")


def test_xxe_content_never_reaches_output_audit_or_disk(idp, config: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-51b0")
    hostile = (
        sp_metadata()
        .replace(
            b"<md:EntityDescriptor",
            f'<!DOCTYPE m [<!ENTITY s SYSTEM "file://{secret}">]><md:EntityDescriptor'.encode(),
            1,
        )
        .replace(b"https://sp.example.test/saml/acs", b"https://sp.example.test/&s;")
    )
    result = idp("add", metadata_file(tmp_path, hostile))
    assert_clean_failure(result, "hostile XML")
    assert "TOP-SECRET" not in result.output
    assert all("TOP-SECRET" not in (r.detail or "") for r in audit_rows(config, "sp_added"))
    metadata_dir = tmp_path / "metadata"
    assert not metadata_dir.exists() or not list(metadata_dir.iterdir())


def test_add_from_a_file_keeps_its_name_for_the_console(idp, config: Path, tmp_path: Path) -> None:
    xml = sp_metadata(ENTITY, acs="https://webmail.example.test/saml/acs", display_name="Webmail")
    assert idp("add", metadata_file(tmp_path, xml, "payroll-prod.xml")).exit_code == 0
    origin = SpOrigins(Database(load_settings(config).database_url)).all()[ENTITY]
    assert (origin.kind, origin.file_name) == ("file", "payroll-prod.xml")


def test_add_from_url(idp, config: Path) -> None:
    xml = (DATA / "shibboleth-sp-metadata.xml").read_bytes()
    with http_server(
        {"/Shibboleth.sso/Metadata?token=s3cr3t": Route(xml), "/junk": Route(b"nope", content_type="text/plain")}
    ) as base:
        result = idp("add", f"{base}/Shibboleth.sso/Metadata?token=s3cr3t", "--allow-http")
        assert result.exit_code == 0, result.output
        assert "https://mail.example.test/shibboleth" in result.output
        assert_clean_failure(idp("add", f"{base}/junk", "--allow-http"), "not XML")
        assert_clean_failure(idp("add", f"{base}/Shibboleth.sso/Metadata?token=s3cr3t"), "must use https")
    plain, refused, added = audit_rows(config, "sp_added")
    assert (refused.result, refused.reason) == ("refused", "fetch_not_xml")
    assert (plain.result, plain.reason) == ("refused", "fetch_refused_url")
    assert added.result == "success" and added.detail and "/Shibboleth.sso/Metadata" in added.detail
    assert "s3cr3t" not in added.detail  # a token in the query string stays out of the audit trail


def test_warnings_are_shown(idp, tmp_path: Path) -> None:
    soon = datetime.now(UTC) + timedelta(days=7)
    result = idp("add", metadata_file(tmp_path, sp_metadata(cert=make_cert(not_after=soon))))
    assert result.exit_code == 0, result.output
    assert "Warning: the signing certificate" in result.output and f"{soon:%Y-%m-%d}" in result.output


def test_remove_unknown_is_refused_and_audited(idp, config: Path) -> None:
    assert_clean_failure(idp("remove", "urn:nobody"), "no SP with entityID 'urn:nobody'")
    [row] = audit_rows(config, "sp_removed")
    assert (row.result, row.reason, row.sp_entity_id) == ("refused", "unknown_sp", "urn:nobody")


def test_missing_file_is_a_clear_error(idp, config: Path, tmp_path: Path) -> None:
    assert_clean_failure(idp("add", str(tmp_path / "nope.xml")), "cannot read", "nope.xml")
    assert audit_rows(config, "sp_added")[0].reason == "unreadable_source"


def test_http_loopback_acs_follows_the_setting(tmp_path: Path) -> None:
    xml = metadata_file(tmp_path, sp_metadata(acs="http://127.0.0.1:8080/acs", slo=None))
    runner = CliRunner()
    allowed = write_config(tmp_path / "a")
    strict = write_config(tmp_path / "b", allow_http_loopback=False)
    assert runner.invoke(cli, ["--config", str(allowed), "sp", "add", xml]).exit_code == 0
    result = runner.invoke(cli, ["--config", str(strict), "sp", "add", xml])
    assert_clean_failure(result, "must use https")


def test_bad_config_is_a_clean_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "missing.toml"), "sp", "list"])
    assert_clean_failure(result, "does not exist")


def test_refresh_a_url_sp_and_report_a_broken_url(idp, config: Path, tmp_path: Path) -> None:
    routes = {"/md": Route(sp_metadata(ENTITY, acs="https://webmail.example.test/acs"))}
    with http_server(routes) as base:
        assert idp("add", f"{base}/md", "--allow-http").exit_code == 0
        routes["/md"] = Route(sp_metadata(ENTITY, acs="https://webmail.example.test/acs-new"))
        refreshed = idp("refresh", ENTITY)
        assert refreshed.exit_code == 0, refreshed.output
        assert f"{ENTITY}: changed, saved" in refreshed.output
        assert "https://webmail.example.test/acs-new" in idp("list").output

        routes["/md"] = Route(b"<html>down</html>", content_type="text/html")
        broken = idp("refresh", "--all")
        assert broken.exit_code == 1 and "kept the last good copy" in broken.output and "HTML page" in broken.output
        assert "https://webmail.example.test/acs-new" in idp("list").output
    [row] = [r for r in audit_rows(config, "sp_metadata_refreshed") if r.result == "refused"]
    assert row.reason == "fetch_not_xml" and row.username and row.username.startswith("cli:")
    assert_clean_failure(idp("refresh", "urn:nobody"), "not registered from a metadata URL")


def test_pinned_certificate_from_the_command_line(idp, tmp_path: Path) -> None:
    from onelogin.saml2.metadata import OneLogin_Saml2_Metadata

    from tests.e2e.saml_sp import new_key_and_certificate

    key, cert = new_key_and_certificate("signer.example.test")
    pem = tmp_path / "signer.pem"
    pem.write_text(cert)
    xml = sp_metadata(ENTITY)
    signed = OneLogin_Saml2_Metadata.sign_metadata(xml.decode(), key, cert)
    routes = {"/unsigned": Route(xml), "/signed": Route(signed.encode() if isinstance(signed, str) else signed)}
    with http_server(routes) as base:
        assert_clean_failure(idp("add", f"{base}/unsigned", "--allow-http", "--pin-cert", str(pem)), "not signed")
        assert idp("add", f"{base}/signed", "--allow-http", "--pin-cert", str(pem)).exit_code == 0
    assert idp("add", metadata_file(tmp_path, xml), "--pin-cert", str(pem)).exit_code == 2  # a file has no URL
