"""Alibaba Mail (阿里邮箱) Open API v2 as a mailbox ``Provider``.

The contract we follow. Documented publicly: the token endpoint (``POST /oauth2/v2.0/token``, form
fields ``grant_type=client_credentials``, ``client_id``, ``client_secret``; answer ``access_token``,
``token_type``, ``expires_in``), ``Authorization: bearer <token>``, users under ``/v2/users`` and
departments under ``/v2/departments``, freezing with ``PATCH {"status": "FREEZE"}`` (``"NORMAL"``
undoes it), cursor paging (``cursor`` + ``size`` in, ``nextCursor`` + ``hasMore`` out), errors as JSON
``{detailErrorCode, message, developerMessage}``, and 40 requests/s per mail domain shared by every app.

Where the public documents are silent we chose, and the emulator (``idp/demo/alimail_emulator.py``) holds the
same choices: user fields ``email, name, firstName, lastName, departmentIds, jobTitle, phone,
employeeNo, status``; ``GET|PATCH|DELETE /v2/users/{id or email}``; departments ``{id, name,
parentId}`` with ``parentId`` empty at the top, listed as children with ``GET
/v2/departments?parentId=``, created with ``POST /v2/departments {name, parentId}``; a page holds at
most 100 items; ``Retry-After`` in seconds on 429.

Every request (the token, department look-ups and creates, retries, the repeat after a 401) goes
through one ``_send``: paced by the shared rate limiter, then held inside the API's window of 40
arrivals per second by the shared ``ArrivalWindow`` until it is answered. Every call has timeouts and
is retried on 429 / 5xx / dropped connections / timeouts by ``RetryPolicy``. A 401 renews the token
once and repeats the call.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from idp.provisioning.provider import (
    SPEC_FIELDS,
    Conflict,
    Mailbox,
    MailboxSpec,
    NotFound,
    RateLimited,
    Rejected,
    Unavailable,
    check_changes,
)
from idp.provisioning.ratelimit import ArrivalWindow, RateLimiter, make_arrival_window, make_rate_limiter
from idp.provisioning.retry import RetryPolicy, parse_retry_after
from idp.settings import AlimailSettings

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 100
TOKEN_PATH = "/oauth2/v2.0/token"  # noqa: S105 - a URL path, not a secret


def _error_fields(response: httpx.Response) -> tuple[str, str, str]:
    """(code, message, developer message) from an error body; tolerant of OAuth2-style bodies too."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = response.text.strip()[:200]
        return "", text or response.reason_phrase, ""
    code = str(body.get("detailErrorCode") or body.get("code") or body.get("error") or "")
    message = str(body.get("message") or body.get("error_description") or response.reason_phrase)
    return code, message, str(body.get("developerMessage") or "")


def raise_for_status(response: httpx.Response, what: str) -> None:
    """Turn a non-2xx answer into the typed error that says what to do about it."""
    status = response.status_code
    if status < 300:
        return
    code, message, developer = _error_fields(response)
    detail = f"{what}: {code + ': ' if code else ''}{message}"
    if status == 404:
        raise NotFound(detail)
    if status == 409:
        raise Conflict(detail)
    if status == 429:
        raise RateLimited(detail, retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if status >= 500:
        raise Unavailable(f"{detail} (HTTP {status})")
    raise Rejected(code or f"HTTP{status}", message, developer, status)


class _TokenCache:
    """One access token, reused until shortly before it expires; renewed when the API says 401."""

    def __init__(self, fetch: Any, clock: Callable[[], float]) -> None:
        self._fetch = fetch
        self._clock = clock
        self._token = ""
        self._expires_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:  # held while fetching, so concurrent threads share one renewal
            if not self._token or self._clock() >= self._expires_at:
                token, expires_in = self._fetch()
                # Renew a little early: a token that expires in flight costs a 401 and a retry.
                margin = min(60.0, expires_in * 0.1)
                self._token, self._expires_at = token, self._clock() + expires_in - margin
            return self._token

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = ""


class AlimailProvider:
    """Mailboxes of one mail domain in Alibaba Mail."""

    def __init__(
        self,
        settings: AlimailSettings,
        limiter: RateLimiter | None = None,
        window: ArrivalWindow | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``limiter`` and ``window`` default to ones keyed by the mail domain (shared through Redis when
        ``redis_url`` is set); pass them to share one pair between several providers in a process.
        ``clock`` times the access token's early renewal; tests pass one they can move."""
        self.settings = settings
        self._http = httpx.Client(
            base_url=settings.host,
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            headers={"User-Agent": "ad-sso-bridge", "Accept": "application/json"},
        )
        key = f"alimail:ratelimit:{settings.mail_domain.lower()}"
        self._owned: list[object] = []
        self._limiter = limiter or self._own(
            make_rate_limiter(
                settings.rate_per_second, key=key, redis_url=settings.redis_url, max_wait=settings.rate_limit_max_wait
            )
        )
        self._window = window or self._own(
            make_arrival_window(
                settings.api_limit_per_second,
                key=f"{key}:window",
                redis_url=settings.redis_url,
                max_wait=settings.rate_limit_max_wait,
                # About the longest a request can be on its way (httpx times out the pool, write and read
                # phases at read_timeout each); it matters only for a node that dies mid-request.
                in_flight_bound=settings.connect_timeout + 3 * settings.read_timeout,
            )
        )
        self._retry = RetryPolicy(settings.max_attempts, settings.retry_base_wait, settings.max_retry_wait)
        self._tokens = _TokenCache(self._fetch_token, clock)
        self._dept_lock = threading.Lock()
        self._dept_paths: dict[str, tuple[str, ...]] = {}
        self._dept_ids: dict[tuple[str, ...], str] = {}

    # -- transport ---------------------------------------------------------------------------

    def _own(self, limiter: Any) -> Any:
        self._owned.append(limiter)
        return limiter

    def _send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        self._limiter.acquire()
        try:
            with self._window.slot():
                return self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise Unavailable(f"{what}: {self.settings.host} did not answer in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise Unavailable(f"{what}: connection to {self.settings.host} failed ({type(exc).__name__})") from exc

    def _fetch_token(self) -> tuple[str, float]:
        data = {
            "grant_type": "client_credentials",
            "client_id": self.settings.client_id,
            "client_secret": self.settings.secret(),
        }
        response = self._send("POST", TOKEN_PATH, "get access token", data=data)
        if response.status_code in (400, 401, 403):
            code, message, developer = _error_fields(response)
            raise Rejected(
                code or "InvalidClient",
                f"{message}; check alimail client_id and client_secret",
                developer,
                response.status_code,
            )
        raise_for_status(response, "get access token")
        body = response.json()
        return str(body["access_token"]), float(body.get("expires_in") or 3600)

    def _attempt(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        token = self._tokens.get()
        response = self._send(method, path, what, headers={"Authorization": f"bearer {token}"}, **kwargs)
        if response.status_code == 401:
            log.info("%s: access token refused, renewing it", what)
            self._tokens.invalidate(token)
            token = self._tokens.get()
            response = self._send(method, path, what, headers={"Authorization": f"bearer {token}"}, **kwargs)
        raise_for_status(response, what)
        return response

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        return self._retry.call(lambda: self._attempt(method, path, what, **kwargs), what)

    @staticmethod
    def _user_path(id_or_email: str) -> str:
        return f"/v2/users/{quote(id_or_email, safe='@')}"

    # -- departments -------------------------------------------------------------------------

    def _department_path(self, dept_id: str) -> tuple[str, ...]:
        if dept_id in self._dept_paths:
            return self._dept_paths[dept_id]
        dept = self._call("GET", f"/v2/departments/{quote(dept_id, safe='')}", "read department").json()
        parent = str(dept.get("parentId") or "")
        path = (*self._department_path(parent), str(dept["name"])) if parent else (str(dept["name"]),)
        with self._dept_lock:
            self._dept_paths[dept_id], self._dept_ids[path] = path, dept_id
        return path

    def _find_child_department(self, parent_id: str, name: str) -> str | None:
        cursor = ""
        while True:
            page = self._call(
                "GET",
                "/v2/departments",
                "list departments",
                params={"parentId": parent_id, "cursor": cursor, "size": MAX_PAGE_SIZE},
            ).json()
            for dept in page.get("departments") or []:
                if dept.get("name") == name:
                    return str(dept["id"])
            cursor = str(page.get("nextCursor") or "")
            if not page.get("hasMore") or not cursor:
                return None

    def ensure_department(self, path: tuple[str, ...]) -> str:
        """The id of the department at ``path``, creating missing levels (another node may race us)."""
        parent = ""
        for depth in range(1, len(path) + 1):
            prefix, name = path[:depth], path[depth - 1]
            dept_id = self._dept_ids.get(prefix) or self._find_child_department(parent, name)
            if dept_id is None:
                try:
                    body = {"name": name, "parentId": parent}
                    dept_id = str(self._call("POST", "/v2/departments", "create department", json=body).json()["id"])
                except Conflict:
                    dept_id = self._find_child_department(parent, name)
                    if dept_id is None:
                        raise
            with self._dept_lock:
                self._dept_ids[prefix], self._dept_paths[dept_id] = dept_id, prefix
            parent = dept_id
        return parent

    # -- mapping -----------------------------------------------------------------------------

    def _to_mailbox(self, user: Mapping[str, Any]) -> Mailbox:
        def text(key: str) -> str | None:
            return str(user.get(key) or "") or None

        dept_ids = user.get("departmentIds") or []
        return Mailbox(
            id=str(user["id"]),
            email=str(user["email"]),
            display_name=str(user.get("name") or ""),
            given_name=text("firstName"),
            surname=text("lastName"),
            department=self._department_path(str(dept_ids[0])) if dept_ids else (),
            title=text("jobTitle"),
            phone=text("phone"),
            employee_number=text("employeeNo"),
            frozen=user.get("status") == "FREEZE",
        )

    def _to_body(self, fields: Mapping[str, Any], creating: bool) -> dict[str, Any]:
        names = {
            "email": "email",
            "display_name": "name",
            "given_name": "firstName",
            "surname": "lastName",
            "title": "jobTitle",
            "phone": "phone",
            "employee_number": "employeeNo",
        }
        body: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "department":
                body["departmentIds"] = [self.ensure_department(tuple(value))] if value else []
            elif value is not None:
                body[names[key]] = value
            elif not creating:
                body[names[key]] = ""  # clearing a field on update
        return body

    # -- Provider ----------------------------------------------------------------------------

    def get(self, id_or_email: str) -> Mailbox:
        return self._to_mailbox(self._call("GET", self._user_path(id_or_email), "read mailbox").json())

    def find(self, email: str) -> Mailbox | None:
        try:
            return self.get(email)
        except NotFound:
            return None

    def list_all(self, page_size: int = MAX_PAGE_SIZE) -> Iterator[Mailbox]:
        size = max(1, min(page_size, MAX_PAGE_SIZE))
        cursor = ""
        while True:
            page = self._call("GET", "/v2/users", "list mailboxes", params={"cursor": cursor, "size": size}).json()
            for user in page.get("users") or []:
                yield self._to_mailbox(user)
            cursor = str(page.get("nextCursor") or "")
            if not page.get("hasMore") or not cursor:
                return

    def create(self, spec: MailboxSpec) -> Mailbox:
        fields = {name: getattr(spec, name) for name in SPEC_FIELDS}
        body = self._to_body(fields, creating=True)
        return self._to_mailbox(self._call("POST", "/v2/users", f"create mailbox {spec.email}", json=body).json())

    def update(self, id_or_email: str, changes: Mapping[str, Any]) -> Mailbox:
        check_changes(changes)
        if not changes:
            return self.get(id_or_email)
        body = self._to_body(changes, creating=False)
        response = self._call("PATCH", self._user_path(id_or_email), f"update mailbox {id_or_email}", json=body)
        return self._to_mailbox(response.json())

    def _set_status(self, id_or_email: str, status: str) -> Mailbox:
        what = f"set mailbox {id_or_email} to {status}"
        return self._to_mailbox(self._call("PATCH", self._user_path(id_or_email), what, json={"status": status}).json())

    def freeze(self, id_or_email: str) -> Mailbox:
        return self._set_status(id_or_email, "FREEZE")

    def unfreeze(self, id_or_email: str) -> Mailbox:
        return self._set_status(id_or_email, "NORMAL")

    def delete(self, id_or_email: str) -> None:
        self._call("DELETE", self._user_path(id_or_email), f"delete mailbox {id_or_email}")

    def close(self) -> None:
        self._http.close()
        for owned in self._owned:
            close = getattr(owned, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> AlimailProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
