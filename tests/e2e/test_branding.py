"""The company's own login page, as `idp serve` runs it against the suite's Samba AD: its logo served with its
type, its name and help-desk line on the login and error pages, its colour applied through /brand.css (axe
still finds nothing in Chromium), a colour or logo that cannot be used refused at start-up naming the key, the
language switch keeping the SP's request through to the signed-in answer, and the non-admin's way out of the
console."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from idp.demo.samba_dc import DEMO_USERS
from idp.web.i18n import MESSAGES
from tests.e2e.browser import Browser, admin_browser
from tests.e2e.harness import IdpServer, base_config, free_port, prepare_idp, serve_idp
from tests.e2e.saml_sp import IndependentSp, write_metadata

pytestmark = pytest.mark.ad

ALICE = next(u for u in DEMO_USERS if u.username == "alice")
COMPANY = "Contoso Trading Ltd"
COLOR = "#7a1f5c"
HELP_LINE = "Locked out? The IT help desk answers 8:00-18:00."
PHONE = "+86 10 5555 0100"


def tiny_png() -> bytes:
    """A 1x1 PNG, built here so the test needs no image file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\x7a\x1f\x5c"))
        + chunk(b"IEND", b"")
    )


def branding(logo: Path, **changes: str) -> dict:
    return {
        "company_name": COMPANY,
        "logo_file": logo,
        "primary_color": COLOR,
        "helpdesk_text": HELP_LINE,
        "helpdesk_phone": PHONE,
        **changes,
    }


@pytest.fixture(scope="module")
def branded(samba_dc, tmp_path_factory) -> Iterator[IdpServer]:
    root = tmp_path_factory.mktemp("branded")
    (root / "logo.png").write_bytes(tiny_png())
    port = free_port()
    config = base_config(root, f"http://127.0.0.1:{port}", samba_dc.ldap_settings())
    config["branding"] = branding(root / "logo.png")
    server = serve_idp(prepare_idp(root, config), port, workers=1)
    try:
        sp = IndependentSp(
            entity_id="https://branded.sp.test/saml",
            acs_url=f"http://127.0.0.1:{free_port()}/branded/acs",
            sign_requests=False,
            idp_metadata_xml=server.metadata(),
        )
        (root / "sp").mkdir()
        server.idp("sp", "add", str(write_metadata(sp, root / "sp")))
        server.sps["branded"] = sp
        yield server
    finally:
        server.stop()


def test_logo_and_stylesheet_are_served_with_their_types(branded):
    browser = Browser()
    page = browser.get(branded.base_url + "/login")
    doc = page.doc()
    logo_url = doc.get_element_by_id("brand-logo").get("src")
    logo = browser.http.get(branded.base_url + logo_url)
    assert logo.status_code == 200
    assert logo.headers["content-type"] == "image/png"
    assert logo.content == tiny_png()
    assert "max-age=31536000" in logo.headers["cache-control"]
    sheet_url = next(href for href in doc.xpath("//link[@rel='stylesheet']/@href") if href.startswith("/brand.css"))
    sheet = browser.http.get(branded.base_url + sheet_url)
    assert sheet.headers["content-type"].startswith("text/css")
    assert f"--accent: {COLOR}" in sheet.text
    # The page itself still refuses inline styles; images come from us alone.
    csp = browser.http.get(branded.base_url + "/login").headers["content-security-policy"]
    assert "style-src 'self'" in csp and "img-src 'self'" in csp and "unsafe-inline" not in csp


def test_name_and_help_line_on_the_login_and_error_pages(branded):
    browser = Browser()
    login = browser.get(branded.base_url + "/login")
    expired = browser.get(branded.base_url + "/login?k=no-such-request")
    assert expired.status == 400
    assert expired.text_of("error") == MESSAGES["en"]["error.login_expired"]
    for page in (login, expired):
        assert page.text_of("brand-name") == COMPANY
        assert page.text_of("helpdesk-text") == HELP_LINE
        phone = page.doc().get_element_by_id("helpdesk-phone")
        assert phone.text_content() == PHONE and phone.get("href") == "tel:+861055550100"


def test_the_colour_is_applied_and_the_page_stays_accessible(branded, chrome):
    from tests.e2e.a11y import axe_findings

    chrome.get(branded.base_url + "/login")
    button = chrome.execute_script(
        "return getComputedStyle(document.querySelector('form button[type=submit]')).backgroundColor"
    )
    assert button == "rgb(122, 31, 92)"
    assert chrome.execute_script("return document.getElementById('brand-logo').naturalWidth") == 1
    assert [str(f) for f in axe_findings(chrome, "branded login")] == []


@pytest.mark.parametrize(
    ("change", "key", "why"),
    [
        ({"primary_color": "#ffcc00"}, "branding.primary_color", "contrast of 1.51:1"),
        ({"primary_color": "blue"}, "branding.primary_color", "not a colour written #rrggbb"),
        ({"logo_file": "logo.gif"}, "branding.logo_file", "must be a .png or .svg file"),
        ({"logo_file": "fake.png"}, "branding.logo_file", "not a PNG image"),
    ],
)
def test_an_unusable_colour_or_logo_stops_the_start(tmp_path, samba_dc, change, key, why):
    (tmp_path / "fake.png").write_text("<svg/>")
    (tmp_path / "logo.png").write_bytes(tiny_png())
    config = base_config(tmp_path, "http://127.0.0.1:1", samba_dc.ldap_settings())
    config["branding"] = branding(tmp_path / "logo.png", **change)
    from idp.settings import render_toml

    (tmp_path / "idp.toml").write_text(render_toml(config))
    started = subprocess.run(
        [sys.executable, "-m", "idp.cli", "serve", "--bind", "127.0.0.1:1"],
        env={**os.environ, "IDP_CONFIG": str(tmp_path / "idp.toml")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    line = next((line for line in started.stderr.splitlines() if line.strip().startswith(key)), "")
    assert why in line, started.stderr


def test_the_language_switch_keeps_the_request_and_signs_in(branded):
    sp = branded.sps["branded"]
    browser = Browser()
    login = browser.get(sp.redirect_login_url())
    key = login.doc().xpath("//input[@name='k']/@value")[0]
    switch = login.doc().get_element_by_id("lang-zh-CN")
    assert switch.get("hreflang") == "zh-CN" and switch.get("lang") == "zh-CN"
    chinese = browser.get(branded.base_url + switch.get("href"))
    assert chinese.doc().get("lang") == "zh-CN"
    assert chinese.doc().xpath("//h1")[0].text_content() == MESSAGES["zh-CN"]["login.heading"]
    assert chinese.doc().xpath("//input[@name='k']/@value") == [key]
    answered = browser.login(chinese, ALICE.username, ALICE.password)
    result = sp.consume(*browser.saml_post(answered))
    assert result.nameid == ALICE.mail


def test_a_non_admin_is_offered_another_account(branded):
    browser = Browser()
    refused = browser.login(browser.get(branded.base_url + "/admin/"), ALICE.username, ALICE.password)
    assert refused.status == 403
    assert refused.text_of("error").startswith("You are signed in as alice")
    out = browser.submit(refused, "sign-out")
    assert out.status == 200 and out.text_of("sign-out") is None
    assert browser.get(branded.base_url + "/admin/").is_login


def test_the_console_shows_the_branding_and_its_keys(branded):
    page = admin_browser(branded.base_url).get(branded.base_url + "/admin/")
    assert page.text_of("branding-name") == COMPANY
    assert page.text_of("branding-color") == COLOR
    assert "[branding]" in page.text_of("branding")
