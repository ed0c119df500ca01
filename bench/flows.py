"""The two things a browser does against the IdP, as load-test clients, and the independent check of what
came back.

Requests are built and responses validated with python3-saml (the SP side), never with our own SAML code.
"""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from idp.demo.samba_dc import DEMO_USERS, DemoUser
from tests.e2e.saml_sp import IndependentSp


def _bench_person(n: int) -> DemoUser:
    # The names tests.e2e.ad_admin.AdAdmin.add_user gives an account it makes.
    return DemoUser(
        f"bench{n:02d}",
        f"Bench!Passw0rd{n:02d}",
        f"Bench{n:02d}",
        "Test",
        f"bench{n:02d}@corp.example.com",
        None,
        None,
        (),
        "normal",
    )


BENCH_PEOPLE: tuple[DemoUser, ...] = tuple(_bench_person(n) for n in range(4, 17))
"""Made in the benchmark's own DC (bench.environment), so that 16 clients are 16 people: one person signing in
from 16 browsers at once would meet the per-account throttle, which counts attempts in flight."""
# Normal accounts only: the refusal-state users would measure AD saying no, not a sign-in.
SIGN_IN_USERS: tuple[DemoUser, ...] = (
    *(u for u in DEMO_USERS if u.username in ("alice", "bob", "carol")),
    *BENCH_PEOPLE,
)
_TIMEOUT = 30
PREBUILT_PER_CLIENT = 256
"""Signed AuthnRequests each client builds while it sets up, before the start signal. python3-saml builds
and signs one in about 2 ms: inside the loop that is the load generator competing with the IdP for the same
two cores. The IdP answers each request ID once (and only within [idp] request_lifetime of its
IssueInstant), so none is reused: a client that runs through its batch builds one per call from then on."""


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

    def fresh(self, count: int = PREBUILT_PER_CLIENT) -> Iterator[SignedRequest]:
        """count requests built now, then a new one per call: never the same request twice."""
        ready = [self.signed_redirect() for _ in range(count)]
        return itertools.chain(ready, iter(self.signed_redirect, None))

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


@dataclass(frozen=True)
class Pages:
    """What a browser looks for on one IdP's pages: the field that tells its login form from other forms, and
    the marker and form of its auto-POST page."""

    login_field: str
    answer_marker: str
    answer_form: str | None
    """The id of the auto-POST page's form; None: the page's first form."""

    def full_login(self, http: httpx.Client, request: SignedRequest, user: DemoUser) -> ResponseSample:
        """The SP's request (the login page comes with the answer, or after redirects), the form read, the
        password posted."""
        page = http.get(request.url, follow_redirects=True, timeout=_TIMEOUT)
        if page.status_code != 200:
            raise FlowError(f"login page: HTTP {page.status_code} at {page.url}: {_snippet(page.text)}")
        action, fields = login_form_fields(str(page.url), page.text, None)
        if self.login_field not in fields:
            raise FlowError(f"no login form with a {self.login_field} at {page.url}: {_snippet(page.text)}")
        fields.update(username=user.username, password=user.password)
        answer = http.post(action, data=fields, timeout=_TIMEOUT)
        return self.auto_post(answer, request.request_id)

    def auto_post(self, r: httpx.Response, request_id: str) -> ResponseSample:
        if r.status_code != 200 or self.answer_marker not in r.text:
            raise FlowError(f"expected the auto-POST page, got HTTP {r.status_code} at {r.url}: {_snippet(r.text)}")
        action, fields = login_form_fields(str(r.url), r.text, self.answer_form)
        if not fields.get("SAMLResponse"):
            raise FlowError("the auto-POST form carries no SAMLResponse")
        return ResponseSample(request_id, action, fields)


OURS = Pages("csrf_token", 'id="saml-post"', "saml-post")
"""GET /saml/sso answers with the login form (CSRF token) or, in an SSO session, the auto-POST page."""


class SsoSessionClient:
    """A browser that signed in once and then visits the SP again and again: the IdP answers from the SSO
    session with a freshly signed response, no password and no LDAP."""

    def __init__(self, requests_: AuthnRequests, user: DemoUser, pages: Pages | None = None) -> None:
        """``pages``: another IdP's (bench.php_idp.PAGES); ours by default."""
        self._pages = pages or OURS
        self._requests = requests_.fresh()
        self._http = httpx.Client()
        sample = self._pages.full_login(self._http, requests_.signed_redirect(), user)
        requests_.validate(sample)

    def prepare(self) -> SignedRequest:
        return next(self._requests)

    def call(self, prepared: SignedRequest) -> ResponseSample:
        r = self._http.get(prepared.url, timeout=_TIMEOUT)
        return self._pages.auto_post(r, prepared.request_id)


class PasswordLoginClient:
    """One person signing in again and again, each time in a new browser (an empty cookie jar):
    AuthnRequest, login page, password, signed response. The TCP connection is kept across sign-ins, as a
    browser keeps it across tabs."""

    def __init__(self, requests_: AuthnRequests, user: DemoUser, pages: Pages | None = None) -> None:
        """``pages``: another IdP's (bench.php_idp.PAGES); ours by default."""
        self._pages = pages or OURS
        self._requests = requests_.fresh()
        self._user = user
        self._http = httpx.Client()

    def prepare(self) -> tuple[SignedRequest, DemoUser]:
        self._http.cookies.clear()
        return next(self._requests), self._user

    def call(self, prepared: tuple[SignedRequest, DemoUser]) -> ResponseSample:
        request, user = prepared
        return self._pages.full_login(self._http, request, user)


_FORM = re.compile(r"<form\b[^>]*>", re.IGNORECASE)
_INPUT = re.compile(r"<input\b[^>]*>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r'([a-zA-Z_:-]+)\s*=\s*"([^"]*)"')


def login_form_fields(url: str, page: str, form_id: str | None) -> tuple[str, dict[str, str]]:
    """The action and the named inputs of the first form (with id form_id), read with regular expressions:
    an HTML parser cost the load generator more CPU than the IdP spent on some requests. Enough for our
    own two templates, which python3-saml's checks of the kept samples then vouch for."""
    for match in _FORM.finditer(page):
        form = _attributes(match.group(0))
        if form_id is not None and form.get("id") != form_id:
            continue
        end = page.find("</form>", match.end())
        body = page[match.end() : end if end >= 0 else len(page)]
        fields = {}
        for tag in _INPUT.findall(body):
            attrs = _attributes(tag)
            if attrs.get("name") and attrs.get("type") != "submit":
                fields[attrs["name"]] = attrs.get("value", "")
        return urljoin(url, form.get("action") or url), fields
    raise FlowError(f"no form{' ' + form_id if form_id else ''} at {url}")


def _attributes(tag: str) -> dict[str, str]:
    return {name.lower(): html.unescape(value) for name, value in _ATTRIBUTE.findall(tag)}


def _request_data(url: str, *, post: dict[str, Any] | None = None) -> dict[str, Any]:
    parts = urlsplit(url)
    return {
        "https": "on" if parts.scheme == "https" else "off",
        "http_host": parts.netloc,
        "script_name": parts.path,
        "get_data": {},
        "post_data": post or {},
    }


def _snippet(text: str) -> str:
    return " ".join(text.split())[:300]
