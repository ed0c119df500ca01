"""A scripted browser for the end-to-end tests: requests.Session plus the two forms our pages show."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin

import lxml.html
import requests


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

    @property
    def is_login(self) -> bool:
        doc = self.doc()
        return any(set(f.inputs.keys()) >= {"username", "password", "csrf_token"} for f in doc.forms)

    @property
    def is_auto_post(self) -> bool:
        return bool(self.doc().xpath("//form[@id='saml-post']"))


class Browser:
    def __init__(self, accept_language: str = "en") -> None:
        self.http = requests.Session()
        self.http.headers["Accept-Language"] = accept_language

    def get(self, url: str) -> Page:
        r = self.http.get(url, timeout=30)
        return Page(r.url, r.status_code, r.text)

    def post(self, url: str, data: dict[str, str]) -> Page:
        r = self.http.post(url, data=data, timeout=30)
        return Page(r.url, r.status_code, r.text)

    def login(self, page: Page, username: str, password: str) -> Page:
        assert page.is_login, f"expected the login page, got {page.status} at {page.url}:\n{page.html[:500]}"
        action, fields = page.form()
        fields.update(username=username, password=password)
        return self.post(action, fields)

    def saml_post(self, page: Page) -> tuple[str, dict[str, str]]:
        """The auto-POST form our IdP answers with: (ACS URL, fields) as the browser would submit them."""
        assert page.is_auto_post, f"expected the auto-POST page, got {page.status} at {page.url}:\n{page.html[:800]}"
        return page.form("saml-post")
