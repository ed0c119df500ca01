"""Download an SP's metadata from its URL, with every limit an untrusted server could otherwise stretch."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from idp.sps.errors import FetchError, FetchHttpError, FetchNotXml, FetchRefused, FetchTimeout, FetchTooLarge
from idp.sps.urls import is_loopback_host, url_problem

MAX_REDIRECTS = 5
_ACCEPT = {"Accept": "application/samlmetadata+xml, application/xml;q=0.9, text/xml;q=0.8"}


def fetch_metadata(url: str, *, timeout: float = 10, max_bytes: int = 2_000_000) -> bytes:
    """GET ``url`` (https, or http on loopback) and return the body if it looks like XML.

    ``timeout`` bounds the whole download, not just each socket read, so a server that trickles bytes
    cannot hold the command forever.
    """
    deadline = time.monotonic() + timeout
    with _get_following_redirects(url, deadline) as response:
        final_url = str(response.url)
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchTooLarge(
                f"{redacted(final_url)}: the server announces {declared} bytes; the limit is {max_bytes}"
            )
        body = _read_limited(response, final_url, max_bytes, deadline)
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "text/html":
        raise FetchNotXml(f"{redacted(final_url)}: the server sent an HTML page, not SAML metadata")
    if not body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        raise FetchNotXml(f"{redacted(final_url)}: the answer is not XML (it starts with {body[:40]!r})")
    return body


def redacted(url: str) -> str:
    """The URL as logs and the audit trail may keep it: without user info and query, which can hold secrets
    (many SPs put an access token in their metadata URL)."""
    if not url.startswith(("http://", "https://")):
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _scrub(text: str, url: str) -> str:
    """An HTTP client's message may quote the URL with its query; take out the query and any user info."""
    parts = urlsplit(url)
    for secret in (parts.query, parts.netloc.rpartition("@")[0]):
        if secret:
            text = text.replace(secret, "…")
    return text


@contextmanager
def _get_following_redirects(url: str, deadline: float) -> Iterator[httpx.Response]:
    """The first answer that is not a redirect, its body not read yet; refused unless it is a 200."""
    # Redirects are followed by hand so that every hop obeys the https rule, not just the first URL.
    for _ in range(MAX_REDIRECTS + 1):
        if problem := url_problem(url, allow_http_loopback=True):
            raise FetchRefused(problem)
        # A proxy from the environment must not see (or break) requests to this machine.
        with httpx.Client(trust_env=not is_loopback_host(urlsplit(url).hostname or "")) as client:
            try:
                request = client.build_request(
                    "GET", url, headers=_ACCEPT, timeout=max(0.001, deadline - time.monotonic())
                )
                response = client.send(request, stream=True)
            except httpx.TimeoutException:
                raise FetchTimeout(f"{redacted(url)}: no answer within the time limit") from None
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise FetchError(
                    f"{redacted(url)}: cannot download ({exc.__class__.__name__}: {_scrub(str(exc), url)})"
                ) from None
            try:
                if response.is_redirect:
                    url = urljoin(url, response.headers["Location"])
                    continue
                if response.status_code != 200:
                    raise FetchHttpError(
                        f"{redacted(url)}: the server answered HTTP {response.status_code} {response.reason_phrase}",
                        response.status_code,
                    )
                yield response
                return
            finally:
                response.close()
    raise FetchError(f"{redacted(url)}: more than {MAX_REDIRECTS} redirects")


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
