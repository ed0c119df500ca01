"""TOTP secrets are sealed (Fernet: AES-128-CBC with HMAC-SHA256) under a key file of their own, so a copy of
the database alone signs nobody in.

The key is made by `idp keys init`, or at the first enrolment when the file does not exist, with mode 0600,
atomically, and read once; it is never printed or logged. Losing it makes every enrolled factor useless
(people then enrol again after an admin reset), so it belongs in the same backup as the signing key.
"""

from __future__ import annotations

import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from idp.keys.material import write_atomically


class SealError(Exception):
    """The MFA key file cannot be read or made, or a sealed secret does not open with it; says which."""


class Sealer:
    def __init__(self, key_file: Path) -> None:
        self._key_file = key_file
        self._fernet: Fernet | None = None
        self._lock = threading.Lock()

    def seal(self, secret: str) -> str:
        return self._key().encrypt(secret.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._key().decrypt(sealed.encode("ascii")).decode()
        except InvalidToken:
            raise SealError(
                f"a stored TOTP secret does not open with {self._key_file} (was the key replaced?)"
            ) from None

    def _key(self) -> Fernet:
        # Read lazily: an IdP without enrolled factors never needs the file.
        with self._lock:
            if self._fernet is None:
                self._fernet = Fernet(ensure_key(self._key_file))
            return self._fernet


def ensure_key(key_file: Path) -> bytes:
    """The key in ``key_file``, made first when the file does not exist."""
    if not key_file.exists():
        try:
            write_atomically(key_file, Fernet.generate_key() + b"\n", mode=0o600)
        except OSError as exc:
            raise SealError(f"cannot write the MFA key file {key_file}: {exc.strerror}") from None
    try:
        key = key_file.read_bytes().strip()
        Fernet(key)
    except OSError as exc:
        raise SealError(f"cannot read the MFA key file {key_file}: {exc.strerror}") from None
    except ValueError:
        raise SealError(f"{key_file} does not hold an MFA key (32 url-safe base64-encoded bytes)") from None
    return key
