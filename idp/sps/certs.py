"""Certificates an admin pastes into a form: PEM, or the bare base64 body that SaaS consoles show."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from idp.sps.errors import MetadataError

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)
MAX_CERTIFICATE_CHARS = 20_000


def load_pasted_certificate(text: str, *, field: str = "certificate") -> x509.Certificate:
    """One X.509 certificate from PEM or base64 DER; raise MetadataError naming ``field`` when it is neither."""
    raw = text.strip().encode("ascii", "replace")
    if not raw:
        raise MetadataError("no certificate was given", field)
    if len(raw) > MAX_CERTIFICATE_CHARS:
        raise MetadataError(f"longer than {MAX_CERTIFICATE_CHARS} characters; that is not one certificate", field)
    blocks = _PEM.findall(raw)
    if len(blocks) > 1:
        raise MetadataError(f"{len(blocks)} certificates were pasted; give exactly one", field)
    body = blocks[0] if blocks else raw
    if b"PRIVATE KEY" in raw:
        raise MetadataError("this is a private key: paste the certificate, and never the key", field)
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
        return x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError) as exc:
        raise MetadataError(f"not a PEM or base64 DER X.509 certificate: {unreadable(exc)}", field) from None


def unreadable(exc: binascii.Error | ValueError) -> str:
    """Why certificate text could not be read, in words: the decoder's own message (padding arithmetic, an ASN.1
    parser's debug output) tells an admin nothing they can act on."""
    if isinstance(exc, binascii.Error):
        return "the text is not base64; copy the certificate again, whole, from the application's console or metadata"
    return "the base64 holds no X.509 certificate (cut short, or another kind of file); copy the certificate again"


def certificate_body(cert: x509.Certificate) -> str:
    """The base64 DER text that goes inside <ds:X509Certificate>."""
    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode("ascii")


def certificate_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode("ascii")


def check_not_expired(cert: x509.Certificate, field: str, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    if cert.not_valid_after_utc <= now:
        raise MetadataError(
            f"the certificate {cert.subject.rfc4514_string()!r} expired on {cert.not_valid_after_utc:%Y-%m-%d}", field
        )
