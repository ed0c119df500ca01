"""The JWKS follows the SAML keyring through a rollover: a key is published before it signs ID tokens, and
stays published after the switch until it is retired, so a client's cached JWKS verifies every token."""

from __future__ import annotations

from pathlib import Path

from idp.keys.keyring import Keyring
from idp.keys.material import init_keys
from idp.oidc.signing import SigningKeys


def test_the_jwks_publishes_both_keys_while_a_rollover_is_in_progress(tmp_path: Path) -> None:
    init_keys(tmp_path / "idp.key", tmp_path / "idp.crt", tmp_path / "persistent-id.secret", "idp.example.test")
    keyring = Keyring(tmp_path / "idp.key", tmp_path / "idp.crt")
    keys = SigningKeys(keyring)

    def kids() -> list[str]:
        return [k["kid"] for k in keys.jwks()["keys"]]

    first = keys.active().kid
    assert kids() == [first]
    assert all("d" not in k and k["alg"] == "RS256" and k["use"] == "sig" for k in keys.jwks()["keys"])

    keyring.add_next("idp.example.test")
    assert keys.active().kid == first  # published, not yet signing
    (second,) = set(kids()) - {first}
    assert kids() == [first, second]

    keyring.switch()
    assert keys.active().kid == second
    assert kids() == [second, first]  # the old key still verifies tokens signed a moment ago

    keyring.retire()
    assert kids() == [second]
