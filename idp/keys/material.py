"""The IdP's signing key, its self-signed certificate and the persistent-NameID secret.

SPs trust our certificate by pinning it from our metadata, so a self-signed one is normal for SAML; what
matters is that the private key and the NameID secret never leave this machine: both are written with mode
0600, atomically (a crash never leaves half a key behind), and never printed or logged.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

RSA_KEY_BITS = 2048
PERSISTENT_SECRET_BYTES = 32


class KeysError(Exception):
    """The key material cannot be created or read; the message says which file and why."""


class KeysExist(KeysError):
    """init_keys was asked to create a key or certificate that already exists, without force."""


@dataclass(frozen=True)
class KeyInfo:
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    sha256_fingerprint: str
    """Colon-separated upper-case hex, the form SP admin consoles show."""
    cert_file: Path


def init_keys(
    key_file: Path,
    cert_file: Path,
    secret_file: Path,
    common_name: str,
    *,
    days: int = 3650,
    force: bool = False,
) -> KeyInfo:
    """Create an RSA-2048 key and a self-signed certificate; create the NameID secret when it is missing.

    The NameID secret is never replaced, not even with ``force``: every persistent NameID an SP has stored
    is derived from it, so a new one would turn every employee into a stranger at every SP.
    """
    if days < 1:
        raise KeysError("the certificate must be valid for at least one day")
    existing = [p for p in (key_file, cert_file) if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise KeysExist(f"{names} already exists; SPs trust the current certificate, use --force to replace it")

    key_pem, cert_pem = new_key_and_certificate(common_name, days=days)
    write_atomically(key_file, key_pem.encode(), mode=0o600)
    write_atomically(cert_file, cert_pem.encode(), mode=0o644)
    if not secret_file.exists():
        write_atomically(secret_file, secrets.token_hex(PERSISTENT_SECRET_BYTES).encode() + b"\n", mode=0o600)
    return load_key_info(cert_file)


def new_key_and_certificate(common_name: str, *, days: int = 3650) -> tuple[str, str]:
    """(private key PEM, self-signed certificate PEM): RSA-2048, SHA-256, for signing SAML messages.
    Also used for the demo webmail SP's own key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert = _self_signed(key, common_name, days)
    return key_pem.decode(), cert.public_bytes(serialization.Encoding.PEM).decode()


def load_key_info(cert_file: Path) -> KeyInfo:
    """What an admin needs to compare with an SP's console: subject, validity and SHA-256 fingerprint."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except FileNotFoundError:
        raise KeysError(f"{cert_file} does not exist; run `idp keys init`") from None
    except ValueError as exc:
        raise KeysError(f"{cert_file} is not a PEM certificate: {exc}") from None
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return KeyInfo(
        subject=cert.subject.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        sha256_fingerprint=":".join(digest[i : i + 2] for i in range(0, len(digest), 2)),
        cert_file=cert_file,
    )


def load_signing_key(key_file: Path) -> rsa.RSAPrivateKey:
    """The private key that signs our messages; the error names the file, never its content."""
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    except FileNotFoundError:
        raise KeysError(f"{key_file} does not exist; run `idp keys init`") from None
    except (ValueError, TypeError):
        raise KeysError(f"{key_file} is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeysError(f"{key_file} must hold an RSA key")
    return key


def read_persistent_secret(secret_file: Path) -> bytes:
    """The HMAC key for persistent NameIDs (stored as hex)."""
    try:
        text = secret_file.read_text().strip()
    except FileNotFoundError:
        raise KeysError(f"{secret_file} does not exist; run `idp keys init`") from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise KeysError(f"{secret_file} must hold hex digits only") from None
    if len(secret) < 16:
        raise KeysError(f"{secret_file} is too short to be a secret (need at least 16 bytes)")
    return secret


def _self_signed(key: rsa.RSAPrivateKey, common_name: str, days: int) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    # Back-date a little so that an SP whose clock runs behind does not see a certificate from the future.
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write to a temporary file in the same directory, created with the final mode, then rename over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)  # mkstemp already creates 0600; this makes the certificate world-readable
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
