"""Holds a cross-site POST for one redirect, so the browser comes back with its SameSite=Lax cookie.

An SP's auto-POST to /saml/sso or /saml/slo is a cross-site POST: browsers do not send a Lax cookie with
it, so we would not see the person's SSO session and would ask for the password again. We answer 303 to a
GET on our own site, which does carry the cookie, and keep the request here for a few minutes under a random
key meanwhile. The store is the session backend's (files, or Redis for several nodes) so any worker or node
can pick it up.

What is kept is the request the SAML layer already accepted (size, SP, signature, freshness, and its ID
used up in the replay cache), never the posted message: a POST that fails a check stores nothing, and the
resumed GET does not parse the message a second time, which the replay cache would refuse.
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import TypeVar

from cachelib import BaseCache

from idp.saml.messages import AuthnRequestInfo, LogoutRequestInfo, LogoutResponseInfo

TTL_SECONDS = 300

Parked = TypeVar("Parked", AuthnRequestInfo, LogoutRequestInfo, LogoutResponseInfo)


class PendingPosts:
    def __init__(self, cache: BaseCache) -> None:
        self._cache = cache

    def put(self, accepted: AuthnRequestInfo | LogoutRequestInfo | LogoutResponseInfo) -> str:
        key = secrets.token_urlsafe(24)
        entry = {"kind": type(accepted).__name__, "fields": dataclasses.asdict(accepted)}
        self._cache.set(f"pending:{key}", entry, timeout=TTL_SECONDS)
        return key

    def pop(self, key: str, kind: type[Parked]) -> Parked | None:
        """The request once, if it was parked as a ``kind``: a replayed key finds nothing, and a key taken
        from /saml/sso does not resume at /saml/slo."""
        if not key or len(key) > 64:
            return None
        name = f"pending:{key}"
        entry = self._cache.get(name)
        if entry is None:
            return None
        self._cache.delete(name)
        if not isinstance(entry, dict) or entry.get("kind") != kind.__name__ or not isinstance(entry["fields"], dict):
            return None
        fields = entry["fields"]
        if kind is LogoutRequestInfo and isinstance(fields.get("session_indexes"), list):
            fields["session_indexes"] = tuple(fields["session_indexes"])  # MessagePack has no tuples
        try:
            return kind(**fields)
        except TypeError:  # parked by a version with other fields: the SP starts again
            return None
