"""Recovery codes: ten per enrolment, shown once, each good for one sign-in. Each has 50 random bits, so one
SHA-256 (not a slow password hash) is enough to store it: nobody can search that space from the digest."""

from __future__ import annotations

import hashlib
import secrets

COUNT = 10
_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read from paper
_LENGTH = 10


def new_codes() -> list[str]:
    """Codes as shown: two groups of five ("abcde-fghjk")."""
    out = []
    for _ in range(COUNT):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))
        out.append(f"{raw[:5]}-{raw[5:]}")
    return out


def digest(code: str) -> str:
    """What is stored and compared: the code without spaces, dashes or case."""
    clean = "".join(c for c in code.casefold() if c.isalnum())
    return hashlib.sha256(clean.encode()).hexdigest()


def looks_like_recovery_code(code: str) -> bool:
    clean = "".join(c for c in code.casefold() if c.isalnum())
    return len(clean) == _LENGTH and not clean.isdigit()
