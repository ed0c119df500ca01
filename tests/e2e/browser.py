"""A scripted browser for the end-to-end tests: an httpx client that follows redirects and keeps cookies, plus
the two forms our pages show."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx
import lxml.html

from tests.support import require


@dataclass
class Page:
    url: str
    status: int
    html: str

    def doc(self) -> lxml.html.HtmlElement:
        return lxml.html.fromstring(self.html)

    def text_of(self, element_id: str) -> str | None:
        found = self.doc().get_element_by_id(element_id, None)
        return None if found is None else found.text_content().strip()

    def form(self, form_id: str | None = None) -> tuple[str, dict[str, str]]:
        doc = self.doc()
        form = doc.get_element_by_id(form_id) if form_id else doc.forms[0]
        fields = {i.name: i.value or "" for i in form.inputs if i.name and i.type != "submit"}
        return urljoin(self.url, form.action or self.url), fields

    def form_values(self, form_id: str) -> tuple[str, list[tuple[str, str]]]:
        """(action, the pairs a browser would send): unchecked boxes left out, every selected option kept."""
        form = self.doc().get_element_by_id(form_id)
        return urljoin(self.url, form.action or self.url), list(form.form_values())

    @property
    def is_login(self) -> bool:
        doc = self.doc()
        return any(set(f.inputs.keys()) >= {"username", "password", "csrf_token"} for f in doc.forms)

    @property
    def is_auto_post(self) -> bool:
        return bool(self.doc().xpath("//form[@id='saml-post']"))


class Browser:
    def __init__(self, accept_language: str = "en") -> None:
        self.http = httpx.Client(follow_redirects=True, headers={"Accept-Language": accept_language})

    def get(self, url: str) -> Page:
        return self._refreshed(_page(self.http.get(url, timeout=30)))

    def post(self, url: str, data: dict[str, str]) -> Page:
        return self._refreshed(_page(self.http.post(url, data=data, timeout=30)))

    def _refreshed(self, page: Page) -> Page:
        """Where a page that opens another at once (``<meta http-equiv="refresh" content="0; url=...">``) leads,
        as a browser follows it."""
        if page.status != 200 or "http-equiv" not in page.html:
            return page
        for content in page.doc().xpath("//meta[@http-equiv='refresh']/@content"):
            delay, _, target = str(content).partition(";")
            if delay.strip() == "0" and target.strip().lower().startswith("url="):
                return self.get(urljoin(page.url, target.strip()[4:].strip()))
        return page

    def submit(
        self,
        page: Page,
        form_id: str,
        changes: dict[str, str | list[str]] | None = None,
        *,
        files: dict[str, tuple[str, bytes]] | None = None,
    ) -> Page:
        """Submit the form as a person would after changing some fields: a field in ``changes`` replaces every
        value the form had for that name (a list for multi-selects and checkbox groups; [] unchecks them)."""
        action, pairs = page.form_values(form_id)
        changes = changes or {}
        data: dict[str, list[str]] = {}
        for name, value in pairs:
            if name not in changes:
                data.setdefault(name, []).append(value)
        for name, value in changes.items():
            data[name] = [value] if isinstance(value, str) else list(value)
        return self._refreshed(_page(self.http.post(action, data=data, files=files, timeout=60)))

    def login(self, page: Page, username: str, password: str) -> Page:
        assert page.is_login, f"expected the login page, got {page.status} at {page.url}:\n{page.html[:500]}"
        action, fields = page.form()
        fields.update(username=username, password=password)
        return self.post(action, fields)

    def saml_post(self, page: Page) -> tuple[str, dict[str, str]]:
        """The auto-POST form our IdP answers with: (ACS URL, fields) as the browser would submit them."""
        assert page.is_auto_post, f"expected the auto-POST page, got {page.status} at {page.url}:\n{page.html[:800]}"
        return page.form("saml-post")


def _page(r: httpx.Response) -> Page:
    return Page(str(r.url), r.status_code, r.text)


def admin_browser(base_url: str, username: str = "anna", password: str = "Passw0rd!Anna") -> Browser:  # noqa: S107
    """A browser signed in to the admin console (anna is in the demo AD's "SSO Admins")."""
    browser = Browser()
    page = browser.login(browser.get(base_url + "/admin/"), username, password)
    assert page.status == 200 and page.url.startswith(base_url + "/admin/"), f"{page.status} {page.url}"
    return browser


def start_chromium(lang: str | None = "en-US") -> Any:
    """Headless Chromium driven by Debian's chromedriver; ``lang`` None leaves the language to each request."""
    require(
        shutil.which("chromium") is not None and shutil.which("chromedriver") is not None,
        "Debian's chromium and chromium-driver are not installed",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,900",
        *([f"--lang={lang}"] if lang else []),
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    return driver
