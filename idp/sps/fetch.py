"""Download an SP's metadata from its URL, with every limit an untrusted server could otherwise stretch."""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from idp.sps.errors import FetchError, FetchHttpError, FetchNotXml, FetchRefused, FetchTimeout, FetchTooLarge
from idp.sps.urls import address_problem

MAX_REDIRECTS = 5
_ACCEPT = {"Accept": "application/samlmetadata+xml, application/xml;q=0.9, text/xml;q=0.8"}
_MEDIA_TYPE = re.compile(r"^[\w.+-]{1,60}/[\w.+-]{1,60}$")

Resolver = Callable[[str, int], list[str]]
"""(host, port) -> the IP addresses to connect to; tests pass one that answers without DNS."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def fetch_metadata(
    url: str,
    *,
    allow_http: bool = False,
    timeout: float = 10,
    max_bytes: int = 2_000_000,
    resolver: Resolver = system_resolver,
    transport: httpx.BaseTransport | None = None,
) -> bytes:
    """GET ``url`` from a public address over https and return the body if it looks like XML.

    ``allow_http`` is the admin's explicit choice for this one URL: plain http, and addresses on this
    machine (loopback), are then accepted too; private and link-local networks never are.

    ``timeout`` bounds the whole download, not just each socket read, so a server that trickles bytes
    cannot hold the command forever. The body never appears in an error: it is whatever a stranger chose to
    send, and errors end up on the console and in the audit trail. ``transport`` replaces the network (tests
    answer with an httpx.MockTransport).
    """
    deadline = time.monotonic() + timeout
    with _get_following_redirects(url, deadline, allow_http, resolver, transport) as (response, final_url):
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchTooLarge(f"{final_url}: the server announces {declared} bytes; the limit is {max_bytes}")
        body = _read_limited(response, final_url, max_bytes, deadline)
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "text/html":
        raise FetchNotXml(f"{final_url}: the server sent an HTML page, not SAML metadata")
    if not body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        shown_type = content_type if _MEDIA_TYPE.match(content_type) else "none or unreadable"
        raise FetchNotXml(
            f"{final_url}: the answer is not XML ({len(body)} bytes, Content-Type {shown_type}); "
            "is this the SP's metadata URL?"
        )
    return body


def redacted(url: str) -> str:
    """The URL as logs and the audit trail may keep it: without user info and query, which can hold secrets
    (many SPs put an access token in their metadata URL)."""
    if not url.startswith(("http://", "https://")):
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _connect_problem(exc: Exception) -> str:
    """Why a connection failed, in words an admin can act on. The client's own text (an errno, an OpenSSL
    reason, sometimes the URL with its query) is not shown: it repeats what we say, and may quote a secret."""
    text = str(exc)
    if isinstance(exc, httpx.InvalidURL):
        return "the URL is not valid; check it"
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return "its TLS certificate is not trusted (self-signed, expired, or issued for another name)"
    if "SSL" in text or "TLS" in text:
        return "no TLS connection could be agreed with the server"
    if "refused" in text.lower():
        return "the server refused the connection; check the URL and that the server is running"
    if "unreachable" in text.lower():
        return "the network cannot reach the server from here"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server closed the connection without a usable HTTP answer"
    return "no connection could be made to the server; check the URL and that the server is running"


@contextmanager
def _get_following_redirects(
    url: str, deadline: float, allow_http: bool, resolver: Resolver, transport: httpx.BaseTransport | None
) -> Iterator[tuple[httpx.Response, str]]:
    """The first answer that is not a redirect, its body not read yet, and the hop as errors name it;
    refused unless it is a 200."""
    # Redirects are followed by hand so that every hop obeys the scheme and address rules, not just the first.
    for hop in range(MAX_REDIRECTS + 1):
        where = redacted(url) if hop == 0 else f"{redacted(url)} (redirect {hop})"
        request_url, host = _pinned_request_url(url, where, allow_http=allow_http, resolver=resolver)
        # No proxy from the environment: it would connect on our behalf to whatever the name means to it,
        # after the address was checked here.
        with httpx.Client(trust_env=False, transport=transport) as client:
            try:
                request = client.build_request(
                    "GET",
                    request_url,
                    headers=_ACCEPT | {"Host": _host_header(url)},
                    timeout=max(0.001, deadline - time.monotonic()),
                    # The certificate is checked against the name, though the connection goes to the address.
                    extensions={"sni_hostname": host},
                )
                response = client.send(request, stream=True)
            except httpx.TimeoutException:
                raise FetchTimeout(f"{where}: no answer within the time limit") from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise FetchError(f"{where} cannot be downloaded: {_connect_problem(exc)}") from None
            try:
                if response.is_redirect:
                    url = urljoin(url, response.headers["Location"])
                    continue
                if response.status_code != 200:
                    # The standard phrase, not the server's: what it sends is not shown anywhere.
                    phrase = httpx.codes.get_reason_phrase(response.status_code)
                    raise FetchHttpError(
                        f"{where}: the server answered HTTP {response.status_code} {phrase}".rstrip(),
                        response.status_code,
                    )
                yield response, where
                return
            finally:
                response.close()
    raise FetchError(f"{redacted(url)}: more than {MAX_REDIRECTS} redirects")


def _pinned_request_url(url: str, where: str, *, allow_http: bool, resolver: Resolver) -> tuple[str, str]:
    """``url`` with its host replaced by the one address it is downloaded from, once that address passed the
    check; and the host name. Resolving once and connecting to that very address is what defeats a name
    that answers a public address to the check and an internal one to the connection."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise FetchRefused(f"{where}: not a valid URL ({exc})") from None
    if parts.scheme not in ("https", "http") or not host:
        raise FetchRefused(f"{where}: must be an https URL")
    if parts.scheme == "http" and not allow_http:
        raise FetchRefused(f"{where}: must use https (plain http only where an admin allowed it for this URL)")
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        try:
            addresses = resolver(host, port)
        except (OSError, UnicodeError):
            raise FetchError(
                f"{where} cannot be downloaded: the name {host} is not known to DNS; check the URL"
            ) from None
    if not addresses:
        raise FetchError(f"{where} cannot be downloaded: the name {host} has no address in DNS; check the URL")
    for address in addresses:
        if problem := address_problem(address, allow_loopback=allow_http):
            named = f"{address} is" if address == host else f"{host!r} resolves to {address}, which is"
            raise FetchRefused(
                f"{where}: refused: {named} {problem}; metadata is downloaded from public addresses only"
            )
    return str(httpx.URL(url).copy_with(host=addresses[0])), host


def _host_header(url: str) -> str:
    return httpx.URL(url).netloc.decode("ascii")


def _read_limited(response: httpx.Response, url: str, max_bytes: int, deadline: float) -> bytes:
    body = bytearray()
    try:
        # Chunks as they arrive (no chunk size: that would wait for it to fill), so the deadline is looked at
        # after every read.
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise FetchTooLarge(f"{redacted(url)}: the answer is larger than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise FetchTimeout(f"{redacted(url)}: the download did not finish within the time limit")
    except httpx.TimeoutException:
        raise FetchTimeout(f"{redacted(url)}: the server stopped sending before the download finished") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{redacted(url)}: the download broke off ({exc.__class__.__name__})") from None
    return bytes(body)
