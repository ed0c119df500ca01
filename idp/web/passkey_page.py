"""What the pages that use a passkey share: the Content-Security-Policy that lets our one static script run,
and the challenge of a sign-in with a passkey, kept in the server-side session between the page that offers
it and the POST that answers it (each challenge answers once)."""

from __future__ import annotations

from uuid import UUID

from flask import session
from werkzeug.wrappers import Response as HttpResponse

from idp.mfa.passkeys import MAX_RESPONSE, PasskeyAssertion
from idp.web.csp import PAGE_POLICY
from idp.web.services import services

SCRIPT_CSP = PAGE_POLICY + "; script-src 'self'"
_ASSERTION = "passkey_assertion"


def allow_script(resp: HttpResponse) -> HttpResponse:
    resp.headers["Content-Security-Policy"] = SCRIPT_CSP
    return resp


def offer_assertion(guid: UUID) -> str | None:
    """Options for navigator.credentials.get() with the person's passkeys (None when they have none)."""
    ceremony = services().passkeys.authentication(guid)
    if ceremony is None:
        return None
    session[_ASSERTION] = {"guid": str(guid), "challenge": ceremony.challenge}
    return ceremony.options_json


def take_assertion(guid: UUID, posted: str) -> PasskeyAssertion | None:
    """The posted answer with the challenge this session was given (used up), or None when none was."""
    pending = session.pop(_ASSERTION, None)
    if not isinstance(pending, dict) or pending.get("guid") != str(guid) or not posted:
        return None
    return PasskeyAssertion(posted[:MAX_RESPONSE], pending["challenge"])
