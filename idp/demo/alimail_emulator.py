"""An emulator of the Alibaba Mail Open API v2, with fault injection, for tests and ``idp demo``.

It follows the contract described in ``idp/provisioning/alimail.py`` (token expiry, cursor paging, the
``{detailErrorCode, message, developerMessage}`` error body, 409 on duplicates, 40 requests/s per
mail domain answered with 429 and ``Retry-After``) and can be told to misbehave:

    with run_emulator() as emu:
        emu.faults.fail_next(3, status=429, retry_after=0.2)   # a burst of 429s
        emu.faults.fail_next(2, status=503)                    # 5xx
        emu.faults.drop_next(1)                                # connection closed, no response
        emu.faults.latency = 2.0                               # every answer late
        emu.expire_tokens()                                    # next call gets 401

It is a werkzeug WSGI app served on a loopback port in a thread; state lives in memory only.
"""

from __future__ import annotations

import base64
import collections
import contextlib
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
from werkzeug.wrappers import Request, Response

MAX_PAGE_SIZE = 100
USER_FIELDS = (
    "email",
    "name",
    "firstName",
    "lastName",
    "departmentIds",
    "jobTitle",
    "phone",
    "employeeNo",
    "status",
)
USER_STATUSES = ("NORMAL", "FREEZE")


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


@dataclass
class _Fault:
    status: int | None  # None means: drop the connection
    retry_after: float | None
    path_prefix: str


@dataclass
class Faults:
    """Misbehaviour to inject; each queued fault applies to one matching request, in order."""

    latency: float = 0.0
    _queue: collections.deque[_Fault] = field(default_factory=collections.deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, times: int, status: int, retry_after: float | None = None, path_prefix: str = "/v2/") -> None:
        with self._lock:
            self._queue.extend(_Fault(status, retry_after, path_prefix) for _ in range(times))

    def drop_next(self, times: int = 1, path_prefix: str = "/v2/") -> None:
        with self._lock:
            self._queue.extend(_Fault(None, None, path_prefix) for _ in range(times))

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self.latency = 0.0

    def take(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._queue:
                if path.startswith(fault.path_prefix):
                    self._queue.remove(fault)
                    return fault
        return None


@dataclass(frozen=True)
class Call:
    """One request as the emulator saw it, for tests that count or time calls."""

    at: float
    method: str
    path: str
    status: int


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


class AlimailEmulator:
    """The WSGI app and its in-memory state."""

    def __init__(
        self,
        mail_domain: str = "example.com",
        client_id: str = "emulator-app",
        client_secret: str = "emulator-secret",  # noqa: S107 - the emulator's own test credential
        token_ttl: int = 7200,
        rate_limit: float | None = 40.0,
    ) -> None:
        self.mail_domain = mail_domain.lower()
        self.client_id, self.client_secret = client_id, client_secret
        self.token_ttl = token_ttl
        self.rate_limit = rate_limit
        self.faults = Faults()
        self.calls: collections.deque[Call] = collections.deque(maxlen=100_000)
        self.tokens_issued = 0
        self._tokens: dict[str, float] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._departments: dict[str, dict[str, Any]] = {}
        self._seq = 0
        self._recent: collections.deque[float] = collections.deque()
        self._lock = threading.RLock()
        self._map = Map(
            [
                Rule("/oauth2/v2.0/token", endpoint="token", methods=["POST"]),
                Rule("/v2/users", endpoint="users", methods=["GET", "POST"]),
                Rule("/v2/users/<path:key>", endpoint="user", methods=["GET", "PATCH", "DELETE"]),
                Rule("/v2/departments", endpoint="departments", methods=["GET", "POST"]),
                Rule("/v2/departments/<dept_id>", endpoint="department", methods=["GET"]),
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

    def department_path(self, dept_id: str) -> tuple[str, ...]:
        with self._lock:
            path: list[str] = []
            while dept_id:
                dept = self._departments[dept_id]
                path.insert(0, dept["name"])
                dept_id = dept["parentId"]
            return tuple(path)

    # -- WSGI --------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        response = self._handle(request, environ)
        if response is None:
            # The socket is already shut down: writing this fails quietly inside werkzeug, which is
            # what a dropped connection looks like to the client.
            return Response(status=500)(environ, start_response)
        with self._lock:
            self.calls.append(Call(time.monotonic(), request.method, request.path, response.status_code))
        return response(environ, start_response)

    def _handle(self, request: Request, environ: dict[str, Any]) -> Response | None:
        if self.faults.latency:
            time.sleep(self.faults.latency)
        fault = self.faults.take(request.path)
        if fault is not None and fault.status is None:
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            return None
        try:
            if fault is not None and fault.status is not None:
                self._raise_fault(fault)
            self._throttle()
            adapter = self._map.bind_to_environ(environ)
            endpoint, args = adapter.match()
            if endpoint != "token":
                self._authenticate(request)
            return getattr(self, f"_ep_{endpoint}")(request, **args)
        except ApiError as exc:
            return exc.response()
        except MethodNotAllowed:
            return ApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on {request.path}").response()
        except NotFound:
            return ApiError(404, "NotFound", f"no such endpoint {request.path}").response()
        except HTTPException as exc:
            return ApiError(exc.code or 500, "HttpError", str(exc.description)).response()

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

    # -- endpoints ------------------------------------------------------------------------------

    def _ep_token(self, request: Request) -> Response:
        form = request.form
        if form.get("grant_type") != "client_credentials":
            raise ApiError(400, "InvalidParameter.GrantType", "grant_type must be client_credentials")
        if form.get("client_id") != self.client_id or not secrets.compare_digest(
            form.get("client_secret", ""), self.client_secret
        ):
            raise ApiError(401, "InvalidClient", "client_id or client_secret is wrong")
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = time.time() + self.token_ttl
            self.tokens_issued += 1
        return _json({"access_token": token, "token_type": "bearer", "expires_in": self.token_ttl})

    def _page_size(self, request: Request) -> int:
        try:
            size = int(request.args.get("size", MAX_PAGE_SIZE))
        except ValueError:
            raise ApiError(400, "InvalidParameter.Size", "size must be a number") from None
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise ApiError(400, "InvalidParameter.Size", f"size must be between 1 and {MAX_PAGE_SIZE}")
        return size

    def _page(self, items: list[dict[str, Any]], request: Request) -> tuple[list[dict[str, Any]], str, bool]:
        size = self._page_size(request)
        after = _decode_cursor(request.args.get("cursor", ""))
        rest = [item for item in sorted(items, key=lambda i: i["_seq"]) if item["_seq"] > after]
        page, more = rest[:size], len(rest) > size
        return page, _encode_cursor(page[-1]["_seq"]) if more else "", more

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @staticmethod
    def _public(user: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in user.items() if not k.startswith("_")}

    def _find_user(self, key: str) -> dict[str, Any]:
        user = self._users_by_key(key)
        if user is None:
            raise ApiError(404, "UserNotFound", f"user {key} does not exist")
        return user

    def _users_by_key(self, key: str) -> dict[str, Any] | None:
        if key in self._users:
            return self._users[key]
        lowered = key.lower()
        return next((u for u in self._users.values() if u["email"].lower() == lowered), None)

    def _check_user_fields(self, body: dict[str, Any], creating: bool) -> None:
        unknown = sorted(set(body) - set(USER_FIELDS))
        if unknown:
            raise ApiError(400, "InvalidParameter", f"unknown field(s) {unknown}")
        if creating or "email" in body:
            email = str(body.get("email") or "")
            local, _, domain = email.partition("@")
            if not local or domain.lower() != self.mail_domain:
                raise ApiError(
                    400,
                    "InvalidParameter.Email",
                    "email address is not valid for this organization",
                    f"email must be an address of {self.mail_domain}, got {email!r}",
                )
        if creating and not str(body.get("name") or "").strip():
            raise ApiError(400, "InvalidParameter.Name", "name is required")
        if "status" in body and body["status"] not in USER_STATUSES:
            raise ApiError(400, "InvalidParameter.Status", f"status must be one of {list(USER_STATUSES)}")
        for dept_id in body.get("departmentIds") or []:
            if dept_id not in self._departments:
                raise ApiError(400, "InvalidParameter.DepartmentId", f"department {dept_id} does not exist")

    def _ep_users(self, request: Request) -> Response:
        with self._lock:
            if request.method == "GET":
                page, cursor, more = self._page(list(self._users.values()), request)
                return _json({"users": [self._public(u) for u in page], "nextCursor": cursor, "hasMore": more})
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                raise ApiError(400, "InvalidParameter.Body", "request body must be a JSON object")
            self._check_user_fields(body, creating=True)
            if self._users_by_key(body["email"]) is not None:
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
                "status": body.get("status") or "NORMAL",
                "_seq": self._next_seq(),
            }
            self._users[user["id"]] = user
            return _json(self._public(user), 201)

    def _ep_user(self, request: Request, key: str) -> Response:
        with self._lock:
            user = self._find_user(key)
            if request.method == "GET":
                return _json(self._public(user))
            if request.method == "DELETE":
                del self._users[user["id"]]
                return Response(status=204)
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                raise ApiError(400, "InvalidParameter.Body", "request body must be a JSON object")
            self._check_user_fields(body, creating=False)
            if "email" in body:
                other = self._users_by_key(body["email"])
                if other is not None and other["id"] != user["id"]:
                    raise ApiError(409, "UserAlreadyExists", f"user {body['email']} already exists")
            user.update({k: v for k, v in body.items()})
            return _json(self._public(user))

    def _ep_departments(self, request: Request) -> Response:
        with self._lock:
            if request.method == "GET":
                parent = request.args.get("parentId", "")
                children = [d for d in self._departments.values() if d["parentId"] == parent]
                page, cursor, more = self._page(children, request)
                return _json({"departments": [self._public(d) for d in page], "nextCursor": cursor, "hasMore": more})
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not str(body.get("name") or "").strip():
                raise ApiError(400, "InvalidParameter.Name", "department name is required")
            parent = body.get("parentId") or ""
            if parent and parent not in self._departments:
                raise ApiError(400, "InvalidParameter.ParentId", f"department {parent} does not exist")
            if any(d["parentId"] == parent and d["name"] == body["name"] for d in self._departments.values()):
                raise ApiError(409, "DepartmentAlreadyExists", f"department {body['name']} already exists here")
            dept = {
                "id": uuid.uuid4().hex,
                "name": body["name"],
                "parentId": parent,
                "_seq": self._next_seq(),
            }
            self._departments[dept["id"]] = dept
            return _json(self._public(dept), 201)

    def _ep_department(self, request: Request, dept_id: str) -> Response:
        with self._lock:
            dept = self._departments.get(dept_id)
            if dept is None:
                raise ApiError(404, "DepartmentNotFound", f"department {dept_id} does not exist")
            return _json(self._public(dept))


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
