"""Alibaba Mail (阿里邮箱) Open API v2 as a mailbox ``Provider``, mail groups and aliases included.

What we send and read, field by field, and which public page (or, where none, which SDK's source)
each field rests on, is the table in ``idp/provisioning/alimail_contract.py``; the emulator follows the
same table and the tests fail if this client sends a field it does not list. Answers are read
tolerantly: unknown fields are ignored and a missing optional field takes its default, so only a
missing ``id`` or ``email`` is an error (``Rejected`` with code ``InvalidResponse``).

Every request (the token, department look-ups and creates, retries, the repeat after a 401) goes
through one ``_send``: paced by the shared rate limiter, then held inside the API's window of 40
arrivals per second by the shared ``ArrivalWindow`` until it is answered. Every call has timeouts and
is retried on 429 / 5xx / dropped connections / timeouts by ``RetryPolicy``. A 401 renews the token
once and repeats the call. Every create (mailbox, department, mail group, alias) goes through
``RetryPolicy.create``: after an attempt that may have been carried out, it looks the object up by its
address (a department: its parent and name) before trying again, so a timeout never makes two.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from idp.provisioning.alimail_contract import GROUP_PAGE_SIZE, MAX_PAGE_SIZE, ROOT_DEPARTMENT
from idp.provisioning.provider import (
    SPEC_FIELDS,
    Conflict,
    Mailbox,
    MailboxSpec,
    MailGroup,
    MailGroupSpec,
    NotFound,
    RateLimited,
    Rejected,
    Unavailable,
    changed_fields,
    check_changes,
    normal_addresses,
)
from idp.provisioning.ratelimit import ArrivalWindow, RateLimiter, make_arrival_window, make_rate_limiter
from idp.provisioning.retry import RetryPolicy, parse_retry_after
from idp.settings import AlimailSettings

log = logging.getLogger(__name__)

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


def _body(response: httpx.Response, what: str) -> dict[str, Any]:
    """A successful answer's JSON object; an empty body (204) is an empty object."""
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Rejected("InvalidResponse", f"{what}: the answer is not a JSON object")
    return body


def _required(obj: Mapping[str, Any], key: str, what: str) -> str:
    """A field no answer can do without; its absence is the API's fault, reported as such."""
    value = obj.get(key)
    if value is None or value == "":
        raise Rejected("InvalidResponse", f"{what}: the answer carries no {key!r}")
    return str(value)


def _texts(value: Any) -> tuple[str, ...]:
    """A list of strings from an answer, tolerating null and stray non-strings."""
    return tuple(str(v) for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


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


class TokenCache:
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
        self._tokens = TokenCache(self._fetch_token, clock)
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
            code, _, _ = _error_fields(response)
            # The API's own words ("client_id or client_secret is wrong", twice: message and developerMessage)
            # say less than this, and repeated on a page they read as three errors.
            raise Rejected(
                code or "InvalidClient",
                "Alibaba Mail refused the app's credentials; check client_id and the secret in "
                "client_secret_file under [provisioning.alimail]",
                status=response.status_code,
            )
        what = "get access token"
        raise_for_status(response, what)
        body = _body(response, what)
        try:
            lifetime = float(body.get("expires_in") or 3600)
        except (TypeError, ValueError):
            lifetime = 3600.0  # the API's usual lifetime; a 401 renews it early if it was shorter
        return _required(body, "access_token", what), lifetime

    def _attempt(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        token = self._tokens.get()
        response = self._send(method, path, what, headers={"Authorization": f"bearer {token}"}, **kwargs)
        if response.status_code == 401:
            log.info("%s: access token refused, renewing it", what)
            self._tokens.invalidate(token)
            token = self._tokens.get()
            response = self._send(method, path, what, headers={"Authorization": f"bearer {token}"}, **kwargs)
        raise_for_status(response, what)
        return _body(response, what)

    def _call(self, method: str, path: str, what: str, **kwargs: Any) -> dict[str, Any]:
        return self._retry.call(lambda: self._attempt(method, path, what, **kwargs), what)

    @staticmethod
    def _user_path(id_or_email: str) -> str:
        return f"/v2/users/{quote(id_or_email, safe='@')}"

    def _cursor_pages(self, path: str, key: str, what: str, size: int) -> Iterator[Mapping[str, Any]]:
        """Every item under ``key`` of every page: ``cursor`` + ``size`` in, ``nextCursor`` + ``hasMore`` out."""
        cursor = ""
        while True:
            page = self._call("GET", path, what, params={"cursor": cursor, "size": size})
            for item in page.get(key) or []:
                if isinstance(item, Mapping):
                    yield item
            cursor = str(page.get("nextCursor") or "")
            if not page.get("hasMore") or not cursor:
                return

    # -- departments -------------------------------------------------------------------------

    def _department_path(self, dept_id: str) -> tuple[str, ...]:
        if not dept_id or dept_id == ROOT_DEPARTMENT:
            return ()
        if dept_id in self._dept_paths:
            return self._dept_paths[dept_id]
        what = "read department"
        dept = self._call("GET", f"/v2/departments/{quote(dept_id, safe='')}", what)
        path = (*self._department_path(str(dept.get("parentId") or "")), _required(dept, "name", what))
        with self._dept_lock:
            self._dept_paths[dept_id], self._dept_ids[path] = path, dept_id
        return path

    def _find_child_department(self, parent_id: str, name: str) -> str | None:
        """The id of ``parent_id``'s child called ``name``; children are paged by ``offset`` and ``limit``."""
        offset = 0
        while True:
            page = self._call(
                "GET",
                f"/v2/departments/{quote(parent_id, safe='')}/departments",
                "list departments",
                params={"offset": offset, "limit": MAX_PAGE_SIZE},
            )
            children = [d for d in page.get("departments") or [] if isinstance(d, Mapping)]
            for dept in children:
                if dept.get("name") == name and dept.get("id"):
                    return str(dept["id"])
            offset += len(children)
            total = page.get("total")
            # Without a total, a short page is the last one.
            if len(children) < MAX_PAGE_SIZE or (isinstance(total, int) and offset >= total):
                return None

    def _create_department(self, parent_id: str, name: str) -> str:
        what = f"create department {name}"
        body = {"name": name, "parentId": parent_id}

        # Another node may create it after we looked: a department is only its name, so theirs is ours.
        dept_id, _ = self._retry.create(
            lambda: _required(self._attempt("POST", "/v2/departments", what, json=body), "id", what),
            lambda: self._find_child_department(parent_id, name),
            what,
            adopt=True,
        )
        return dept_id

    def ensure_department(self, path: tuple[str, ...]) -> str:
        """The id of the department at ``path``, creating missing levels (another node may race us)."""
        parent = ROOT_DEPARTMENT
        for depth in range(1, len(path) + 1):
            prefix, name = path[:depth], path[depth - 1]
            dept_id = self._dept_ids.get(prefix) or self._find_child_department(parent, name)
            if dept_id is None:
                dept_id = self._create_department(parent, name)
            with self._dept_lock:
                self._dept_ids[prefix], self._dept_paths[dept_id] = dept_id, prefix
            parent = dept_id
        return parent

    # -- mapping -----------------------------------------------------------------------------

    def _to_mailbox(self, user: Mapping[str, Any], what: str = "read mailbox") -> Mailbox:
        def text(key: str) -> str | None:
            value = user.get(key)
            return str(value) if value not in (None, "") else None

        dept_ids = _texts(user.get("departmentIds"))
        return Mailbox(
            id=_required(user, "id", what),
            email=_required(user, "email", what),
            display_name=str(user.get("name") or ""),
            given_name=text("firstName"),
            surname=text("lastName"),
            department=self._department_path(dept_ids[0]) if dept_ids else (),
            title=text("jobTitle"),
            phone=text("phone"),
            employee_number=text("employeeNo"),
            aliases=_texts(user.get("emailAliases")),
            frozen=user.get("status") == "FREEZE",
        )

    def _to_body(self, fields: Mapping[str, Any], creating: bool) -> dict[str, Any]:
        """The JSON body for ``fields`` (MailboxSpec names); aliases have calls of their own."""
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
            if key == "aliases":
                continue
            if key == "department":
                body["departmentIds"] = [self.ensure_department(tuple(value))] if value else []
            elif value is not None:
                body[names[key]] = value
            elif not creating:
                body[names[key]] = ""  # clearing a field on update
        return body

    # -- mailboxes ---------------------------------------------------------------------------

    def get(self, id_or_email: str) -> Mailbox:
        return self._to_mailbox(self._call("GET", self._user_path(id_or_email), "read mailbox"))

    def find(self, email: str) -> Mailbox | None:
        try:
            return self.get(email)
        except NotFound:
            return None

    def list_all(self, page_size: int = MAX_PAGE_SIZE) -> Iterator[Mailbox]:
        size = max(1, min(page_size, MAX_PAGE_SIZE))
        for user in self._cursor_pages("/v2/users", "users", "list mailboxes", size):
            yield self._to_mailbox(user, "list mailboxes")

    def create(self, spec: MailboxSpec) -> Mailbox:
        """Create the mailbox; Conflict when one with that address existed before we tried.

        A retry after a timeout finds the mailbox our first attempt made and reconciles it to ``spec``."""
        what = f"create mailbox {spec.email}"
        body = self._to_body({name: getattr(spec, name) for name in SPEC_FIELDS}, creating=True)
        mailbox, created = self._retry.create(
            lambda: self._to_mailbox(self._attempt("POST", "/v2/users", what, json=body), what),
            lambda: self.find(spec.email),
            what,
        )
        if not created:
            changes = changed_fields(mailbox.spec(), spec)
            return self.update(mailbox.id, changes) if changes else mailbox
        return self._set_aliases(mailbox, spec.aliases) if spec.aliases else mailbox

    def update(self, id_or_email: str, changes: Mapping[str, Any]) -> Mailbox:
        check_changes(changes)
        if not changes:
            return self.get(id_or_email)
        fields = {key: value for key, value in changes.items() if key != "aliases"}
        mailbox = None
        if fields:
            what = f"update mailbox {id_or_email}"
            body = self._to_body(fields, creating=False)
            mailbox = self._to_mailbox(self._call("PATCH", self._user_path(id_or_email), what, json=body), what)
        if "aliases" in changes:
            mailbox = self._set_aliases(mailbox or self.get(id_or_email), changes["aliases"])
        return mailbox or self.get(id_or_email)

    def _set_aliases(self, mailbox: Mailbox, wanted: tuple[str, ...]) -> Mailbox:
        """Add the aliases ``mailbox`` lacks and remove those not ``wanted``, one call each (the API's way)."""
        want = set(normal_addresses(wanted, excluding=mailbox.email))
        have = set(mailbox.aliases)
        for alias in sorted(want - have):
            mailbox = self._add_alias(mailbox, alias)
        for alias in sorted(have - want):
            what = f"remove alias {alias} from {mailbox.email}"
            path = f"{self._user_path(mailbox.id)}/emailAliases"
            try:
                mailbox = self._to_mailbox(self._call("DELETE", path, what, json={"alias": alias}), what)
            except NotFound:
                mailbox = self.get(mailbox.id)  # a retried removal: gone already is what we wanted
                if alias in mailbox.aliases:
                    raise
        return mailbox

    def _add_alias(self, mailbox: Mailbox, alias: str) -> Mailbox:
        what = f"add alias {alias} to {mailbox.email}"

        def holding() -> Mailbox | None:
            current = self.get(mailbox.id)
            return current if alias in current.aliases else None

        def attempt() -> Mailbox:
            path = f"{self._user_path(mailbox.id)}/emailAliases"
            return self._to_mailbox(self._attempt("POST", path, what, json={"alias": alias}), what)

        added, _ = self._retry.create(attempt, holding, what)
        return added

    def _set_status(self, id_or_email: str, status: str) -> Mailbox:
        what = f"set mailbox {id_or_email} to {status}"
        return self._to_mailbox(self._call("PATCH", self._user_path(id_or_email), what, json={"status": status}))

    def freeze(self, id_or_email: str) -> Mailbox:
        return self._set_status(id_or_email, "FREEZE")

    def unfreeze(self, id_or_email: str) -> Mailbox:
        return self._set_status(id_or_email, "NORMAL")

    def delete(self, id_or_email: str) -> None:
        self._call("DELETE", self._user_path(id_or_email), f"delete mailbox {id_or_email}")

    # -- mail groups -------------------------------------------------------------------------

    supports_groups = True

    @staticmethod
    def _group_path(id_or_email: str) -> str:
        return f"/v2/groups/{quote(id_or_email, safe='@')}"

    def _members(self, group_id: str) -> tuple[str, ...]:
        path = f"{self._group_path(group_id)}/members"
        entries = self._cursor_pages(path, "members", "list mail group members", MAX_PAGE_SIZE)
        return tuple(str(m["email"]) for m in entries if m.get("email"))

    def _to_group(self, group: Mapping[str, Any], what: str, members: tuple[str, ...] | None = None) -> MailGroup:
        group_id = _required(group, "id", what)
        return MailGroup(
            email=_required(group, "email", what),
            name=str(group.get("name") or ""),
            members=self._members(group_id) if members is None else members,
            id=group_id,
        )

    def _find_group(self, id_or_email: str) -> MailGroup | None:
        what = f"read mail group {id_or_email}"
        try:
            return self._to_group(self._call("GET", self._group_path(id_or_email), what), what)
        except NotFound:
            return None

    def list_groups(self) -> Iterator[MailGroup]:
        for group in self._cursor_pages("/v2/groups", "groups", "list mail groups", GROUP_PAGE_SIZE):
            yield self._to_group(group, "list mail groups")

    def create_group(self, spec: MailGroupSpec) -> MailGroup:
        what = f"create mail group {spec.email}"
        body = {"email": spec.email, "name": spec.name}
        # A group that exists already is adopted; a Conflict with no group found is a mailbox at that address.
        group, _ = self._retry.create(
            lambda: self._to_group(self._attempt("POST", "/v2/groups", what, json=body), what, ()),
            lambda: self._find_group(spec.email),
            what,
            adopt=True,
        )
        return self._reconcile_group(group, spec)

    def update_group(self, group_id: str, spec: MailGroupSpec) -> MailGroup:
        group = self._find_group(group_id)
        if group is None:
            raise NotFound(f"update mail group {group_id}: no such group")
        return self._reconcile_group(group, spec)

    def _reconcile_group(self, group: MailGroup, spec: MailGroupSpec) -> MailGroup:
        """Make ``group``'s name and members those of ``spec`` (its address is its identity, never changed)."""
        path = self._group_path(group.id)
        name = group.name
        if spec.name != group.name:
            what = f"rename mail group {group.email}"
            name = self._to_group(self._call("PATCH", path, what, json={"name": spec.name}), what, ()).name
        # Adding a member twice or removing one twice changes nothing, so these are safe to repeat.
        for chunk in _chunks(sorted(set(spec.members) - set(group.members)), MAX_PAGE_SIZE):
            self._call("POST", f"{path}/members", f"add members to {group.email}", json={"members": chunk})
        for chunk in _chunks(sorted(set(group.members) - set(spec.members)), MAX_PAGE_SIZE):
            self._call("DELETE", f"{path}/members", f"remove members from {group.email}", json={"members": chunk})
        return MailGroup(email=group.email, name=name, members=spec.members, id=group.id)

    def delete_group(self, group_id: str) -> None:
        try:
            self._call("DELETE", self._group_path(group_id), f"delete mail group {group_id}")
        except NotFound:
            return  # gone already (a retried delete whose first answer was lost): what we wanted

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
