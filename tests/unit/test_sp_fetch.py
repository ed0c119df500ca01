"""fetch_metadata against a real HTTP server on 127.0.0.1: every way a metadata URL can let us down."""

from __future__ import annotations

import socket
import time

import pytest

from idp.sps.errors import FetchError, FetchHttpError, FetchNotXml, FetchRefused, FetchTimeout, FetchTooLarge
from idp.sps.fetch import fetch_metadata
from tests.unit.sp_fixtures import Route, http_server, sp_metadata

METADATA = sp_metadata()


def test_downloads_metadata() -> None:
    with http_server({"/md": Route(METADATA)}) as base:
        assert fetch_metadata(f"{base}/md") == METADATA


def test_follows_a_redirect_on_the_same_host() -> None:
    with http_server({"/old": Route(b"", status=302, location="/md"), "/md": Route(METADATA)}) as base:
        assert fetch_metadata(f"{base}/old") == METADATA


def test_a_redirect_to_plain_http_elsewhere_is_refused() -> None:
    with (
        http_server({"/md": Route(b"", status=301, location="http://sp.example.test/md")}) as base,
        pytest.raises(FetchRefused, match="must use https"),
    ):
        fetch_metadata(f"{base}/md")


@pytest.mark.parametrize("body,content_type", [(b"hello, not xml", "text/plain"), (b"<html>login</html>", "text/html")])
def test_junk_is_not_xml(body: bytes, content_type: str) -> None:
    with http_server({"/md": Route(body, content_type=content_type)}) as base, pytest.raises(FetchNotXml):
        fetch_metadata(f"{base}/md")


def test_http_error_carries_the_status() -> None:
    with http_server({}) as base, pytest.raises(FetchHttpError, match="HTTP 404") as caught:
        fetch_metadata(f"{base}/missing")
    assert caught.value.status == 404


def test_a_server_that_sleeps_past_the_timeout() -> None:
    with http_server({"/md": Route(METADATA, delay=5)}) as base:
        start = time.monotonic()
        with pytest.raises(FetchTimeout):
            fetch_metadata(f"{base}/md", timeout=0.5)
        assert time.monotonic() - start < 2


@pytest.mark.parametrize("send_length", [True, False])
def test_too_large_with_and_without_content_length(send_length: bool) -> None:
    with (
        http_server({"/md": Route(b"<x>" + b" " * 300_000 + b"</x>", send_length=send_length)}) as base,
        pytest.raises(FetchTooLarge),
    ):
        fetch_metadata(f"{base}/md", max_bytes=100_000)


@pytest.mark.parametrize("url", ["http://sp.example.test/md", "ftp://127.0.0.1/md", "file:///etc/passwd"])
def test_only_https_or_loopback_http(url: str) -> None:
    with pytest.raises(FetchRefused):
        fetch_metadata(url)


def test_nothing_listening() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused, and nobody else gets the port
        port = s.getsockname()[1]
        with pytest.raises(FetchError, match="cannot download"):
            fetch_metadata(f"http://127.0.0.1:{port}/md", timeout=2)
