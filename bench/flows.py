"""The two things a browser does against the IdP, as load-test clients, and the independent check of what
came back.

Requests are built and responses validated with python3-saml (the SP side), never with our own SAML code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import lxml.html
import requests
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from idp.demo.samba_dc import DEMO_USERS, DemoUser
from tests.e2e.saml_sp import IndependentSp

# Normal accounts only: the refusal-state users would measure AD saying no, not a sign-in.
SIGN_IN_USERS: tuple[DemoUser, ...] = tuple(u for u in DEMO_USERS if u.username in ("alice", "bob", "carol"))
_TIMEOUT = 30


class FlowError(RuntimeError):
    """The IdP answered something a browser would not get on a successful sign-in."""


@dataclass(frozen=True)
class SignedRequest:
    url: str
    request_id: str


@dataclass(frozen=True)
class ResponseSample:
    """A SAMLResponse as the browser would post it to the ACS, with the request it answers."""

    request_id: str
    action: str
    fields: dict[str, str]


class AuthnRequests:
    """Signed HTTP-Redirect AuthnRequests from the SP; the SP's settings are parsed once, not per request."""

    def __init__(self, sp: IndependentSp) -> None:
        self._sp = sp
        self._settings = OneLogin_Saml2_Settings(sp.settings_dict(), sp_validation_only=False)

    def signed_redirect(self) -> SignedRequest:
        auth = OneLogin_Saml2_Auth(_request_data(self._sp.acs_url), self._settings)
        url = auth.login(return_to="/inbox")
        return SignedRequest(url, auth.get_last_request_id())

    def validate(self, sample: ResponseSample) -> str:
        """Process the response as the SP's ACS would (signatures, SHA-256, audience, InResponseTo, times);
        return the NameID, raise FlowError when the SP rejects it."""
        if sample.action != self._sp.acs_url:
            raise FlowError(f"response posted to {sample.action}, expected {self._sp.acs_url}")
        auth = OneLogin_Saml2_Auth(_request_data(self._sp.acs_url, post=sample.fields), self._settings)
        auth.process_response(request_id=sample.request_id)
        if auth.get_errors() or not auth.is_authenticated():
            raise FlowError(f"the SP rejected the response: {auth.get_errors()}: {auth.get_last_error_reason()}")
        return auth.get_nameid()


class SsoSessionClient:
    """A browser that signed in once and then visits the SP again and again: the IdP answers from the SSO
    session with a freshly signed response, no password and no LDAP."""

    def __init__(self, requests_: AuthnRequests, user: DemoUser) -> None:
        self._requests = requests_
        self._http = requests.Session()
        sample = full_login(self._http, requests_.signed_redirect(), user)
        requests_.validate(sample)

    def prepare(self) -> SignedRequest:
        return self._requests.signed_redirect()

    def call(self, prepared: SignedRequest) -> ResponseSample:
        r = self._http.get(prepared.url, allow_redirects=False, timeout=_TIMEOUT)
        return _auto_post(r, prepared.request_id)


class PasswordLoginClient:
    """A new browser for every sign-in: AuthnRequest, login page, password, signed response."""

    def __init__(self, requests_: AuthnRequests, first_user: int) -> None:
        self._requests = requests_
        self._next_user = first_user

    def prepare(self) -> tuple[SignedRequest, DemoUser]:
        user = SIGN_IN_USERS[self._next_user % len(SIGN_IN_USERS)]
        self._next_user += 1
        return self._requests.signed_redirect(), user

    def call(self, prepared: tuple[SignedRequest, DemoUser]) -> ResponseSample:
        request, user = prepared
        with requests.Session() as http:
            return full_login(http, request, user)


def full_login(http: requests.Session, request: SignedRequest, user: DemoUser) -> ResponseSample:
    """GET /saml/sso (-> 302 to /login), read the form and its CSRF token, post the password."""
    page = http.get(request.url, timeout=_TIMEOUT)
    if page.status_code != 200:
        raise FlowError(f"login page: HTTP {page.status_code} at {page.url}: {_snippet(page.text)}")
    action, fields = _form(page.url, page.text, None)
    if "csrf_token" not in fields:
        raise FlowError(f"no login form with a CSRF token at {page.url}: {_snippet(page.text)}")
    fields.update(username=user.username, password=user.password)
    answer = http.post(action, data=fields, allow_redirects=False, timeout=_TIMEOUT)
    return _auto_post(answer, request.request_id)


def _auto_post(r: requests.Response, request_id: str) -> ResponseSample:
    if r.status_code != 200 or 'id="saml-post"' not in r.text:
        raise FlowError(f"expected the auto-POST page, got HTTP {r.status_code}: {_snippet(r.text)}")
    action, fields = _form(r.url, r.text, "saml-post")
    if not fields.get("SAMLResponse"):
        raise FlowError("the auto-POST form carries no SAMLResponse")
    return ResponseSample(request_id, action, fields)


def _form(url: str, html: str, form_id: str | None) -> tuple[str, dict[str, str]]:
    doc = lxml.html.fromstring(html)
    forms = [f for f in doc.forms if form_id is None or f.get("id") == form_id]
    if not forms:
        raise FlowError(f"no form{' ' + form_id if form_id else ''} at {url}")
    form = forms[0]
    fields = {i.name: i.value or "" for i in form.inputs if i.name and i.type != "submit"}
    return urljoin(url, form.action or url), fields


def _request_data(url: str, *, post: dict[str, Any] | None = None) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "https": "on" if parts.scheme == "https" else "off",
        "http_host": parts.hostname,
        "server_port": str(parts.port or (443 if parts.scheme == "https" else 80)),
        "script_name": parts.path,
        "get_data": {},
        "post_data": post or {},
    }


def _snippet(text: str) -> str:
    return " ".join(text.split())[:300]
