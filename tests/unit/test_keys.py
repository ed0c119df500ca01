"""Key material: modes, refusal to overwrite, the NameID secret survives --force, `idp keys` never prints the key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from idp.cli import cli
from idp.keys.material import KeysError, KeysExist, init_keys, load_key_info, load_signing_key


def _paths(tmp_path: Path) -> tuple[Path, Path, Path]:
    return tmp_path / "certs" / "idp.key", tmp_path / "certs" / "idp.crt", tmp_path / "certs" / "nameid.secret"


def test_key_and_secret_are_private_and_certificate_is_described(tmp_path: Path) -> None:
    key, cert, secret = _paths(tmp_path)
    info = init_keys(key, cert, secret, "idp.example.test", days=30)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(bytes.fromhex(secret.read_text().strip())) == 32
    assert info.subject == "CN=idp.example.test"
    assert 29 <= (info.not_after - info.not_before).days <= 31
    assert info == load_key_info(cert)
    assert not list(key.parent.glob(".*"))  # no temporary files left behind


def test_existing_keys_are_not_overwritten_without_force_and_secret_survives_force(tmp_path: Path) -> None:
    key, cert, secret = _paths(tmp_path)
    first = init_keys(key, cert, secret, "idp.example.test")
    old_secret, old_key = secret.read_text(), key.read_bytes()
    with pytest.raises(KeysExist):
        init_keys(key, cert, secret, "idp.example.test")
    assert key.read_bytes() == old_key
    second = init_keys(key, cert, secret, "idp.example.test", force=True)
    assert second.sha256_fingerprint != first.sha256_fingerprint and key.read_bytes() != old_key
    assert secret.read_text() == old_secret


def test_cli_init_and_show_never_print_the_key(tmp_path: Path) -> None:
    config = tmp_path / "idp.toml"
    config.write_text(
        '[server]\nbase_url = "https://sso.example.test"\n'
        '[ldap]\nurls = ["ldaps://dc.example.test"]\nbase_dn = "DC=example,DC=test"\n'
        'bind_dn = "svc"\nbind_password = "x"\n'
    )
    runner = CliRunner()
    created = runner.invoke(cli, ["--config", str(config), "keys", "init", "--days", "10"])
    assert created.exit_code == 0, created.output
    # The MFA key is made with the others, so that a copy of certs/ for another node carries it, and a new
    # signing key never replaces it (that would make every enrolled authenticator useless).
    mfa_key = tmp_path / "certs" / "mfa.key"
    assert mfa_key.stat().st_mode & 0o777 == 0o600
    sealed = mfa_key.read_bytes()
    again = runner.invoke(cli, ["--config", str(config), "keys", "init"])
    assert again.exit_code != 0 and "--force" in again.output
    forced = runner.invoke(cli, ["--config", str(config), "keys", "init", "--force"])
    assert forced.exit_code == 0, forced.output
    assert mfa_key.read_bytes() == sealed
    assert sealed.strip().decode() not in created.output + forced.output
    shown = runner.invoke(cli, ["--config", str(config), "keys", "show"])
    assert shown.exit_code == 0, shown.output
    assert "CN=sso.example.test" in shown.output and "sha256:" in shown.output
    key_text = (tmp_path / "certs" / "idp.key").read_text()
    body = "".join(key_text.splitlines()[1:-1])
    for output in (created.output, shown.output):
        assert "PRIVATE KEY" not in output and body[:40] not in output


def test_signing_key_errors_name_the_file_and_never_its_content(tmp_path: Path) -> None:
    key, cert, secret = _paths(tmp_path)
    init_keys(key, cert, secret, "idp.example.test")
    assert load_signing_key(key).key_size == 2048
    with pytest.raises(KeysError, match="does not exist"):
        load_signing_key(tmp_path / "missing.key")
    with pytest.raises(KeysError, match="not an unencrypted PEM private key") as err:
        load_signing_key(cert)  # a certificate is not a key
    assert "CERTIFICATE" not in str(err.value)
