"""The one rule for URLs we talk to or send users to: https, or plain http only on this machine."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; a name that merely resolves to loopback does not count."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str, *, allow_http_loopback: bool) -> str | None:
    """Why ``url`` is not acceptable, or None when it is."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError as exc:
        return f"{url!r} is not a valid URL ({exc})"
    if not host:
        return f"{url!r} has no host name"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http":
        if allow_http_loopback and is_loopback_host(host):
            return None
        hint = " (plain http is allowed only on loopback addresses)" if allow_http_loopback else ""
        return f"{url!r} must use https{hint}"
    return f"{url!r} must be an https URL"
