"""TOTP (RFC 6238: 6 digits, 30-second steps, SHA-1, as every authenticator app reads a QR code), and the QR
code itself, drawn on the server as SVG so the page needs no script and the CSP stays strict."""

from __future__ import annotations

import time

import pyotp
import segno

STEP_SECONDS = 30
DRIFT_STEPS = 1
"""A code of the step before or after now is accepted too: a phone's clock may be some seconds off."""


def new_secret() -> str:
    """160 random bits in base32, the form authenticator apps take typed or from a QR code."""
    return pyotp.random_base32(32)


def enrolment_uri(secret: str, *, account: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The QR code as an inline SVG element (no XML declaration), dark modules on a white quiet zone."""
    svg: str = segno.make_qr(uri, error="m").svg_inline(scale=5, dark="#000", light="#fff", border=4)
    return svg


def matching_step(secret: str, code: str, *, now: float | None = None) -> int | None:
    """The time step whose code ``code`` is (within the drift allowed), or None. The caller accepts a step
    only once: the step is what makes a code single-use."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    at = time.time() if now is None else now
    totp = pyotp.TOTP(secret)
    current = int(at // STEP_SECONDS)
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if pyotp.utils.strings_equal(totp.at(step * STEP_SECONDS), code):
            return step
    return None
