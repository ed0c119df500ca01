"""Load-test clients that keep going through faults and write down how every call ended.

bench.load stops a client after a run of errors and keeps only the first error's text: right for measuring
capacity, blind to a fault. These clients never raise: each call appends one record (when, how long, how it
ended, the request id nginx gave it, the session cookie it left) to a file of its process, and the caller
reads them all after the step (``read_records``).

How a call ended, as the person would have seen it:

- ``ok``: the signed response reached the browser (the auto-POST page);
- ``session_lost``: an SSO-session client was sent to the login page (it signs in again and goes on);
- ``idp_try_again``: our "try again" page (HTTP 503, data-reason "unavailable");
- ``idp_<reason>``: another page of ours (``idp_internal`` is a 500, ``idp_directory_unavailable`` the
  refusal when no DC answers, ...);
- ``login_refused``: the login form again, with why (the audit row's reason is added by the report);
- ``nginx_page``: the site's own error page (no node answered, or a node died mid-request);
- ``nginx_bare``: nginx's built-in error page (the site's error_page is missing);
- ``connect_error`` / ``timeout``: no HTTP answer at all; ``http_<status>``: anything else.
"""

from __future__ import annotations

import html
import json
import os
import random
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.flows import AuthnRequests, SignedRequest
from idp.demo.samba_dc import DEMO_USERS, DemoUser

_TIMEOUT = 30
_REASON = re.compile(r'data-reason="([^"]+)"')
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"')
NGINX_PAGE_MARK = "Sign-in is busy for a moment"
SESSION_COOKIE = "idp_session"
JITTER_SECONDS = 0.2
FAULT_PEOPLE: tuple[DemoUser, ...] = tuple(u for u in DEMO_USERS if u.state == "normal")
"""Every DC made by idp.demo.samba_dc has them (the tests' DC too): client i signs in as person i mod 4."""


@dataclass
class Record:
    flow: str
    """``password`` (an empty cookie jar, the form, the password) or ``sso`` (a browser already signed in)."""
    client: int
    at: float
    """CLOCK_MONOTONIC at the start of the call (system-wide, so it compares with the fault's times)."""
    took: float
    outcome: str
    status: int | None = None
    request_id: str | None = None
    """X-Request-Id of the last answer (for a password sign-in: the POST's, which its audit row carries)."""
    session_cookie: str | None = None
    """The session cookie the browser held after a failed password sign-in: whether it signs in is checked
    afterwards (``signed_in``)."""
    shows_request_id: bool | None = None
    """For an error page: whether it shows the request id to read to the help desk."""


def outcome_of(r: httpx.Response) -> str:
    text = r.text
    found = _REASON.search(text)
    if found:
        return "idp_try_again" if found.group(1) == "unavailable" else f"idp_{found.group(1)}"
    if NGINX_PAGE_MARK in text:
        return "nginx_page"
    if 'name="password"' in text and 'id="error"' in text:
        return "login_refused"
    if "<center>nginx" in text:
        return "nginx_bare"
    return f"http_{r.status_code}"


def _is_post_form(r: httpx.Response) -> bool:
    return r.status_code == 200 and 'id="saml-post"' in r.text and "SAMLResponse" in r.text


def _is_login_form(r: httpx.Response) -> bool:
    return r.status_code == 200 and 'name="password"' in r.text


class _Recorder:
    def __init__(self, folder: Path, index: int) -> None:
        self.folder = folder
        self._path = folder / f"{os.getpid()}-{index}.jsonl"

    def write(self, record: Record) -> None:
        with self._path.open("a") as f:
            f.write(json.dumps(asdict(record)) + "\n")


class FaultClient:
    """One browser. ``password``: every call a full sign-in with an empty cookie jar. ``sso``: signs in once at
    set-up, then every call is an SP asking again (answered from the SSO session, no password)."""

    def __init__(self, requests_: AuthnRequests, flow: str, index: int, folder: Path) -> None:
        self._requests = requests_.fresh(64)
        self._flow = flow
        self._index = index
        self._user = FAULT_PEOPLE[index % len(FAULT_PEOPLE)]
        self._record = _Recorder(folder, index)
        self._http = httpx.Client(timeout=_TIMEOUT)
        if flow == "sso":
            try:
                r = self._password(next(self._requests), self._user)
            except httpx.HTTPError as exc:
                raise self._setup_failed(f"{exc!r}") from exc
            if not _is_post_form(r):
                raise self._setup_failed(f"{outcome_of(r)} (HTTP {r.status_code} at {r.url})")

    def _setup_failed(self, why: str) -> RuntimeError:
        """bench.load reports one client's set-up error, often another's "a client failed": keep each here."""
        with (self._record.folder / "setup-errors.txt").open("a") as f:
            f.write(f"client {self._index}: {why}\n")
        return RuntimeError(f"client {self._index} could not sign in at set-up: {why}")

    def prepare(self) -> SignedRequest:
        if self._flow == "password":
            self._http.cookies.clear()
        return next(self._requests)

    def call(self, prepared: SignedRequest) -> Any:
        # People do not click in step: without this, the paced schedule and nginx's round robin lock into a
        # pattern that sends every password POST to the same node.
        time.sleep(random.uniform(0, JITTER_SECONDS))
        began = time.monotonic()
        record = Record(self._flow, self._index, began, 0.0, "ok")
        try:
            r = self._password(prepared, self._user) if self._flow == "password" else self._sso(prepared, record)
            record.status = r.status_code
            record.request_id = r.headers.get("X-Request-Id")
            if not _is_post_form(r):
                record.outcome = outcome_of(r)
                record.shows_request_id = bool(record.request_id) and record.request_id in r.text
                if self._flow == "password":
                    record.session_cookie = self._http.cookies.get(SESSION_COOKIE)
        except httpx.TimeoutException:
            record.outcome = "timeout"
        except httpx.TransportError:
            record.outcome = "connect_error"
        record.took = time.monotonic() - began
        self._record.write(record)
        return None

    def _password(self, request: SignedRequest, user: DemoUser) -> httpx.Response:
        page = self._http.get(request.url, follow_redirects=True)
        if not _is_login_form(page):
            return page
        return self._post_password(page, user)

    def _post_password(self, page: httpx.Response, user: DemoUser) -> httpx.Response:
        action = re.search(r'<form[^>]*action="([^"]*)"', page.text)
        fields = {name: html.unescape(value) for name, value in _HIDDEN.findall(page.text)}
        fields.update(username=user.username, password=user.password)
        target = page.url.join(html.unescape(action.group(1))) if action else page.url
        return self._http.post(target, data=fields)

    def _sso(self, request: SignedRequest, record: Record) -> httpx.Response:
        r = self._http.get(request.url, follow_redirects=True)
        if _is_login_form(r):
            # The session is gone: a person would sign in again, and so does the client. The record says
            # "session_lost" unless signing in again failed too (then it says how).
            record.outcome = "session_lost"
            return self._post_password(r, self._user)
        return r


def read_records(folder: Path) -> list[Record]:
    records = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            records.append(Record(**json.loads(line)))
    return sorted(records, key=lambda r: r.at)


def signed_in(base_url: str, cookie: str) -> bool | None:
    """Whether a session cookie signs its browser in now (None: the IdP could not say)."""
    with httpx.Client(cookies={SESSION_COOKIE: cookie}, timeout=_TIMEOUT) as http:
        r = http.get(base_url + "/")
    if r.status_code in (301, 302, 303):
        return False
    if r.status_code == 200:
        return True
    return None
