"""An emulator of the Alibaba Mail Open API v2, with fault injection, for tests and ``idp demo``.

Its routes, the request fields it accepts and the response fields it writes all come from the one
contract table, ``idp/provisioning/alimail_contract.py``: a request field the table does not list is
refused with 400, as the real API refuses what it does not know. Beyond the table it keeps the API's
manners (token expiry, cursor paging, the ``{detailErrorCode, message, developerMessage}`` error body,
409 on duplicates, 40 requests/s per mail domain answered with 429 and ``Retry-After``) and can be
told to misbehave:

    with run_emulator() as emu:
        emu.faults.fail_next(3, status=429, retry_after=0.2)   # a burst of 429s
        emu.faults.fail_next(2, status=503)                    # 5xx
        emu.faults.drop_next(1)                                # connection closed, no response
        emu.faults.time_out_after_applying(1, "/v2/users")     # the create happens, its answer never comes
        emu.faults.latency = 2.0                               # every answer late
        emu.emulator.quirks.extra = {"avatar": {}}             # unknown response fields
        emu.expire_tokens()                                    # next call gets 401

It also speaks the logon contract of ``idp/connectors/alimail_contract.py`` (at the default path and
parameter names of ``[alimail_direct]``): a logon request, signed or carrying a token of the login app,
answers a one-time URL of the small webmail under ``/webmail/``, which accepts it once, before it expires,
for a mailbox that exists and is not frozen. Faults apply to it as to any route
(``path_prefix=LOGIN_PATH``); a login app without the permission is ``login_permitted=False``.

It is a werkzeug WSGI app served on a loopback port in a thread; state lives in memory only.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import html
import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from idp.connectors.alimail_contract import SIGNED_PARAMS, TOKEN_PARAMS, signature
from idp.provisioning.alimail_contract import GROUP_PAGE_SIZE, MAX_PAGE_SIZE, OPERATIONS, ROOT_DEPARTMENT, Operation
from idp.settings import AlimailDirectSettings

USER_STATUSES = ("NORMAL", "FREEZE")

LOGIN_PATH: str = AlimailDirectSettings.model_fields["login_path"].default
"""Where the logon operation is served: the default of ``[alimail_direct] login_path``."""
WEBMAIL_COOKIE = "alimail_webmail"
_LOGIN_ENDPOINTS = ("sso_login", "webmail_sso", "webmail")
_TIMESTAMP_WINDOW_MS = 300_000


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, developer_message: str = "", retry_after: str = ""
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.developer_message = developer_message or message
        self.retry_after = retry_after

    def response(self) -> Response:
        body = {
            "detailErrorCode": self.code,
            "message": self.message,
            "developerMessage": self.developer_message,
        }
        resp = _json(body, self.status)
        if self.retry_after:
            resp.headers["Retry-After"] = self.retry_after
        return resp


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")


def _page(status: int, title: str, text: str) -> Response:
    body = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(title)}</title></head>"
        f'<body><h1>{html.escape(title)}</h1><p id="message">{html.escape(text)}</p></body></html>'
    )
    return Response(body, status=status, mimetype="text/html")


@dataclass
class _Fault:
    kind: str  # "status", "drop" (close the connection unanswered) or "late" (apply, then never answer in time)
    status: int | None
    retry_after: float | None
    path_prefix: str
    method: str | None
    delay: float = 0.0


@dataclass
class Faults:
    """Misbehaviour to inject; each queued fault applies to one matching request, in order."""

    latency: float = 0.0
    _queue: collections.deque[_Fault] = field(default_factory=collections.deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _add(self, times: int, fault: _Fault) -> None:
        with self._lock:
            self._queue.extend(dataclasses.replace(fault) for _ in range(times))

    def fail_next(
        self,
        times: int,
        status: int,
        retry_after: float | None = None,
        path_prefix: str = "/v2/",
        method: str | None = None,
    ) -> None:
        self._add(times, _Fault("status", status, retry_after, path_prefix, method))

    def drop_next(self, times: int = 1, path_prefix: str = "/v2/", method: str | None = None) -> None:
        self._add(times, _Fault("drop", None, None, path_prefix, method))

    def time_out_after_applying(
        self, times: int = 1, path_prefix: str = "/v2/", method: str | None = "POST", delay: float = 1.0
    ) -> None:
        """The request is carried out, but its answer comes ``delay`` seconds late: longer than the client
        waits, so the client cannot know whether it happened."""
        self._add(times, _Fault("late", None, None, path_prefix, method, delay))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self.latency = 0.0

    def take(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._queue:
                if path.startswith(fault.path_prefix) and fault.method in (None, method):
                    self._queue.remove(fault)
                    return fault
        return None


@dataclass
class Quirks:
    """Ways the answers may differ from the table without being wrong, to prove the client tolerant."""

    extra: dict[str, Any] = field(default_factory=dict)
    """Fields added to every user, department and group answered: ones the client does not know."""
    omit: frozenset[str] = frozenset()
    """Fields left out of every object answered (never ``id``): optional ones the client must default."""


@dataclass(frozen=True)
class Call:
    """One request as the emulator saw it, for tests that count, time or inspect calls."""

    at: float
    method: str
    path: str
    status: int
    operation: str = ""
    """The contract table's name for it; empty when no route matched."""
    fields: tuple[str, ...] = ()
    """The request's body (or form) and query field names, as sent."""


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind == "seq":
            return int(value)
    except (ValueError, UnicodeDecodeError):
        pass
    raise ApiError(400, "InvalidParameter.Cursor", "cursor is not valid", f"cursor {cursor!r} was not issued by us")


def _body_fields(request: Request, name: str) -> dict[str, Any]:
    if name == "token":
        return dict(request.form)
    if not request.get_data():
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidParameter.Body", "request body must be a JSON object")
    return body


class AlimailEmulator:
    """The WSGI app and its in-memory state."""

    def __init__(
        self,
        mail_domain: str = "example.com",
        client_id: str = "emulator-app",
        client_secret: str = "emulator-secret",  # noqa: S107 - the emulator's own test credential
        token_ttl: int = 7200,
        rate_limit: float | None = 40.0,
        login_app_code: str = "emulator-login-app",
        login_app_secret: str = "emulator-login-secret",  # noqa: S107 - the emulator's own test credential
        login_sign_algorithm: str = "md5",
        login_ttl: float = 60.0,
        login_permitted: bool = True,
    ) -> None:
        self.mail_domain = mail_domain.lower()
        self.client_id, self.client_secret = client_id, client_secret
        self.token_ttl = token_ttl
        self.rate_limit = rate_limit
        self.faults = Faults()
        self.quirks = Quirks()
        self.calls: collections.deque[Call] = collections.deque(maxlen=100_000)
        self.tokens_issued = 0
        self._tokens: dict[str, float] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._departments: dict[str, dict[str, Any]] = {}
        self._groups: dict[str, dict[str, Any]] = {}
        self._seq = 0
        self._recent: collections.deque[float] = collections.deque()
        self.login_app_code, self.login_app_secret = login_app_code, login_app_secret
        self.login_sign_algorithm, self.login_ttl = login_sign_algorithm, login_ttl
        self.login_permitted = login_permitted
        self.webmail_logins: list[str] = []
        """Every mailbox address a login URL signed into webmail, in order."""
        self._login_tokens: set[str] = set()
        self._tickets: dict[str, dict[str, Any]] = {}
        self._webmail_sessions: dict[str, str] = {}
        self._lock = threading.RLock()
        self._map = Map(
            [
                *(Rule(op.path, endpoint=name, methods=[op.method]) for name, op in OPERATIONS.items()),
                Rule(LOGIN_PATH, endpoint="sso_login", methods=["POST"]),
                Rule("/webmail/sso", endpoint="webmail_sso", methods=["GET"]),
                Rule("/webmail/", endpoint="webmail", methods=["GET"]),
            ]
        )

    # -- test helpers -------------------------------------------------------------------------

    def expire_tokens(self) -> None:
        """Make every issued token expired, as if its lifetime had passed."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def users(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._public(u) for u in sorted(self._users.values(), key=lambda u: u["_seq"])]

    def departments(self) -> list[tuple[str, ...]]:
        """The path of every department, in the order they were created."""
        with self._lock:
            ordered = sorted(self._departments.values(), key=lambda d: d["_seq"])
            return [self.department_path(d["id"]) for d in ordered]

    def groups(self) -> list[dict[str, Any]]:
        """Every mail group with its ``members`` as a list of addresses."""
        with self._lock:
            ordered = sorted(self._groups.values(), key=lambda g: g["_seq"])
            return [{**self._public(g), "members": [m["email"] for m in g["_members"]]} for g in ordered]

    def department_path(self, dept_id: str) -> tuple[str, ...]:
        with self._lock:
            path: list[str] = []
            while dept_id and dept_id != ROOT_DEPARTMENT:
                dept = self._departments[dept_id]
                path.insert(0, dept["name"])
                dept_id = dept["parentId"]
            return tuple(path)

    # -- WSGI --------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if self.faults.latency:
            time.sleep(self.faults.latency)
        fault = self.faults.take(request.method, request.path)
        if fault is not None and fault.kind == "drop":
            return self._hang_up(environ, start_response)
        response, operation, fields = self._handle(request, environ, fault)
        with self._lock:
            self.calls.append(
                Call(time.monotonic(), request.method, request.path, response.status_code, operation, fields)
            )
        if fault is not None and fault.kind == "late":
            time.sleep(fault.delay)
            return self._hang_up(environ, start_response)
        return response(environ, start_response)

    @staticmethod
    def _hang_up(environ: dict[str, Any], start_response: Any) -> Any:
        sock = environ.get("werkzeug.socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # The socket is shut down: writing this fails quietly inside werkzeug, which is what a dropped
        # connection looks like to the client.
        return Response(status=500)(environ, start_response)

    def _handle(
        self, request: Request, environ: dict[str, Any], fault: _Fault | None
    ) -> tuple[Response, str, tuple[str, ...]]:
        name, fields = "", tuple(request.args)
        try:
            if fault is not None and fault.kind == "status":
                self._raise_fault(fault)
            self._throttle()
            adapter = self._map.bind_to_environ(environ)
            name, args = adapter.match()
            if name in _LOGIN_ENDPOINTS:
                fields = (*request.form, *request.args)
                return getattr(self, f"_ep_{name}")(request), name, fields
            if name != "token":
                self._authenticate(request)
            body = _body_fields(request, name)
            fields = (*body, *request.args)
            self._check_fields(OPERATIONS[name], body, request)
            return getattr(self, f"_ep_{name}")(request, body, **args), name, fields
        except ApiError as exc:
            return exc.response(), name, fields
        except MethodNotAllowed:
            error = ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path}")
            return error.response(), name, fields
        except NotFound:
            return ApiError(404, "NotFound", f"no such endpoint {request.path}").response(), name, fields
        except HTTPException as exc:
            return ApiError(exc.code or 500, "HttpError", str(exc.description)).response(), name, fields

    @staticmethod
    def _check_fields(op: Operation, body: dict[str, Any], request: Request) -> None:
        """Refuse what the contract table does not list, as the API refuses what it does not know."""
        unknown = sorted((set(body) - {f.name for f in op.body}) | (set(request.args) - {f.name for f in op.query}))
        if unknown:
            raise ApiError(400, "InvalidParameter", f"unknown field(s) {unknown}")

    @staticmethod
    def _raise_fault(fault: _Fault) -> None:
        status = fault.status or 500
        retry_after = "" if fault.retry_after is None else f"{fault.retry_after:g}"
        if status == 429:
            raise ApiError(
                429,
                "Throttling.User",
                "Request was denied due to user flow control.",
                retry_after=retry_after,
            )
        raise ApiError(status, "ServiceUnavailable", "The service is temporarily unavailable.", retry_after=retry_after)

    def _throttle(self) -> None:
        """40 requests in any one-second window for the mail domain, as the API documents."""
        if self.rate_limit is None:
            return
        with self._lock:
            now = time.monotonic()
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            if len(self._recent) >= self.rate_limit:
                wait = self._recent[0] + 1.0 - now
                raise ApiError(
                    429,
                    "Throttling.User",
                    "Request was denied due to user flow control.",
                    f"more than {self.rate_limit:g} requests per second for {self.mail_domain}",
                    retry_after=f"{max(wait, 0.001):.3f}",
                )
            self._recent.append(now)

    def _authenticate(self, request: Request) -> None:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        with self._lock:
            expires = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if expires is None:
            raise ApiError(401, "InvalidToken", "access token is missing or not valid")
        if expires <= time.time():
            raise ApiError(401, "InvalidToken.Expired", "access token has expired")

    # -- answers ---------------------------------------------------------------------------------

    def _shape(self, name: str, obj: dict[str, Any]) -> dict[str, Any]:
        """``obj`` as the table says ``name`` answers it: only its response fields, with the quirks applied."""
        listed = OPERATIONS[name].response_fields()
        return self._quirky({k: v for k, v in obj.items() if k in listed})

    def _answer(self, name: str, obj: dict[str, Any], status: int = 200) -> Response:
        return _json(self._shape(name, obj), status)

    def _quirky(self, obj: dict[str, Any]) -> dict[str, Any]:
        kept = {k: v for k, v in obj.items() if k == "id" or k not in self.quirks.omit}
        return {**kept, **self.quirks.extra}

    def _page_size(self, request: Request, name: str = "size", most: int = MAX_PAGE_SIZE) -> int:
        try:
            size = int(request.args.get(name, most))
        except ValueError:
            raise ApiError(400, f"InvalidParameter.{name.title()}", f"{name} must be a number") from None
        if not 1 <= size <= most:
            raise ApiError(400, f"InvalidParameter.{name.title()}", f"{name} must be between 1 and {most}")
        return size

    def _page(
        self, items: list[dict[str, Any]], request: Request, most: int = MAX_PAGE_SIZE
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One cursor page of ``items`` and the paging fields of the answer."""
        size = self._page_size(request, most=most)
        after = _decode_cursor(request.args.get("cursor", ""))
        rest = [item for item in sorted(items, key=lambda i: i["_seq"]) if item["_seq"] > after]
        page, more = rest[:size], len(rest) > size
        return page, {"nextCursor": _encode_cursor(page[-1]["_seq"]) if more else "", "hasMore": more}

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _public(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    def _check_address(self, address: Any, what: str) -> str:
        local, _, domain = str(address or "").partition("@")
        if not local or domain.lower() != self.mail_domain:
            raise ApiError(
                400,
                "InvalidParameter.Email",
                "email address is not valid for this organization",
                f"{what} must be an address of {self.mail_domain}, got {address!r}",
            )
        return str(address)

    def _address_taken(self, address: str, by: str = "") -> bool:
        """Whether a user (as address or alias) or a group other than ``by`` holds ``address``."""
        lowered = address.lower()
        for user in self._users.values():
            if user["id"] != by and lowered in [user["email"].lower(), *(a.lower() for a in user["emailAliases"])]:
                return True
        return any(g["id"] != by and g["email"].lower() == lowered for g in self._groups.values())

    # -- token ---------------------------------------------------------------------------------

    def _ep_token(self, request: Request, body: dict[str, Any]) -> Response:
        if body.get("grant_type") != "client_credentials":
            raise ApiError(400, "InvalidParameter.GrantType", "grant_type must be client_credentials")
        apps = {self.client_id: self.client_secret, self.login_app_code: self.login_app_secret}
        secret = apps.get(str(body.get("client_id")))
        if secret is None or not secrets.compare_digest(str(body.get("client_secret", "")), secret):
            raise ApiError(401, "InvalidClient", "client_id or client_secret is wrong")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.time() + self.token_ttl
            if body["client_id"] == self.login_app_code:
                self._login_tokens.add(token)
            self.tokens_issued += 1
        return self._answer("token", {"access_token": token, "token_type": "bearer", "expires_in": self.token_ttl})

    # -- users ---------------------------------------------------------------------------------

    def _find_user(self, key: str) -> dict[str, Any]:
        user = self._users.get(key)
        if user is None:
            lowered = key.lower()
            user = next((u for u in self._users.values() if u["email"].lower() == lowered), None)
        if user is None:
            raise ApiError(404, "UserNotFound", f"user {key} does not exist")
        return user

    def _check_user(self, body: dict[str, Any], creating: bool) -> None:
        if creating or "email" in body:
            self._check_address(body.get("email"), "email")
        if creating and not str(body.get("name") or "").strip():
            raise ApiError(400, "InvalidParameter.Name", "name is required")
        if "status" in body and body["status"] not in USER_STATUSES:
            raise ApiError(400, "InvalidParameter.Status", f"status must be one of {list(USER_STATUSES)}")
        for dept_id in body.get("departmentIds") or []:
            if dept_id not in self._departments:
                raise ApiError(400, "InvalidParameter.DepartmentId", f"department {dept_id} does not exist")

    def _ep_list_users(self, request: Request, body: dict[str, Any]) -> Response:
        with self._lock:
            page, paging = self._page(list(self._users.values()), request)
            return _json({"users": [self._shape("get_user", u) for u in page], **paging})

    def _ep_create_user(self, request: Request, body: dict[str, Any]) -> Response:
        with self._lock:
            self._check_user(body, creating=True)
            if self._address_taken(body["email"]):
                raise ApiError(409, "UserAlreadyExists", f"user {body['email']} already exists")
            user = {
                "id": uuid.uuid4().hex,
                "email": body["email"],
                "name": body["name"],
                "firstName": body.get("firstName") or "",
                "lastName": body.get("lastName") or "",
                "departmentIds": list(body.get("departmentIds") or []),
                "jobTitle": body.get("jobTitle") or "",
                "phone": body.get("phone") or "",
                "employeeNo": body.get("employeeNo") or "",
                "status": "NORMAL",
                "emailAliases": [],
                "_seq": self._next_seq(),
            }
            self._users[user["id"]] = user
            return self._answer("create_user", user, 201)

    def _ep_get_user(self, request: Request, body: dict[str, Any], key: str) -> Response:
        with self._lock:
            return self._answer("get_user", self._find_user(key))

    def _ep_update_user(self, request: Request, body: dict[str, Any], key: str) -> Response:
        with self._lock:
            user = self._find_user(key)
            self._check_user(body, creating=False)
            if "email" in body and self._address_taken(body["email"], by=user["id"]):
                raise ApiError(409, "UserAlreadyExists", f"user {body['email']} already exists")
            user.update(body)
            return self._answer("update_user", user)

    def _ep_delete_user(self, request: Request, body: dict[str, Any], key: str) -> Response:
        with self._lock:
            del self._users[self._find_user(key)["id"]]
            return Response(status=204)

    def _ep_add_alias(self, request: Request, body: dict[str, Any], key: str) -> Response:
        with self._lock:
            user = self._find_user(key)
            alias = self._check_address(body.get("alias"), "alias")
            if self._address_taken(alias):
                raise ApiError(409, "AliasAlreadyExists", f"address {alias} is already in use")
            user["emailAliases"].append(alias)
            return self._answer("add_alias", user)

    def _ep_remove_alias(self, request: Request, body: dict[str, Any], key: str) -> Response:
        with self._lock:
            user = self._find_user(key)
            alias = str(body.get("alias") or "").lower()
            if alias not in (a.lower() for a in user["emailAliases"]):
                raise ApiError(404, "AliasNotFound", f"{alias} is not an alias of {user['email']}")
            user["emailAliases"] = [a for a in user["emailAliases"] if a.lower() != alias]
            return self._answer("remove_alias", user)

    # -- departments -----------------------------------------------------------------------------

    def _ep_get_department(self, request: Request, body: dict[str, Any], dept_id: str) -> Response:
        with self._lock:
            dept = self._departments.get(dept_id)
            if dept is None:
                raise ApiError(404, "DepartmentNotFound", f"department {dept_id} does not exist")
            return self._answer("get_department", dept)

    def _ep_list_child_departments(self, request: Request, body: dict[str, Any], dept_id: str) -> Response:
        with self._lock:
            if dept_id != ROOT_DEPARTMENT and dept_id not in self._departments:
                raise ApiError(404, "DepartmentNotFound", f"department {dept_id} does not exist")
            limit = self._page_size(request, "limit")
            try:
                offset = max(0, int(request.args.get("offset", 0)))
            except ValueError:
                raise ApiError(400, "InvalidParameter.Offset", "offset must be a number") from None
            children = sorted(
                (d for d in self._departments.values() if d["parentId"] == dept_id), key=lambda d: d["_seq"]
            )
            page = [self._shape("get_department", d) for d in children[offset : offset + limit]]
            return _json({"departments": page, "total": len(children)})

    def _ep_create_department(self, request: Request, body: dict[str, Any]) -> Response:
        with self._lock:
            name = str(body.get("name") or "").strip()
            if not name:
                raise ApiError(400, "InvalidParameter.Name", "department name is required")
            parent = str(body.get("parentId") or ROOT_DEPARTMENT)
            if parent != ROOT_DEPARTMENT and parent not in self._departments:
                raise ApiError(400, "InvalidParameter.ParentId", f"department {parent} does not exist")
            if any(d["parentId"] == parent and d["name"] == name for d in self._departments.values()):
                raise ApiError(409, "DepartmentAlreadyExists", f"department {name} already exists here")
            dept_id = uuid.uuid4().hex
            dept = {"id": dept_id, "name": name, "parentId": parent, "_seq": self._next_seq()}
            self._departments[dept_id] = dept
            return self._answer("create_department", dept, 201)

    # -- mail groups -----------------------------------------------------------------------------

    def _find_group(self, key: str) -> dict[str, Any]:
        group = self._groups.get(key)
        if group is None:
            lowered = key.lower()
            group = next((g for g in self._groups.values() if g["email"].lower() == lowered), None)
        if group is None:
            raise ApiError(404, "GroupNotFound", f"mail group {key} does not exist")
        return group

    def _ep_list_groups(self, request: Request, body: dict[str, Any]) -> Response:
        with self._lock:
            page, paging = self._page(list(self._groups.values()), request, most=GROUP_PAGE_SIZE)
            return _json({"groups": [self._shape("get_group", g) for g in page], **paging})

    def _ep_create_group(self, request: Request, body: dict[str, Any]) -> Response:
        with self._lock:
            email = self._check_address(body.get("email"), "email")
            name = str(body.get("name") or "").strip()
            if not name:
                raise ApiError(400, "InvalidParameter.Name", "mail group name is required")
            if self._address_taken(email):
                raise ApiError(409, "GroupAlreadyExists", f"address {email} is already in use")
            group_id = uuid.uuid4().hex
            group = {"id": group_id, "email": email, "name": name, "_members": [], "_seq": self._next_seq()}
            self._groups[group_id] = group
            return self._answer("create_group", group, 201)

    def _ep_get_group(self, request: Request, body: dict[str, Any], group: str) -> Response:
        with self._lock:
            return self._answer("get_group", self._find_group(group))

    def _ep_update_group(self, request: Request, body: dict[str, Any], group: str) -> Response:
        with self._lock:
            found = self._find_group(group)
            if "name" in body:
                name = str(body["name"] or "").strip()
                if not name:
                    raise ApiError(400, "InvalidParameter.Name", "mail group name is required")
                found["name"] = name
            return self._answer("update_group", found)

    def _ep_delete_group(self, request: Request, body: dict[str, Any], group: str) -> Response:
        with self._lock:
            del self._groups[self._find_group(group)["id"]]
            return Response(status=204)

    def _members_of(self, body: dict[str, Any]) -> list[str]:
        members = body.get("members")
        if not isinstance(members, list) or not members:
            raise ApiError(400, "InvalidParameter.Members", "members must be a non-empty list of addresses")
        return [str(m) for m in members]

    def _ep_list_group_members(self, request: Request, body: dict[str, Any], group: str) -> Response:
        with self._lock:
            page, paging = self._page(self._find_group(group)["_members"], request)
            return _json({"members": [self._quirky({"email": m["email"]}) for m in page], **paging})

    def _ep_add_group_members(self, request: Request, body: dict[str, Any], group: str) -> Response:
        with self._lock:
            found = self._find_group(group)
            have = {m["email"].lower() for m in found["_members"]}
            for address in self._members_of(body):
                if "@" not in address:
                    raise ApiError(400, "InvalidParameter.Members", f"{address!r} is not a mail address")
                if address.lower() not in have:  # adding a member twice changes nothing
                    found["_members"].append({"email": address, "_seq": self._next_seq()})
                    have.add(address.lower())
            return Response(status=204)

    def _ep_remove_group_members(self, request: Request, body: dict[str, Any], group: str) -> Response:
        with self._lock:
            found = self._find_group(group)
            gone = {a.lower() for a in self._members_of(body)}
            found["_members"] = [m for m in found["_members"] if m["email"].lower() not in gone]
            return Response(status=204)

    # -- logon and the webmail it opens ---------------------------------------------------------

    def _ep_sso_login(self, request: Request) -> Response:
        form = {k: str(v) for k, v in request.form.items()}
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        listed = TOKEN_PARAMS if scheme else SIGNED_PARAMS
        unknown = sorted((set(form) - set(listed)) | set(request.args))
        if unknown:
            raise ApiError(400, "InvalidParameter", f"unknown parameter(s) {unknown}")
        missing = sorted(name for name in listed if name != "redirect_url" and not form.get(name))
        if missing:
            raise ApiError(400, "MissingParameter", f"missing parameter(s) {missing}")
        if scheme:
            self._authenticate(request)
            if token.strip() not in self._login_tokens:
                raise ApiError(403, "PermissionDenied", "the app is not granted User.Login.All")
        else:
            self._check_signature(form)
        if not self.login_permitted:
            raise ApiError(403, "PermissionDenied", "the app is not granted User.Login.All")
        with self._lock:
            user = self._find_user(form["email"])
            if user["status"] == "FREEZE":
                raise ApiError(403, "UserFrozen", f"user {user['email']} is frozen")
            ticket = secrets.token_urlsafe(24)
            self._tickets[ticket] = {
                "email": user["email"],
                "expires": time.time() + self.login_ttl,
                "redirect": form.get("redirect_url", ""),
                "used": False,
            }
        url = f"{request.host_url.rstrip('/')}/webmail/sso?ticket={ticket}"
        return _json({"loginUrl": url, "expiresIn": int(self.login_ttl)})

    def _check_signature(self, form: dict[str, str]) -> None:
        if form["app_code"] != self.login_app_code:
            raise ApiError(401, "InvalidAppCode", "app_code is not an app of this organization")
        try:
            skew = abs(time.time() * 1000 - int(form["timestamp"]))
        except ValueError:
            raise ApiError(400, "InvalidParameter.Timestamp", "timestamp must be milliseconds") from None
        if skew > _TIMESTAMP_WINDOW_MS:
            raise ApiError(400, "InvalidParameter.Timestamp", "timestamp is too far from the server's time")
        signed = {k: v for k, v in form.items() if k != "sign"}
        expected = signature(signed, self.login_app_secret, self.login_sign_algorithm)
        if not secrets.compare_digest(form["sign"], expected):
            raise ApiError(401, "InvalidSignature", "sign does not match the request")

    def _ep_webmail_sso(self, request: Request) -> Response:
        if set(request.args) != {"ticket"}:
            return _page(400, "Login failed", "This login link is not valid.")
        with self._lock:
            ticket = self._tickets.get(request.args["ticket"])
            if ticket is None:
                return _page(403, "Login failed", "This login link is not valid.")
            if ticket["used"]:
                return _page(403, "Login failed", "This login link has been used already.")
            ticket["used"] = True
            if ticket["expires"] <= time.time():
                return _page(403, "Login failed", "This login link has expired.")
            user = next((u for u in self._users.values() if u["email"] == ticket["email"]), None)
            if user is None or user["status"] == "FREEZE":
                return _page(403, "Login failed", "This mailbox cannot be used.")
            session = secrets.token_urlsafe(24)
            self._webmail_sessions[session] = user["email"]
            self.webmail_logins.append(user["email"])
        response = redirect(ticket["redirect"] or "/webmail/")
        response.set_cookie(WEBMAIL_COOKIE, session, httponly=True, path="/webmail/", samesite="Lax")
        return response

    def _ep_webmail(self, request: Request) -> Response:
        with self._lock:
            email = self._webmail_sessions.get(request.cookies.get(WEBMAIL_COOKIE, ""))
        if email is None:
            return _page(401, "Alibaba Mail", "Not signed in.")
        return _page(200, "Inbox", email)


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request: the tests send hundreds."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class RunningEmulator:
    """An emulator served over HTTP on a loopback port, in a background thread."""

    def __init__(self, emulator: AlimailEmulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self._server = make_server(host, port, emulator, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="alimail-emulator", daemon=True)
        self._thread.start()

    @property
    def faults(self) -> Faults:
        return self.emulator.faults

    def expire_tokens(self) -> None:
        self.emulator.expire_tokens()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def run_emulator(host: str = "127.0.0.1", port: int = 0, **options: Any) -> Iterator[RunningEmulator]:
    """Serve a fresh emulator for the duration of the block; ``options`` go to AlimailEmulator."""
    running = RunningEmulator(AlimailEmulator(**options), host, port)
    try:
        yield running
    finally:
        running.stop()
