"""Helpers for the SP registry tests: real certificates, SP metadata built by python3-saml, a real HTTP server."""

from __future__ import annotations

import base64
import contextlib
import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.metadata import OneLogin_Saml2_Metadata

DATA = Path(__file__).resolve().parent.parent / "data"
FAR_FUTURE = "2099-12-31T00:00:00Z"


@functools.cache
def _key() -> rsa.RSAPrivateKey:
    # One key for every test certificate: RSA key generation is the slow part, and nothing here needs two.
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_cert(cn: str = "sp.example.test", *, not_after: datetime | None = None) -> str:
    """A self-signed certificate as the base64 DER body that metadata carries."""
    now = datetime.now(UTC)
    not_after = not_after or now + timedelta(days=365)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_key().public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now, not_after) - timedelta(days=30))
        .not_valid_after(not_after)
        .sign(_key(), hashes.SHA256())
    )
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def sp_metadata(
    entity_id: str = "https://sp.example.test/saml/metadata",
    *,
    acs: str = "https://sp.example.test/saml/acs",
    slo: str | None = "https://sp.example.test/saml/slo",
    cert: str | None = None,
    with_cert: bool = True,
    valid_until: str = FAR_FUTURE,
    authn_requests_signed: bool = False,
    want_assertions_signed: bool = True,
    display_name: str | None = None,
) -> bytes:
    """SP metadata as python3-saml (an SP library independent of ours) writes it."""
    sp: dict = {
        "entityId": entity_id,
        "assertionConsumerService": {"url": acs, "binding": OneLogin_Saml2_Constants.BINDING_HTTP_POST},
        "NameIDFormat": OneLogin_Saml2_Constants.NAMEID_EMAIL_ADDRESS,
    }
    if slo:
        sp["singleLogoutService"] = {"url": slo, "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT}
    organization = {"en": {"name": "org", "displayname": display_name, "url": "https://org.example"}}
    xml = OneLogin_Saml2_Metadata.builder(
        sp,
        authnsign=authn_requests_signed,
        wsign=want_assertions_signed,
        valid_until=valid_until,
        organization=organization if display_name else None,
    )
    if with_cert:
        xml = OneLogin_Saml2_Metadata.add_x509_key_descriptors(xml, cert or make_cert())
    return xml.encode() if isinstance(xml, str) else xml


def write_config(tmp_path: Path, *, allow_http_loopback: bool = True) -> Path:
    """The smallest IDP_CONFIG the CLI accepts, with its database and metadata under tmp_path."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "idp.toml"
    config.write_text(
        f"""
[server]
data_dir = "{tmp_path / "var"}"

[ldap]
urls = ["ldaps://127.0.0.1"]
base_dn = "DC=corp,DC=example,DC=test"
bind_dn = "svc-sso@corp.example.test"
bind_password = "not-used-by-these-tests"

[metadata]
dir = "{tmp_path / "metadata"}"
allow_http_loopback = {str(allow_http_loopback).lower()}
"""
    )
    return config


@dataclass
class Route:
    body: bytes
    status: int = 200
    content_type: str = "application/samlmetadata+xml"
    delay: float = 0.0
    """Seconds to wait before answering: longer than the client's timeout makes it give up."""
    location: str | None = None
    send_length: bool = True
    """False streams the body with no Content-Length, so only counting the bytes can stop a huge one."""


@contextmanager
def http_server(routes: dict[str, Route]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving ``routes``; yields its base URL."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            # Waits on the event, not time.sleep, so that shutting down does not wait out the delay.
            stop.wait(route.delay)
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            if route.send_length:
                self.send_header("Content-Length", str(len(route.body)))
            if route.location:
                self.send_header("Location", route.location)
            self.end_headers()
            # The client may have given up (timeout, size limit): that is what some tests want.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(route.body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
