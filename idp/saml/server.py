"""The pysaml2 Server for our IdP, built from Settings, the keyring and the SP registry's metadata files.

One SamlServer per process. It rebuilds the pysaml2 Server when the registry's or the keyring's version
string changes (a cheap compare on every call), so an SP added with `idp sp add`, or a key rollover step
taken in the console, reaches every worker without a restart.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml
from saml2.config import IdPConfig
from saml2.server import Server
from saml2.sigver import get_xmlsec_binary

from idp.keys.keyring import Keyring, KeyringState
from idp.keys.material import load_signing_key
from idp.saml import backend
from idp.saml.algorithms import DIGEST_ALGORITHM, SIGNATURE_ALGORITHM
from idp.saml.attributes import converter
from idp.saml.metadata import idp_metadata_xml
from idp.saml.signing import Signer
from idp.settings import Settings
from idp.sps.source import SpSource
from idp.sps.vocabulary import FORMAT_URIS

log = logging.getLogger(__name__)

BINDINGS = (BINDING_HTTP_REDIRECT, BINDING_HTTP_POST)


def sso_url(settings: Settings) -> str:
    return f"{settings.server.base_url}/saml/sso"


def slo_url(settings: Settings) -> str:
    return f"{settings.server.base_url}/saml/slo"


def idp_config(settings: Settings, metadata_files: list[Path], keys: KeyringState | None = None) -> IdPConfig:
    """pysaml2's configuration, built in code: there is no pysaml2 config file to keep in sync.

    ``keys`` is the keyring state to use (read now when None): the active key signs, and every published
    certificate (active first, then the next or previous one) goes into our metadata as a signing key."""
    keys = keys or Keyring.for_settings(settings).state()
    others = [str(pair.cert_file) for role, pair in keys.published() if role != "active"]
    config = IdPConfig()
    config.load(
        {
            "entityid": settings.entity_id,
            "key_file": str(keys.active.key_file),
            "cert_file": str(keys.active.cert_file),
            "additional_cert_files": others or None,
            "xmlsec_binary": get_xmlsec_binary(),
            "metadata": {"local": [str(f) for f in metadata_files]},
            "accepted_time_diff": settings.idp.clock_skew,
            "signing_algorithm": SIGNATURE_ALGORITHM,
            "digest_algorithm": DIGEST_ALGORITHM,
            "organization": {
                "name": settings.idp.organization,
                "display_name": settings.idp.organization,
                "url": settings.server.base_url,
            },
            "service": {
                "idp": {
                    "name": settings.idp.organization,
                    "endpoints": {
                        "single_sign_on_service": [(sso_url(settings), b) for b in BINDINGS],
                        "single_logout_service": [(slo_url(settings), b) for b in BINDINGS],
                    },
                    "name_id_format": list(FORMAT_URIS.values()),
                    "want_authn_requests_signed": False,
                    "sign_response": True,
                    "sign_assertion": True,
                },
            },
        }
    )
    config.attribute_converters = [converter()]
    return config


def build_server(settings: Settings, metadata_files: list[Path], keys: KeyringState | None = None) -> Server:
    """A pysaml2 Server whose signatures are made and checked in process (see backend.py)."""
    config = idp_config(settings, metadata_files, keys)
    server = Server(config=config)
    backend.install(server.sec, config.xmlsec_binary)
    return server


@dataclass(frozen=True)
class Loaded:
    version: str
    server: Server
    metadata: bytes
    redirect_key: rsa.RSAPrivateKey
    """The active signing key, for query signatures (Redirect binding) that pysaml2 does not make for us."""
    signer: Signer
    """The active key again, for the SSO responses we build and sign ourselves (response_tree.py)."""

    def issuer(self) -> saml.Issuer:
        """The Issuer of everything we send: our entityID, in the entity format."""
        return saml.Issuer(text=self.server.config.entityid, format=saml.NAMEID_FORMAT_ENTITY)


class SamlServer:
    def __init__(self, settings: Settings, sps: SpSource) -> None:
        self._settings = settings
        self._sps = sps
        self._lock = threading.Lock()
        self._loaded: Loaded | None = None
        self._keyring = Keyring.for_settings(settings)
        self.current()  # a missing key stops the process, not a sign-in

    def current(self) -> Loaded:
        # A key rollover step in any process (console or CLI) changes the keyring's version just as
        # `idp sp add` changes the registry's: every worker rebuilds on its next request.
        version = f"{self._sps.version()}/{self._keyring.version()}"
        loaded = self._loaded
        if loaded is not None and loaded.version == version:
            return loaded
        with self._lock:
            loaded = self._loaded
            if loaded is None or loaded.version != version:
                keys = self._keyring.state()
                server = build_server(self._settings, self._sps.metadata_files(), keys)
                metadata = idp_metadata_xml(server.config, sign_with=server.sec)
                active = keys.active
                loaded = Loaded(
                    version,
                    server,
                    metadata,
                    load_signing_key(active.key_file),
                    Signer(active.key_file, active.cert_file),
                )
                self._loaded = loaded
                log.info("SAML server loaded (SP registry and keyring version %s)", version)
        return loaded

    def metadata_xml(self) -> bytes:
        """Our signed IdP metadata."""
        return self.current().metadata

    def encryption_certificates(self, sp_entity_id: str) -> list[str]:
        """Base64 certificates from the SP's KeyDescriptors with use="encryption" or no use at all."""
        try:
            return [cert for _, cert in self.current().server.metadata.certs(sp_entity_id, "spsso", "encryption")]
        except KeyError:
            return []

    def can_encrypt(self, sp_entity_id: str) -> bool:
        """Whether the SP's metadata holds a certificate we can encrypt assertions to."""
        return bool(self.encryption_certificates(sp_entity_id))
