"""Holds a cross-site POST for one redirect, so the browser comes back with its SameSite=Lax cookie.

An SP's auto-POST to /saml/sso or /saml/slo is a cross-site POST: browsers do not send a Lax cookie with
it, so we would not see the person's SSO session and would ask for the password again. We keep the
posted fields here for a few minutes under a random key and answer 303 to a GET on our own site, which
does carry the cookie. The store is the session backend's (files, or Redis for several nodes) so any
worker or node can pick it up.
"""

from __future__ import annotations

import secrets

from cachelib import BaseCache

TTL_SECONDS = 300


class PendingPosts:
    def __init__(self, cache: BaseCache) -> None:
        self._cache = cache

    def put(self, fields: dict[str, str]) -> str:
        key = secrets.token_urlsafe(24)
        self._cache.set(f"pending:{key}", fields, timeout=TTL_SECONDS)
        return key

    def pop(self, key: str) -> dict[str, str] | None:
        """The fields once: a replayed key finds nothing."""
        if not key or len(key) > 64:
            return None
        name = f"pending:{key}"
        fields = self._cache.get(name)
        if fields is not None:
            self._cache.delete(name)
        return fields
