"""Download an SP's metadata from its URL, with every limit an untrusted server could otherwise stretch."""

from __future__ import annotations

import time
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from urllib3.exceptions import ReadTimeoutError

from idp.sps.errors import FetchError, FetchHttpError, FetchNotXml, FetchRefused, FetchTimeout, FetchTooLarge
from idp.sps.urls import is_loopback_host, url_problem

MAX_REDIRECTS = 5
_CHUNK = 64 * 1024


def fetch_metadata(url: str, *, timeout: float = 10, max_bytes: int = 2_000_000) -> bytes:
    """GET ``url`` (https, or http on loopback) and return the body if it looks like XML.

    ``timeout`` bounds the whole download, not just each socket read, so a server that trickles bytes
    cannot hold the command forever.
    """
    deadline = time.monotonic() + timeout
    with requests.Session() as session:
        response = _get_following_redirects(session, url, deadline)
        with response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchTooLarge(
                    f"{redacted(response.url)}: the server announces {declared} bytes; the limit is {max_bytes}"
                )
            body = _read_limited(response, max_bytes, deadline)
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "text/html":
        raise FetchNotXml(f"{redacted(response.url)}: the server sent an HTML page, not SAML metadata")
    if not body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        raise FetchNotXml(f"{redacted(response.url)}: the answer is not XML (it starts with {body[:40]!r})")
    return body


def redacted(url: str) -> str:
    """The URL as logs and the audit trail may keep it: without user info and query, which can hold secrets
    (many SPs put an access token in their metadata URL)."""
    if not url.startswith(("http://", "https://")):
        return url
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _scrub(text: str, url: str) -> str:
    """requests' messages quote the path with its query; take out the query and any user info."""
    parts = urlsplit(url)
    for secret in (parts.query, parts.netloc.rpartition("@")[0]):
        if secret:
            text = text.replace(secret, "…")
    return text


def _get_following_redirects(session: requests.Session, url: str, deadline: float) -> requests.Response:
    # Redirects are followed by hand so that every hop obeys the https rule, not just the first URL.
    for _ in range(MAX_REDIRECTS + 1):
        if problem := url_problem(url, allow_http_loopback=True):
            raise FetchRefused(problem)
        # A proxy from the environment must not see (or break) requests to this machine.
        session.trust_env = not is_loopback_host(urlsplit(url).hostname or "")
        try:
            response = session.get(
                url,
                timeout=max(0.001, deadline - time.monotonic()),
                stream=True,
                allow_redirects=False,
                headers={"Accept": "application/samlmetadata+xml, application/xml;q=0.9, text/xml;q=0.8"},
            )
        except requests.Timeout:
            raise FetchTimeout(f"{redacted(url)}: no answer within the time limit") from None
        except requests.RequestException as exc:
            raise FetchError(
                f"{redacted(url)}: cannot download ({exc.__class__.__name__}: {_scrub(str(exc), url)})"
            ) from None
        if response.is_redirect:
            response.close()
            url = urljoin(url, response.headers["Location"])
            continue
        if response.status_code != 200:
            response.close()
            raise FetchHttpError(
                f"{redacted(url)}: the server answered HTTP {response.status_code} {response.reason}",
                response.status_code,
            )
        return response
    raise FetchError(f"{redacted(url)}: more than {MAX_REDIRECTS} redirects")


def _read_limited(response: requests.Response, max_bytes: int, deadline: float) -> bytes:
    body = bytearray()
    try:
        for chunk in response.iter_content(_CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise FetchTooLarge(f"{redacted(response.url)}: the answer is larger than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise FetchTimeout(f"{redacted(response.url)}: the download did not finish within the time limit")
    except requests.RequestException as exc:
        # requests reports a read timeout in the middle of the body as a ConnectionError wrapping urllib3's.
        if isinstance(exc, requests.Timeout) or any(isinstance(a, ReadTimeoutError) for a in exc.args):
            raise FetchTimeout(
                f"{redacted(response.url)}: the server stopped sending before the download finished"
            ) from None
        raise FetchError(f"{redacted(response.url)}: the download broke off ({exc.__class__.__name__})") from None
    return bytes(body)
