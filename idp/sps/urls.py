"""The rules for URLs we talk to or send users to: https, or plain http only on this machine; and which
addresses a download for an outside party may connect to."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

_SHARED = ipaddress.ip_network("100.64.0.0/10")


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


def address_problem(address: str, *, allow_loopback: bool) -> str | None:
    """Why we must not connect to ``address`` (an IP literal) for an outside party, or None when it is public.

    A metadata URL is typed by an admin but served by a stranger, who also controls its redirects and DNS:
    without this check it would make the IdP probe the internal network or a cloud metadata service."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address (this machine)"
    for kind, test in (
        ("an unspecified address", ip.is_unspecified),
        ("a link-local address (cloud metadata services live there)", ip.is_link_local),
        ("a multicast address", ip.is_multicast),
        ("a shared address (carrier-grade NAT, 100.64.0.0/10)", ip in _SHARED),
        ("a reserved address", ip.is_reserved),
        ("a private address", ip.is_private),
    ):
        if test:
            return kind
    return None if ip.is_global else "not a public address"
