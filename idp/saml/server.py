"""Build the pysaml2 Server for our IdP from Settings, the keyring and the SP registry's metadata files."""

from __future__ import annotations

from pathlib import Path

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.server import Server
from saml2.sigver import get_xmlsec_binary

from idp.saml import backend
from idp.saml.algorithms import DIGEST_ALGORITHM, SIGNATURE_ALGORITHM
from idp.saml.attributes import converter
from idp.saml.keyring import Keyring, KeyringState
from idp.saml.nameid import FORMAT_URIS
from idp.settings import Settings

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
