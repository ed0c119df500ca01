"""fetch_metadata against a real HTTP server on 127.0.0.1: every way a metadata URL can let us down."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from idp.sps.errors import FetchError, FetchHttpError, FetchNotXml, FetchRefused, FetchTimeout, FetchTooLarge
from idp.sps.fetch import fetch_metadata
from idp.sps.urls import address_problem
from tests.unit.sp_fixtures import Route, http_server, sp_metadata

METADATA = sp_metadata()


def test_downloads_metadata() -> None:
    with http_server({"/md": Route(METADATA)}) as base:
        assert fetch_metadata(f"{base}/md", allow_http=True) == METADATA


def test_follows_a_redirect_on_the_same_host() -> None:
    with http_server({"/old": Route(b"", status=302, location="/md"), "/md": Route(METADATA)}) as base:
        assert fetch_metadata(f"{base}/old", allow_http=True) == METADATA


def test_allowing_http_never_opens_the_private_network() -> None:
    with (
        http_server({"/md": Route(b"", status=301, location="http://10.0.0.1/md")}) as base,
        pytest.raises(FetchRefused, match=r"\(redirect 1\): refused: 10\.0\.0\.1 is a private address"),
    ):
        fetch_metadata(f"{base}/md", allow_http=True)


@pytest.mark.parametrize("body,content_type", [(b"hello, not xml", "text/plain"), (b"<html>login</html>", "text/html")])
def test_junk_is_not_xml(body: bytes, content_type: str) -> None:
    with http_server({"/md": Route(body, content_type=content_type)}) as base, pytest.raises(FetchNotXml):
        fetch_metadata(f"{base}/md", allow_http=True)


def test_http_error_carries_the_status() -> None:
    with http_server({}) as base, pytest.raises(FetchHttpError, match="HTTP 404") as caught:
        fetch_metadata(f"{base}/missing", allow_http=True)
    assert caught.value.status == 404


def test_a_server_that_sleeps_past_the_timeout() -> None:
    with http_server({"/md": Route(METADATA, delay=5)}) as base:
        start = time.monotonic()
        with pytest.raises(FetchTimeout):
            fetch_metadata(f"{base}/md", allow_http=True, timeout=0.5)
        assert time.monotonic() - start < 2


@pytest.mark.parametrize("send_length", [True, False])
def test_too_large_with_and_without_content_length(send_length: bool) -> None:
    with (
        http_server({"/md": Route(b"<x>" + b" " * 300_000 + b"</x>", send_length=send_length)}) as base,
        pytest.raises(FetchTooLarge),
    ):
        fetch_metadata(f"{base}/md", allow_http=True, max_bytes=100_000)


@pytest.mark.parametrize("url", ["http://sp.example.test/md", "ftp://127.0.0.1/md", "file:///etc/passwd"])
def test_only_https_unless_allowed(url: str) -> None:
    with pytest.raises(FetchRefused):
        fetch_metadata(url, resolver=_no_dns)


def test_loopback_needs_the_admins_allowance() -> None:
    with http_server({"/md": Route(METADATA)}) as base, pytest.raises(FetchRefused, match="must use https"):
        fetch_metadata(f"{base}/md")
    with pytest.raises(FetchRefused, match=r"refused: 127\.0\.0\.1 is a loopback address"):
        fetch_metadata("https://127.0.0.1/md", resolver=_no_dns)


@pytest.mark.parametrize("body,content_type", [(b"user not found", "text/plain"), (b"\x00\x01secret", "")])
def test_a_body_that_is_not_xml_is_named_not_shown(body: bytes, content_type: str) -> None:
    with http_server({"/md": Route(body, content_type=content_type)}) as base, pytest.raises(FetchNotXml) as caught:
        fetch_metadata(f"{base}/md", allow_http=True)
    assert f"not XML ({len(body)} bytes" in str(caught.value)
    assert "not found" not in str(caught.value) and "secret" not in str(caught.value)


def test_nothing_listening() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused, and nobody else gets the port
        port = s.getsockname()[1]
        with pytest.raises(FetchError) as caught:
            fetch_metadata(f"http://127.0.0.1:{port}/md", allow_http=True, timeout=2)
    # One sentence an admin can act on: no errno, no exception class, the URL said once.
    assert str(caught.value) == (
        f"http://127.0.0.1:{port}/md cannot be downloaded: the server refused the connection; "
        "check the URL and that the server is running"
    )


# -- where a download may go: checked on every hop, against the address actually connected to ---------------
# The "internet" below is an httpx.MockTransport: nothing leaves this machine, and the test sees which address
# each request was sent to.

PUBLIC = "93.184.215.14"
"""Stands for the SP's public server (the documentation ranges do not count as public); only the mock
transport ever "connects" to it."""


def _no_dns(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host} should have been refused before any lookup")


def _resolver(names: dict[str, str]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        return [names[host]]

    return resolve


def _internet(routes: dict[str, httpx.Response], seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return routes[f"{request.url.host}{request.url.path}"]

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(
    "location,address,problem",
    [
        ("https://127.0.0.1/md", "127.0.0.1", "a loopback address"),
        ("https://[::1]/md", "::1", "a loopback address"),
        ("https://10.1.2.3/md", "10.1.2.3", "a private address"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254", "a link-local address"),
        ("https://intranet.corp.test/md", "'intranet.corp.test' resolves to 127.0.0.9,", "a loopback address"),
    ],
)
def test_a_redirect_inside_is_refused_before_connecting(location: str, address: str, problem: str) -> None:
    seen: list[httpx.Request] = []
    internet = _internet({f"{PUBLIC}/md": httpx.Response(302, headers={"Location": location})}, seen)
    resolver = _resolver({"sp.example.com": PUBLIC, "intranet.corp.test": "127.0.0.9"})
    with pytest.raises(FetchRefused) as caught:
        fetch_metadata("https://sp.example.com/md", resolver=resolver, transport=internet)
    message = str(caught.value)
    assert "(redirect 1): refused: " in message and address in message and problem in message
    assert [r.url.host for r in seen] == [PUBLIC]


def test_https_to_a_name_that_resolves_inside_is_refused() -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(
        FetchRefused, match=r"'metadata.internal.test' resolves to 127\.0\.0\.5, which is a loopback address"
    ):
        fetch_metadata(
            "https://metadata.internal.test/md",
            resolver=_resolver({"metadata.internal.test": "127.0.0.5"}),
            transport=_internet({}, seen),
        )
    assert seen == []


def test_connects_to_the_address_that_was_checked() -> None:
    """A name that answers differently to a second lookup (DNS rebinding) gains nothing: it is looked up once per
    hop, and the connection goes to that address, with the name kept for the Host header and the certificate."""
    answers = iter([PUBLIC, "127.0.0.1"])
    seen: list[httpx.Request] = []
    internet = _internet({f"{PUBLIC}/md": httpx.Response(200, content=METADATA)}, seen)
    body = fetch_metadata("https://sp.example.com/md", resolver=lambda host, port: [next(answers)], transport=internet)
    assert body == METADATA
    (request,) = seen
    assert (request.url.host, request.headers["Host"]) == (PUBLIC, "sp.example.com")
    assert request.extensions["sni_hostname"] == "sp.example.com"


def test_a_name_with_one_inside_address_is_refused() -> None:
    seen: list[httpx.Request] = []
    with pytest.raises(FetchRefused, match=r"resolves to 10\.9\.8\.7, which is a private address"):
        fetch_metadata(
            "https://sp.example.com/md",
            resolver=lambda host, port: [PUBLIC, "10.9.8.7"],
            transport=_internet({}, seen),
        )
    assert seen == []


def test_a_redirect_to_plain_http_is_refused() -> None:
    seen: list[httpx.Request] = []
    internet = _internet({f"{PUBLIC}/md": httpx.Response(301, headers={"Location": "http://sp.example.com/md"})}, seen)
    with pytest.raises(FetchRefused, match=r"\(redirect 1\): must use https"):
        fetch_metadata("https://sp.example.com/md", resolver=_resolver({"sp.example.com": PUBLIC}), transport=internet)


def test_an_error_page_is_named_by_its_status_alone() -> None:
    internet = _internet({f"{PUBLIC}/md": httpx.Response(403, content=b"<h1>secret internal page</h1>")}, [])
    with pytest.raises(FetchHttpError) as caught:
        fetch_metadata("https://sp.example.com/md", resolver=_resolver({"sp.example.com": PUBLIC}), transport=internet)
    assert str(caught.value) == "https://sp.example.com/md: the server answered HTTP 403 Forbidden"


@pytest.mark.parametrize(
    "address,problem",
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("::", "unspecified"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_addresses_that_are_not_public(address: str, problem: str) -> None:
    found = address_problem(address, allow_loopback=False)
    assert found is not None and problem in found


def test_public_addresses_and_the_allowed_loopback() -> None:
    assert address_problem("8.8.8.8", allow_loopback=False) is None
    assert address_problem("2606:4700::1111", allow_loopback=False) is None
    assert address_problem("127.0.0.1", allow_loopback=True) is None
    assert address_problem("10.0.0.1", allow_loopback=True) is not None
