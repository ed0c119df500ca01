"""The Alibaba Mail Open API v2 as we use it, field by field, with where each field is written down.

One table serves three readers: the client (``idp/provisioning/alimail.py``) is checked against it by the
test suite (every field it sends must be listed here), the emulator (``idp/demo/alimail_emulator.py``)
builds its routes from it and refuses request fields it does not list, and an admin reads from it which
parts of the client rest on the public documentation and which do not.

Each field carries ``doc``, the public page that documents it, or an empty ``doc`` when no public page
does; ``evidence`` then names what the choice rests on (a third-party SDK's source, by analogy with a
documented operation), or stays empty when it is our own guess. The client treats every response field
as optional (missing ones take a default) and ignores fields it does not know, so a wrong guess about a
response costs a default value, not a crash; a wrong guess about a request field shows up as the API's
own 400 answer, named in the audit trail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Public documentation: Alibaba Cloud's help centre and the Alibaba Mail service centre.
DOC_PLATFORM = "https://www.alibabacloud.com/help/en/alibaba-mail/latest/open-api-platform"
DOC_HOSTS = "https://www.alibabacloud.com/help/tc/alibaba-mail/latest/api-access-server-address"
DOC_TOKEN = "https://help.aliyun.com/document_detail/2855420.html"  # noqa: S105 - a URL, not a secret
DOC_PAGING = "https://yunyoumail.cn/faq/4853.html"
"""The Alibaba Mail service centre's paging example: ``GET /v2/groups`` with ``cursor``/``size``, answered with
``groups``, ``nextCursor``, ``hasMore`` (citing the official ListGroups operation page)."""
DOC_GROUPS = (
    "https://www.alibabacloud.com/help/en/alibaba-mail/latest/what-is-the-email-group-and-how-to-create-and-delete"
)

# Not documentation: an open-source Go SDK of the same API, read for the field names it sends and reads.
SDK_USER = "https://github.com/eryajf/go-alimail/blob/main/alimail/user.go"
SDK_DEPARTMENT = "https://github.com/eryajf/go-alimail/blob/main/alimail/department.go"
SDK_GROUP = "https://github.com/eryajf/go-alimail/blob/main/alimail/group.go"
SDK_CLIENT = "https://github.com/eryajf/go-alimail/blob/main/alimail/client.go"


@dataclass(frozen=True)
class Field:
    name: str
    doc: str = ""
    """The public page documenting this field; empty when none does."""
    evidence: str = ""
    """Without ``doc``: what the field rests on (an SDK's source); empty when it is our own choice."""

    @property
    def documented(self) -> bool:
        return bool(self.doc)


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    """A werkzeug route: ``<key>`` is a user's id or address, ``<dept_id>`` and ``<group>`` ids."""
    doc: str = ""
    """The public page documenting that the operation exists, if any."""
    evidence: str = ""
    body: tuple[Field, ...] = ()
    """JSON body fields (form fields for the token)."""
    query: tuple[Field, ...] = ()
    response: tuple[Field, ...] = ()

    def request_fields(self) -> frozenset[str]:
        return frozenset(f.name for f in (*self.body, *self.query))

    def response_fields(self) -> frozenset[str]:
        return frozenset(f.name for f in self.response)


def _sdk(source: str, *names: str) -> tuple[Field, ...]:
    return tuple(Field(name, evidence=source) for name in names)


def _ours(*names: str) -> tuple[Field, ...]:
    return tuple(Field(name) for name in names)


USER = (
    Field("id", evidence=SDK_USER),
    Field("email", evidence=SDK_USER),
    Field("name", evidence=SDK_USER),
    *_ours("firstName", "lastName"),
    *_sdk(SDK_USER, "departmentIds", "jobTitle", "phone", "employeeNo", "status", "emailAliases"),
)
"""A user as the API answers it; ``firstName``/``lastName`` appear in no source we found."""

USER_WRITE = (
    Field("email", evidence=SDK_USER),
    Field("name", evidence=SDK_USER),
    *_ours("firstName", "lastName"),
    *_sdk(SDK_USER, "departmentIds", "jobTitle", "phone", "employeeNo"),
)

DEPARTMENT = _sdk(SDK_DEPARTMENT, "id", "name", "parentId")
GROUP = (Field("id", evidence=SDK_GROUP), Field("email", evidence=SDK_GROUP), Field("name", doc=DOC_PAGING))
CURSOR_PAGE_QUERY = (Field("cursor", doc=DOC_PAGING), Field("size", doc=DOC_PAGING))
CURSOR_PAGE = (Field("nextCursor", doc=DOC_PAGING), Field("hasMore", doc=DOC_PAGING))

MAX_PAGE_SIZE = 100
"""The most items one page holds (departments: SDK_DEPARTMENT; users and members: our choice, alike)."""
GROUP_PAGE_SIZE = 30
"""The most mail groups one page of ``GET /v2/groups`` holds (DOC_PAGING)."""

ROOT_DEPARTMENT = "$root"
"""The id the API gives the organisation's top department (SDK_DEPARTMENT)."""

OPERATIONS: dict[str, Operation] = {
    "token": Operation(
        "POST",
        "/oauth2/v2.0/token",
        doc=DOC_TOKEN,
        body=tuple(Field(n, doc=DOC_TOKEN) for n in ("grant_type", "client_id", "client_secret")),
        response=(
            Field("access_token", doc=DOC_TOKEN),
            *_sdk(SDK_CLIENT, "token_type", "expires_in"),
        ),
    ),
    "list_users": Operation(
        "GET",
        "/v2/users",
        # Cursor paging is documented for mail groups; for users it is our choice by analogy.
        query=tuple(Field(f.name, evidence=DOC_PAGING) for f in CURSOR_PAGE_QUERY),
        response=(Field("users"), *(Field(f.name, evidence=DOC_PAGING) for f in CURSOR_PAGE)),
    ),
    "create_user": Operation("POST", "/v2/users", doc=DOC_HOSTS, body=USER_WRITE, response=USER),
    "get_user": Operation("GET", "/v2/users/<path:key>", evidence=SDK_USER, response=USER),
    "update_user": Operation(
        "PATCH",
        "/v2/users/<path:key>",
        evidence=SDK_USER,
        body=(*USER_WRITE, Field("status", evidence=SDK_USER)),
        response=USER,
    ),
    "delete_user": Operation("DELETE", "/v2/users/<path:key>", evidence=SDK_USER),
    "add_alias": Operation(
        "POST", "/v2/users/<path:key>/emailAliases", evidence=SDK_USER, body=_sdk(SDK_USER, "alias"), response=USER
    ),
    "remove_alias": Operation(
        "DELETE", "/v2/users/<path:key>/emailAliases", evidence=SDK_USER, body=_sdk(SDK_USER, "alias"), response=USER
    ),
    "get_department": Operation("GET", "/v2/departments/<dept_id>", evidence=SDK_DEPARTMENT, response=DEPARTMENT),
    "list_child_departments": Operation(
        "GET",
        "/v2/departments/<dept_id>/departments",
        evidence=SDK_DEPARTMENT,
        query=_sdk(SDK_DEPARTMENT, "offset", "limit"),
        response=_sdk(SDK_DEPARTMENT, "departments", "total"),
    ),
    "create_department": Operation(
        "POST",
        "/v2/departments",
        evidence=SDK_DEPARTMENT,
        body=_sdk(SDK_DEPARTMENT, "name", "parentId"),
        response=DEPARTMENT,
    ),
    "list_groups": Operation(
        "GET",
        "/v2/groups",
        doc=DOC_PAGING,
        query=CURSOR_PAGE_QUERY,
        response=(Field("groups", doc=DOC_PAGING), *CURSOR_PAGE),
    ),
    "create_group": Operation(
        "POST",
        "/v2/groups",
        doc=DOC_PLATFORM,
        body=(Field("email", evidence=SDK_GROUP), Field("name", doc=DOC_GROUPS)),
        response=GROUP,
    ),
    "get_group": Operation("GET", "/v2/groups/<path:group>", response=GROUP),
    "update_group": Operation(
        "PATCH", "/v2/groups/<path:group>", doc=DOC_PLATFORM, body=(Field("name", doc=DOC_GROUPS),), response=GROUP
    ),
    "delete_group": Operation("DELETE", "/v2/groups/<path:group>", doc=DOC_PLATFORM),
    "list_group_members": Operation(
        "GET",
        "/v2/groups/<path:group>/members",
        query=tuple(Field(f.name, evidence=DOC_PAGING) for f in CURSOR_PAGE_QUERY),
        response=(Field("members"), *(Field(f.name, evidence=DOC_PAGING) for f in CURSOR_PAGE)),
    ),
    "add_group_members": Operation("POST", "/v2/groups/<path:group>/members", body=_ours("members")),
    "remove_group_members": Operation("DELETE", "/v2/groups/<path:group>/members", body=_ours("members")),
}
"""Every operation the client calls, by the name the emulator's routes use."""

ERROR_FIELDS = _ours("detailErrorCode", "message", "developerMessage")
"""An error answer's body as the emulator writes it; the client also reads OAuth2's ``error`` and
``error_description`` and falls back to the HTTP reason, so any shape is reported."""

MEMBER = _ours("email")
"""One entry of ``members`` in a member page."""


def undocumented(operations: Iterable[Operation] = OPERATIONS.values()) -> list[tuple[str, str, str]]:
    """(method and path, field, what it rests on) for every field no public page documents."""
    rows: list[tuple[str, str, str]] = []
    for op in operations:
        for f in (*op.body, *op.query, *op.response):
            if not f.documented:
                rows.append((f"{op.method} {op.path}", f.name, f.evidence or "our choice"))
    return rows
