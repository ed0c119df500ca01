"""The keys ID tokens are signed with: the SAML keyring's (idp.keys), so one rollover moves both.

The JWKS publishes every key the keyring publishes (the active one, and the next or previous one during a
rollover), so a client that caches our JWKS verifies tokens across a switch. Each key's ``kid`` is its RFC
7638 thumbprint. Keys are read again only when the keyring's manifest changes.
"""

from __future__ import annotations

import threading

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import DictKey, KeyParameters, KeySet, KeySetSerialization, RSAKey

from idp.keys.keyring import Keyring

_PARAMETERS: KeyParameters = {"use": "sig", "alg": "RS256"}


class SigningKeys:
    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._lock = threading.Lock()
        self._version: str | None = None
        self._active: RSAKey | None = None
        self._published: list[DictKey] = []

    def active(self) -> RSAKey:
        """The private key ID tokens are signed with now, its ``kid`` set."""
        self._reload()
        assert self._active is not None
        return self._active

    def jwks(self) -> KeySetSerialization:
        self._reload()
        return {"keys": list(self._published)}

    def verifying_keys(self) -> KeySet:
        """Every published public key: what a client verifies our ID tokens with."""
        return KeySet.import_key_set(self.jwks())

    def _reload(self) -> None:
        version = self._keyring.version()
        if version == self._version:
            return
        with self._lock:
            state = self._keyring.state()
            active = RSAKey.import_key(state.active.key_file.read_bytes(), _PARAMETERS)
            active.ensure_kid()
            published = []
            for _, pair in state.published():
                public = x509.load_pem_x509_certificate(pair.cert_file.read_bytes()).public_key()
                pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                key = RSAKey.import_key(pem, _PARAMETERS)
                key.ensure_kid()
                published.append(key.as_dict(private=False))
            self._active, self._published, self._version = active, published, version
