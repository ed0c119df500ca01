"""A person in headless Chromium (Debian's chromium + chromedriver): opens the demo webmail, is sent to our
login page, types the AD password, and lands back in the mailbox with their attributes shown."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from idp.demo.samba_dc import DEMO_USERS
from idp.demo.webmail import create_webmail_app, sp_metadata_xml
from tests.e2e.harness import ARTIFACTS

pytestmark = [pytest.mark.ad, pytest.mark.browser]


@pytest.fixture(scope="module")
def webmail(idp_server, tmp_path_factory) -> Iterator[str]:
    # Port 0: the kernel's pick cannot be taken by anyone else. The app needs its own URL, so it comes after
    # the socket and is in place before the server answers anything.
    server = make_server("127.0.0.1", 0, None, threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    server.app = create_webmail_app(
        base_url=base,
        idp_metadata_url=idp_server.base_url + "/saml/metadata",
        state_dir=tmp_path_factory.mktemp("webmail"),
    )
    metadata = tmp_path_factory.mktemp("webmail-md") / "webmail.xml"
    metadata.write_text(sp_metadata_xml(server.app))
    idp_server.idp("sp", "add", str(metadata))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()


def test_employee_signs_in_to_webmail_in_a_real_browser(webmail, idp_server, chrome):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    alice = next(u for u in DEMO_USERS if u.username == "alice")
    ARTIFACTS.mkdir(exist_ok=True)
    chrome.get(webmail + "/")
    WebDriverWait(chrome, 20).until(ec.presence_of_element_located((By.NAME, "password")))
    # The form comes with the answer to the SP's request, at its URL; a reload there is the same sign-in.
    assert chrome.current_url.startswith(idp_server.base_url + "/saml/sso?SAMLRequest=")
    chrome.refresh()
    WebDriverWait(chrome, 20).until(ec.url_contains("/login?k="))
    assert chrome.find_element(By.ID, "service").text == "to continue to Demo Webmail"
    chrome.save_screenshot(str(ARTIFACTS / "login-page.png"))

    chrome.find_element(By.NAME, "username").send_keys("alice")
    chrome.find_element(By.NAME, "password").send_keys("not-the-password")
    chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    error = WebDriverWait(chrome, 20).until(ec.presence_of_element_located((By.ID, "error")))
    assert error.text.startswith("The username or password is incorrect.")

    chrome.find_element(By.NAME, "password").send_keys(alice.password)
    chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(chrome, 20).until(ec.presence_of_element_located((By.ID, "attributes")))
    assert chrome.current_url.startswith(webmail)
    assert chrome.find_element(By.ID, "signed-in-as").text == alice.mail
    table = chrome.find_element(By.ID, "attributes").text
    for value in (alice.mail, alice.given_name, alice.surname, "Mail Users"):
        assert value in table
    chrome.save_screenshot(str(ARTIFACTS / "webmail-signed-in.png"))
