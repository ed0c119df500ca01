"""`idp sp set` (the console's policy page from the shell) and `idp sp list` in an 80-column terminal."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from idp.audit import AuditTrail
from idp.cli import cli
from idp.commands import sp as sp_command
from idp.directory.errors import DirectoryUnavailable
from idp.directory.groups import Group
from idp.settings import load_settings
from idp.sps.policy import SpPolicy
from idp.sps.registry import SpRegistry
from idp.store.db import Database
from tests.unit.sp_fixtures import sp_metadata, write_config

ENTITY = "https://webmail.example.test/saml/metadata"
LONG_ENTITY = "https://login.a-very-long-saas-vendor-name.example.com/tenants/8f14e45fceea167a5a36dedd4bea2543/saml2"
LONG_ACS = "https://login.a-very-long-saas-vendor-name.example.com/tenants/8f14e45fceea167a5a36dedd4bea2543/acs/post"
MAIL_USERS = Group("CN=Mail Users,CN=Users,DC=corp,DC=example,DC=test", "Mail Users", (), "S-1-5-21-9-1101", True)
FINANCE = Group("CN=Finance,OU=Groups,DC=corp,DC=example,DC=test", "Finance", (), "S-1-5-21-9-1102", True)


@pytest.fixture(autouse=True)
def ad_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """The groups the options are checked against, in place of the AD the config names."""
    monkeypatch.setattr(sp_command, "ad_groups", lambda settings: [MAIL_USERS, FINANCE])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    config = write_config(tmp_path)
    for name, entity, acs in (
        ("webmail", ENTITY, "https://webmail.example.test/saml/acs"),
        ("long", LONG_ENTITY, LONG_ACS),
    ):
        path = tmp_path / f"{name}.xml"
        path.write_bytes(sp_metadata(entity, acs=acs))
        assert CliRunner().invoke(cli, ["--config", str(config), "sp", "add", str(path)]).exit_code == 0
    return config


@pytest.fixture
def idp(config: Path) -> Callable[..., Result]:
    def run(*args: str, width: int = 200) -> Result:
        return CliRunner().invoke(cli, ["--config", str(config), "sp", *args], env={"COLUMNS": str(width)})

    return run


def policy(config: Path, entity_id: str = ENTITY) -> SpPolicy:
    settings = load_settings(config)
    db = Database(settings.database_url)
    try:
        return SpRegistry(settings.metadata.dir, db, settings.sp_defaults).policy_for(entity_id)
    finally:
        db.dispose()


def changes(config: Path) -> list[tuple[str, str | None, dict]]:
    db = Database(load_settings(config).database_url)
    try:
        rows = AuditTrail(db).recent(event="sp_policy_changed") + AuditTrail(db).recent(event="sp_disabled")
    finally:
        db.dispose()
    return [(r.result, r.reason, json.loads(r.detail or "{}")) for r in rows]


def test_set_changes_only_the_fields_given_and_is_audited(idp, config: Path) -> None:
    before = policy(config)
    result = idp(
        "set", ENTITY, "--nameid-format", "persistent", "--attribute", "mail", "--attribute", "displayName",
        "--attribute-name", "mail=email", "--group", "Mail Users", "--sign", "assertion", "--idp-initiated",
        "--display-name", "Company mail",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "nameid_format: emailAddress -> persistent" in result.output
    after = policy(config)
    assert after.nameid_format == "persistent"
    assert after.attributes == ["mail", "displayName"]
    assert after.attribute_names == {"mail": "email"}
    assert after.allowed_groups == [str(MAIL_USERS.ref)]
    assert (after.sign_response, after.sign_assertion) == (False, True)
    assert after.idp_initiated and after.display_name == "Company mail"
    assert after.require_signed_requests == before.require_signed_requests  # not given: unchanged
    [(status, _, detail)] = changes(config)
    assert status == "success" and detail["after"]["nameid_format"] == "persistent"
    assert detail["before"]["nameid_format"] == "emailAddress"


def test_unknown_groups_are_refused_by_name_and_nothing_is_stored(idp, config: Path) -> None:
    result = idp("set", ENTITY, "--group", "Mail Users", "--group", "No Such Group", "--group", "Fiannce")
    assert result.exit_code == 1
    assert "AD has no group 'No Such Group'" in result.output and "AD has no group 'Fiannce'" in result.output
    assert policy(config).allowed_groups == []
    assert changes(config) == []


def test_groups_are_stored_unchecked_only_when_asked(idp, config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(settings: object) -> list[Group]:
        raise DirectoryUnavailable("no domain controller answered")

    monkeypatch.setattr(sp_command, "ad_groups", unreachable)
    refused = idp("set", ENTITY, "--group", "Mail Users")
    assert refused.exit_code == 1 and "--no-check-groups" in refused.output
    stored = idp("set", ENTITY, "--group", "Mail Users", "--no-check-groups")
    assert stored.exit_code == 0, stored.output
    assert "without checking them in AD" in stored.output
    assert policy(config).allowed_groups == ["Mail Users"]


def test_an_unsigned_policy_is_refused_and_audited(idp, config: Path) -> None:
    result = idp("set", ENTITY, "--sign", "response", "--role", "Finance=acs:ram::123:role/x,not-an-arn")
    assert result.exit_code == 1
    assert "saml-provider" in result.output
    [(status, reason, _)] = changes(config)
    assert (status, reason) == ("refused", "invalid_policy")


def test_disable_unknown_sp_and_nothing_to_change(idp, config: Path) -> None:
    assert idp("set", ENTITY, "--disable").exit_code == 0
    assert not policy(config).enabled
    unknown = idp("set", "https://nobody.example.test", "--disable")
    assert unknown.exit_code == 1 and "no SP with entityID" in unknown.output
    assert ("refused", "unknown_sp") in [(s, r) for s, r, _ in changes(config)]
    nothing = idp("set", ENTITY)
    assert nothing.exit_code == 2 and "nothing to change" in nothing.output


def test_list_fits_80_columns_and_keeps_the_entity_id_whole(idp) -> None:
    result = idp("list", width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    # The entityID, folded over several lines of its cell, is there in full for copying.
    first_cells = "".join(line.split("│")[1].strip() for line in lines if line.startswith("│"))
    assert LONG_ENTITY in first_cells
    # The ACS URL loses its middle, keeping the host and the end of the path.
    assert "│ login.a-…acs/post │" in result.output
    assert LONG_ACS not in "".join(line.split("│")[2].strip() for line in lines if line.startswith("│"))
