"""The signing-key rollover: the keyring's steps and refusals, what our metadata publishes and what signs at each
step (checked by python3-saml), two SAML layers standing in for two workers, and `idp keys rotate`."""

from __future__ import annotations

import copy
import json
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from idp.audit import AuditTrail
from idp.cli import cli
from idp.keys.keyring import (
    Keyring,
    KeyringError,
    NextKeyExists,
    NoNextKey,
    NothingToRetire,
    PreviousKeyNotRetired,
    RolloverStepRefused,
)
from idp.keys.material import init_keys, load_key_info, new_key_and_certificate
from idp.saml.messages import RedirectTo
from idp.settings import Settings, load_settings
from idp.sps.policy import SpPolicy
from idp.store.db import Database
from tests.unit.saml_world import (
    IDP_BASE,
    Registry,
    SamlLayer,
    post_request,
    redirect_request,
    sp_metadata,
    sp_settings,
    validated_response,
)

MD = {"md": "urn:oasis:names:tc:SAML:2.0:metadata", "ds": "http://www.w3.org/2000/09/xmldsig#"}


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    d = tmp_path / "certs"
    init_keys(d / "idp.key", d / "idp.crt", d / "persistent-id.secret", "idp.example.test")
    return d


@pytest.fixture
def keyring(certs: Path) -> Keyring:
    return Keyring(certs / "idp.key", certs / "idp.crt")


def _files(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


# ---- the state machine ------------------------------------------------------------------------------


def test_without_a_manifest_the_configured_files_are_the_only_key(keyring: Keyring, certs: Path) -> None:
    state = keyring.state()
    assert state.active.key_file == certs / "idp.key" and state.active.cert_file == certs / "idp.crt"
    assert (state.next, state.previous, state.stage, state.possible_step) == (None, None, "single", "add")
    assert [role for role, _ in state.published()] == ["active"]
    assert keyring.version() == "no-keyring" and not keyring.manifest.exists()


def test_a_full_rollover_add_switch_retire(keyring: Keyring, certs: Path) -> None:
    original = load_key_info(certs / "idp.crt").sha256_fingerprint
    secret = (certs / "persistent-id.secret").read_bytes()
    versions = [keyring.version()]

    added = keyring.add_next("idp.example.test", days=90)
    versions.append(keyring.version())
    state = keyring.state()
    assert state == added.after and state.stage == "next" and state.possible_step == "switch"
    assert state.active.cert_file == certs / "idp.crt"  # nothing signs with the new key yet
    assert [role for role, _ in state.published()] == ["active", "next"]
    assert stat.S_IMODE(state.next.key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.next.cert_file.stat().st_mode) == 0o644
    new = load_key_info(state.next.cert_file)
    assert new.sha256_fingerprint != original and 89 <= (new.not_after - new.not_before).days <= 91
    assert added.before.fingerprints() == {"active": original}
    assert added.after.fingerprints() == {"active": original, "next": new.sha256_fingerprint}

    switched = keyring.switch()
    versions.append(keyring.version())
    state = keyring.state()
    assert state == switched.after and state.stage == "switched" and state.possible_step == "retire"
    assert state.fingerprints() == {"active": new.sha256_fingerprint, "previous": original}

    retired = keyring.retire()
    versions.append(keyring.version())
    state = keyring.state()
    assert state == retired.after and state.stage == "single"
    assert state.fingerprints() == {"active": new.sha256_fingerprint}
    assert not (certs / "idp.key").exists()  # the retired private key is gone
    assert (certs / "idp.crt").exists()  # its public certificate may stay

    assert len(set(versions)) == 4  # every step is visible to every process
    assert (certs / "persistent-id.secret").read_bytes() == secret
    assert not [n for n in _files(certs) if n.startswith(".")]  # no temporary files left behind


def test_a_second_rollover_starts_from_the_rolled_key(keyring: Keyring) -> None:
    for _ in range(2):
        keyring.add_next("idp.example.test")
        keyring.switch()
        keyring.retire()
    state = keyring.state()
    assert state.stage == "single" and state.active.key_file.exists()
    assert state.active.key_file.name not in ("idp.key",)


def test_steps_out_of_order_are_refused_and_change_nothing(keyring: Keyring, certs: Path) -> None:
    def refused(step, kind: type[RolloverStepRefused], possible: str, words: str) -> None:
        before_files, before_version = _files(certs), keyring.version()
        with pytest.raises(kind, match=words) as err:
            step()
        assert err.value.possible == possible
        assert (_files(certs) - {"idp.keyring.lock"}, keyring.version()) == (
            before_files - {"idp.keyring.lock"},
            before_version,
        )

    add = lambda: keyring.add_next("idp.example.test")  # noqa: E731
    refused(keyring.switch, NoNextKey, "add", "no next key")
    refused(keyring.retire, NothingToRetire, "add", "no previous key")
    add()
    refused(add, NextKeyExists, "switch", "already published")
    refused(keyring.retire, NothingToRetire, "switch", "no previous key")
    keyring.switch()
    refused(add, PreviousKeyNotRetired, "retire", "retire it")
    refused(keyring.switch, NoNextKey, "retire", "no next key")
    keyring.retire()
    refused(keyring.retire, NothingToRetire, "add", "no previous key")


def test_two_admins_adding_at_once_make_one_key(keyring: Keyring, certs: Path) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def add() -> None:
        barrier.wait()
        try:
            keyring.add_next("idp.example.test")
            outcomes.append("added")
        except NextKeyExists:
            outcomes.append("refused")

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["added", "refused", "refused", "refused"]
    assert len([n for n in _files(certs) if n.endswith(".key")]) == 2


def test_switch_refuses_a_next_key_that_does_not_match_its_certificate(keyring: Keyring) -> None:
    added = keyring.add_next("idp.example.test").after
    other_key, _ = new_key_and_certificate("intruder.example.test")
    added.next.key_file.write_text(other_key)
    manifest = keyring.manifest.read_bytes()
    with pytest.raises(KeyringError, match="does not belong to the certificate"):
        keyring.switch()
    assert keyring.manifest.read_bytes() == manifest


def test_a_damaged_manifest_is_named_in_the_error(keyring: Keyring) -> None:
    keyring.manifest.write_text("{not json")
    with pytest.raises(KeyringError, match=r"idp\.keyring\.json is not a keyring manifest"):
        keyring.state()
    keyring.manifest.write_text(json.dumps({"format": 1, "active": None}))
    with pytest.raises(KeyringError, match="names no active key"):
        keyring.state()
    keyring.manifest.write_text(json.dumps({"format": 1, "active": {"key": 1}}))
    with pytest.raises(KeyringError, match='"active" must be'):
        keyring.state()


# ---- the SAML layer: what is published, what signs ----------------------------------------------------


@pytest.fixture
def rolled_settings(certs: Path, tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "server": {"base_url": IDP_BASE, "data_dir": str(tmp_path / "data")},
            "idp": {
                "key_file": str(certs / "idp.key"),
                "cert_file": str(certs / "idp.crt"),
                "persistent_id_secret_file": str(certs / "persistent-id.secret"),
            },
            "ldap": {
                "urls": ["ldaps://dc.example.test"],
                "base_dn": "DC=example,DC=test",
                "bind_dn": "s",
                "bind_password": "x",
            },
        }
    )


def _signing_certs(metadata: bytes) -> list[str]:
    tree = etree.fromstring(metadata)
    found = tree.xpath(
        "//md:IDPSSODescriptor/md:KeyDescriptor[@use='signing']/ds:KeyInfo/ds:X509Data/ds:X509Certificate/text()",
        namespaces=MD,
    )
    return ["".join(c.split()) for c in found]


def _pem_body(cert_file: Path) -> str:
    return "".join(cert_file.read_text().strip().splitlines()[1:-1])


def _sp(sp_pem: tuple[str, str], idp_metadata: bytes, *, sign_logout: bool = False) -> OneLogin_Saml2_Settings:
    """python3-saml configured from the IdP metadata it imported at some moment."""
    merged = copy.deepcopy(
        OneLogin_Saml2_IdPMetadataParser.merge_settings(
            sp_settings(sp_pem), OneLogin_Saml2_IdPMetadataParser.parse(idp_metadata.decode())
        )
    )
    merged["security"]["logoutRequestSigned"] = sign_logout
    return OneLogin_Saml2_Settings(merged)


def _sign_in(idp: SamlLayer, sp: OneLogin_Saml2_Settings, alice) -> None:
    saml_request, request_id = post_request(sp, sign=False)
    req = idp.parse_authn_request("post", saml_request, None)
    form = idp.authn_response(req, alice, session_index="s-1", authn_instant=datetime.now(UTC))
    validated_response(sp, form, request_id)


def test_metadata_and_signatures_follow_every_step_in_every_worker(
    rolled_settings: Settings, registry: Registry, sp_pem: tuple[str, str], alice, keyring: Keyring, certs: Path
) -> None:
    registry.add("mail", sp_metadata(sp_pem), SpPolicy(attributes=["mail"]))
    worker_a, worker_b = SamlLayer(rolled_settings, registry), SamlLayer(rolled_settings, registry)
    old_metadata = worker_a.metadata_xml()
    assert _signing_certs(old_metadata) == [_pem_body(certs / "idp.crt")]
    stale_sp = _sp(sp_pem, old_metadata)

    keyring.add_next("idp.example.test")
    next_cert = keyring.state().next.cert_file
    for worker in (worker_a, worker_b):
        metadata = worker.metadata_xml()
        assert _signing_certs(metadata) == [_pem_body(certs / "idp.crt"), _pem_body(next_cert)]
        assert OneLogin_Saml2_Utils.validate_metadata_sign(metadata, (certs / "idp.crt").read_text())
    fresh_sp = _sp(sp_pem, worker_b.metadata_xml())
    _sign_in(worker_a, stale_sp, alice)  # the old key still signs
    _sign_in(worker_b, fresh_sp, alice)

    keyring.switch()
    for worker in (worker_a, worker_b):
        metadata = worker.metadata_xml()
        assert _signing_certs(metadata) == [_pem_body(next_cert), _pem_body(certs / "idp.crt")]
        assert OneLogin_Saml2_Utils.validate_metadata_sign(metadata, next_cert.read_text())
        assert not OneLogin_Saml2_Utils.validate_metadata_sign(metadata, (certs / "idp.crt").read_text())
        _sign_in(worker, fresh_sp, alice)
        with pytest.raises(AssertionError, match=r"[Ss]ignature"):
            _sign_in(worker, stale_sp, alice)

    keyring.retire()
    for worker in (worker_a, worker_b):
        assert _signing_certs(worker.metadata_xml()) == [_pem_body(next_cert)]
        _sign_in(worker, fresh_sp, alice)


def test_redirect_binding_logout_response_is_signed_with_the_active_key(
    rolled_settings: Settings, registry: Registry, sp_pem: tuple[str, str], keyring: Keyring
) -> None:
    registry.add("mail", sp_metadata(sp_pem))
    idp = SamlLayer(rolled_settings, registry)
    keyring.add_next("idp.example.test")
    keyring.switch()
    keyring.retire()  # the original key file is gone: signing must not need it
    # An SP whose metadata carries a certificate must sign its logout messages.
    sp = _sp(sp_pem, idp.metadata_xml(), sign_logout=True)
    slo = {"https": "on", "http_host": "mail.example.test", "script_name": "/saml/slo", "post_data": {}}
    auth = OneLogin_Saml2_Auth(dict(slo, get_data={}), sp)
    url = auth.logout(return_to="/bye", name_id="alice@example.test", session_index="s-1")
    query = urlsplit(url).query
    params = {k: v[0] for k, v in parse_qs(query).items()}
    info = idp.parse_logout_request("redirect", params["SAMLRequest"], params["RelayState"], query_string=query)
    answer = idp.logout_response(info)
    assert isinstance(answer, RedirectTo)
    back = {k: v[0] for k, v in parse_qs(urlsplit(answer.url).query).items()}
    sp_auth = OneLogin_Saml2_Auth(dict(slo, get_data=back), sp)
    sp_auth.process_slo(keep_local_session=True, request_id=auth.get_last_request_id())
    assert sp_auth.get_errors() == [], sp_auth.get_last_error_reason()
    redirect_request(sp)  # and the SP can still start a sign-in from the rolled metadata


# ---- `idp keys rotate` -------------------------------------------------------------------------------


def _config(tmp_path: Path) -> Path:
    config = tmp_path / "idp.toml"
    config.write_text(
        f'[server]\nbase_url = "https://sso.example.test"\ndata_dir = "{tmp_path / "data"}"\n'
        f'[idp]\nkey_file = "{tmp_path / "certs/idp.key"}"\ncert_file = "{tmp_path / "certs/idp.crt"}"\n'
        f'persistent_id_secret_file = "{tmp_path / "certs/nameid.secret"}"\n'
        '[ldap]\nurls = ["ldaps://dc.example.test"]\nbase_dn = "DC=example,DC=test"\n'
        'bind_dn = "svc"\nbind_password = "x"\n'
    )
    return config


def test_cli_rollover_audits_every_step_and_never_prints_a_key(tmp_path: Path) -> None:
    config = _config(tmp_path)
    runner = CliRunner()

    def idp(*args: str):
        return runner.invoke(cli, ["--config", str(config), "keys", *args])

    assert idp("init").exit_code == 0
    refused = idp("rotate", "switch")
    assert refused.exit_code != 0 and "no next key" in refused.output
    outputs = [refused.output]
    for step in ("add", "switch", "retire"):
        done = idp("rotate", step)
        assert done.exit_code == 0, done.output
        outputs.append(done.output)
        if step == "add":
            shown = idp("show")
            assert shown.exit_code == 0, shown.output
            assert "[active]" in shown.output and "[next]" in shown.output
            assert "idp keys rotate switch" in shown.output
            outputs.append(shown.output)
    again = idp("rotate", "retire")
    assert again.exit_code != 0 and "no previous key" in again.output
    reinit = idp("init", "--force")
    assert reinit.exit_code != 0 and "idp keys rotate add" in reinit.output

    def secret_part(text: str) -> str:
        # A PEM key's base64 lines, or the one line of the MFA key `init` makes beside them.
        lines = text.strip().splitlines()
        return "".join(lines[1:-1] if len(lines) > 1 else lines)[:40]

    keys_on_disk = [secret_part(p.read_text()) for p in (tmp_path / "certs").glob("*.key")]
    assert len(keys_on_disk) >= 2 and all(keys_on_disk)  # the signing key left after retire, and the MFA key
    for output in outputs:
        assert "PRIVATE KEY" not in output
        for key in keys_on_disk:
            assert key not in output

    settings = load_settings(config)
    db = Database(settings.database_url)
    try:
        rows = [r for r in AuditTrail(db).recent(20) if r.event.startswith("key_rollover_")]
    finally:
        db.dispose()
    assert [(r.event, r.result) for r in reversed(rows)] == [
        ("key_rollover_switch", "refused"),
        ("key_rollover_add", "success"),
        ("key_rollover_switch", "success"),
        ("key_rollover_retire", "success"),
        ("key_rollover_retire", "refused"),
    ]
    assert all(r.username and r.username.startswith("cli:") for r in rows)
    switch = json.loads(rows[2].detail)
    assert set(switch["before"]) == {"active", "next"} and set(switch["after"]) == {"active", "previous"}
    assert switch["after"]["active"] == switch["before"]["next"]
    assert rows[0].reason == "nothing_to_retire"
    for r in rows:
        assert "PRIVATE" not in (r.detail or "")
