"""Any SCIM 2.0 service (RFC 7643/7644) as a mailbox ``Provider``, through ``scim2-client``.

A mailbox is a SCIM ``User`` with the enterprise extension:

    email            -> userName, and emails[primary, type=work]
    display_name     -> displayName
    given_name/surname -> name.givenName / name.familyName
    title            -> title
    phone            -> phoneNumbers[type=work]
    employee_number  -> enterprise:employeeNumber
    department       -> enterprise:department, levels joined with "/"
    aliases          -> further emails[type=other] (SCIM has no aliases; "other" addresses are the nearest)
    frozen           -> active = false

A mail group is a SCIM ``Group``: its address in ``externalId`` (RFC 7643 3.1: the provisioning client's
own identifier; Group has no email attribute), its name in ``displayName``, its members as references
to the members' Users. A service without a Groups endpoint answers 404 there: ``NotSupported``.

Updates are PATCH operations on exactly the changed attributes. Creates are exactly once across
timeouts (``RetryPolicy.create``): userName is unique, but nothing makes a Group's externalId so, so a
group is always looked up by its address before it is created. 429 and 5xx answers are caught from
the HTTP layer (before scim2-client reads them) so that ``Retry-After`` is honoured by ``RetryPolicy``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import httpx2
from scim2_client import RequestNetworkException, SCIMClientException
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import (
    Email,
    EnterpriseUser,
    Group,
    GroupMember,
    ListResponse,
    Name,
    PatchOp,
    PatchOperation,
    PhoneNumber,
    ResourceType,
    SCIMException,
    SearchRequest,
    User,
)
from scim2_models import ScimProvider as ScimServiceDescription

from idp.provisioning.provider import (
    Conflict,
    Mailbox,
    MailboxSpec,
    MailGroup,
    MailGroupSpec,
    NotFound,
    NotSupported,
    RateLimited,
    Rejected,
    Unavailable,
    changed_fields,
    check_changes,
    normal_addresses,
)
from idp.provisioning.ratelimit import RateLimiter, make_rate_limiter
from idp.provisioning.retry import RetryPolicy, parse_retry_after
from idp.settings import ScimSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
ScimUser = User[EnterpriseUser]
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MAX_PAGE_SIZE = 1000


def _raise_for_retryable(response: httpx2.Response) -> None:
    """Event hook: 429 and 5xx become our retryable errors before scim2-client sees the body."""
    if response.status_code == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise RateLimited(f"{response.url.host} answered 429 Too Many Requests", retry_after=retry_after)
    if response.status_code >= 500:
        raise Unavailable(f"{response.url.host} answered HTTP {response.status_code}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _to_mailbox(user: Any) -> Mailbox:
    emails = user.emails or []
    primary = next((e.value for e in emails if e.primary), None) or (emails[0].value if emails else None)
    aliases = [e.value for e in emails if e.type == "other" and not e.primary and e.value]
    phones = user.phone_numbers or []
    phone = next((p.value for p in phones if p.type == "work"), None) or (phones[0].value if phones else None)
    enterprise = user[EnterpriseUser]
    department = (enterprise.department if enterprise else None) or ""
    return Mailbox(
        id=str(user.id),
        email=str(primary or user.user_name),
        display_name=user.display_name or "",
        given_name=user.name.given_name if user.name else None,
        surname=user.name.family_name if user.name else None,
        department=tuple(level for level in department.split("/") if level),
        title=user.title or None,
        phone=phone,
        employee_number=enterprise.employee_number if enterprise else None,
        aliases=tuple(aliases),
        frozen=user.active is False,
    )


def _emails(email: str, aliases: tuple[str, ...]) -> list[dict[str, Any]]:
    """The ``emails`` of a mailbox: its address (primary, work), then each alias as an "other" address."""
    others = [{"value": a, "type": "other"} for a in normal_addresses(aliases, excluding=email)]
    return [{"value": email, "primary": True, "type": "work"}, *others]


def _to_user(spec: MailboxSpec) -> Any:
    user = ScimUser(
        user_name=spec.email,
        display_name=spec.display_name,
        active=True,
        emails=[Email(**e) for e in _emails(spec.email, spec.aliases)],
        title=spec.title,
    )
    if spec.given_name or spec.surname:
        user.name = Name(given_name=spec.given_name, family_name=spec.surname)
    if spec.phone:
        user.phone_numbers = [PhoneNumber(value=spec.phone, type="work")]
    if spec.employee_number or spec.department:
        user[EnterpriseUser] = EnterpriseUser(
            employee_number=spec.employee_number, department="/".join(spec.department) or None
        )
    return user


def _operations(changes: Mapping[str, Any]) -> list[PatchOperation[Any]]:
    """PATCH operations that set exactly ``changes``; a None value removes the attribute.

    ``email`` and ``aliases`` share ``emails``: when either changes, ``changes`` must carry both."""
    ops: list[PatchOperation[Any]] = []

    def put(path: str, value: Any) -> None:
        if value is None or value == [] or value == "":
            ops.append(PatchOperation(op="remove", path=path))
        else:
            ops.append(PatchOperation(op="replace", path=path, value=value))

    for key, value in changes.items():
        if key == "email":
            put("userName", value)
            put("emails", _emails(value, changes["aliases"]))
        elif key == "aliases":
            continue  # written with "email" above
        elif key == "phone":
            put("phoneNumbers", [{"value": value, "type": "work"}] if value else None)
        elif key == "department":
            put(f"{ENTERPRISE}:department", "/".join(value) if value else None)
        else:
            path = {
                "display_name": "displayName",
                "given_name": "name.givenName",
                "surname": "name.familyName",
                "title": "title",
                "employee_number": f"{ENTERPRISE}:employeeNumber",
            }[key]
            put(path, value)
    return ops


class ScimProvider:
    """Mailboxes as SCIM Users of one SCIM service."""

    def __init__(self, settings: ScimSettings, limiter: RateLimiter | None = None) -> None:
        self.settings = settings
        token = settings.token()
        self._http = httpx2.Client(
            base_url=settings.base_url,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=httpx2.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            verify=settings.verify_tls,
            event_hooks={"response": [_raise_for_retryable]},
        )
        description = ScimServiceDescription(
            models=[User, EnterpriseUser, Group],
            resource_types=[ResourceType.from_resource(ScimUser), ResourceType.from_resource(Group)],
        )
        self._scim = SyncSCIMClient(self._http, provider=description)
        self._limiter = limiter
        self._owns_limiter = False
        if limiter is None and settings.rate_per_second is not None:
            self._limiter = make_rate_limiter(
                settings.rate_per_second, key=f"scim:ratelimit:{settings.base_url}", redis_url=settings.redis_url
            )
            self._owns_limiter = True
        self._retry = RetryPolicy(settings.max_attempts, settings.retry_base_wait, settings.max_retry_wait)

    def _attempt(self, action: Callable[[], T], what: str) -> T:
        """One try of ``action``, its failures turned into our typed errors."""
        if self._limiter is not None:
            self._limiter.acquire()
        try:
            return action()
        except SCIMException as exc:
            detail = f"{what}: {exc.detail}"
            if exc.status == 404:
                raise NotFound(detail) from None
            if exc.status == 409:
                raise Conflict(detail) from None
            raise Rejected(exc.scim_type or f"HTTP{exc.status}", exc.detail, what, exc.status) from None
        except RequestNetworkException as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "network error"
            raise Unavailable(f"{what}: {self.settings.base_url} unreachable ({cause})") from exc
        except SCIMClientException as exc:
            raise Rejected("InvalidResponse", str(exc), what) from exc

    def _call(self, action: Callable[[], T], what: str) -> T:
        return self._retry.call(lambda: self._attempt(action, what), what)

    def _resolve_id(self, id_or_email: str) -> str:
        if "@" not in id_or_email:
            return id_or_email
        found = self.find(id_or_email)
        if found is None:
            raise NotFound(f"no SCIM user with userName {id_or_email}")
        return found.id

    def get(self, id_or_email: str) -> Mailbox:
        user_id = self._resolve_id(id_or_email)
        return _to_mailbox(self._call(lambda: self._scim.query(ScimUser, user_id), f"read user {user_id}"))

    def _search(self, search: SearchRequest[ScimUser], what: str) -> ListResponse[ScimUser]:
        result = self._call(lambda: self._scim.query(ScimUser, query_parameters=search), what)
        # scim2-client types every answer as "or an Error, or a dict": those come back only when it is told
        # not to raise SCIM errors or not to check payloads, which we never do.
        if not isinstance(result, ListResponse):
            raise Rejected("InvalidResponse", f"not a SCIM ListResponse but {type(result).__name__}", what)
        return result

    def find(self, email: str) -> Mailbox | None:
        search: SearchRequest[ScimUser] = SearchRequest(filter=f'userName eq "{_escape(email)}"', count=2)
        resources = self._search(search, f"find user {email}").resources or []
        return _to_mailbox(resources[0]) if resources else None

    def list_all(self, page_size: int = 100) -> Iterator[Mailbox]:
        count = max(1, min(page_size, MAX_PAGE_SIZE))
        start = 1
        while True:
            search: SearchRequest[ScimUser] = SearchRequest(start_index=start, count=count)
            page = self._search(search, "list users")
            resources = page.resources or []
            for user in resources:
                yield _to_mailbox(user)
            start += len(resources)
            if not resources or start > (page.total_results or 0):
                return

    def create(self, spec: MailboxSpec) -> Mailbox:
        """Create the user; Conflict when one with that userName existed before we tried.

        A retry after a timeout finds the user our first attempt made and reconciles it to ``spec``."""
        what = f"create user {spec.email}"
        mailbox, created = self._retry.create(
            lambda: _to_mailbox(self._attempt(lambda: self._scim.create(_to_user(spec)), what)),
            lambda: self.find(spec.email),
            what,
        )
        if not created:
            changes = changed_fields(mailbox.spec(), spec)
            return self.update(mailbox.id, changes) if changes else mailbox
        return mailbox

    def _patch(self, id_or_email: str, operations: list[PatchOperation[Any]], what: str) -> Mailbox:
        user_id = self._resolve_id(id_or_email)
        patch = PatchOp[ScimUser](operations=operations)
        result = self._call(lambda: self._scim.modify(ScimUser, user_id, patch), what)
        # 204 No Content is a valid answer to PATCH: read the result back then.
        return _to_mailbox(result) if result is not None else self.get(user_id)

    def update(self, id_or_email: str, changes: Mapping[str, Any]) -> Mailbox:
        check_changes(changes)
        if not changes:
            return self.get(id_or_email)
        if ("email" in changes) != ("aliases" in changes):
            # Both live in ``emails``, which is written whole.
            current = self.get(id_or_email)
            changes = {"email": current.email, "aliases": current.aliases, **changes}
        return self._patch(id_or_email, _operations(changes), f"update user {id_or_email}")

    def freeze(self, id_or_email: str) -> Mailbox:
        op: PatchOperation[Any] = PatchOperation(op="replace", path="active", value=False)
        return self._patch(id_or_email, [op], f"deactivate user {id_or_email}")

    def unfreeze(self, id_or_email: str) -> Mailbox:
        op: PatchOperation[Any] = PatchOperation(op="replace", path="active", value=True)
        return self._patch(id_or_email, [op], f"activate user {id_or_email}")

    def delete(self, id_or_email: str) -> None:
        user_id = self._resolve_id(id_or_email)
        self._call(lambda: self._scim.delete(ScimUser, user_id), f"delete user {user_id}")

    # -- mail groups -------------------------------------------------------------------------

    supports_groups = True

    def _groups(self, what: str, **search: Any) -> ListResponse[Group]:
        """One page of Groups; a service without a Groups endpoint has no mail groups for us."""
        request: SearchRequest[Group] = SearchRequest(**search)
        try:
            result = self._call(lambda: self._scim.query(Group, query_parameters=request), what)
        except NotFound as exc:
            raise NotSupported(f"{what}: {self.settings.base_url} offers no SCIM Groups ({exc})") from None
        if not isinstance(result, ListResponse):
            raise Rejected("InvalidResponse", f"not a SCIM ListResponse but {type(result).__name__}", what)
        return result

    @staticmethod
    def _to_group(group: Any, emails_by_id: Mapping[str, str]) -> MailGroup:
        """``group`` with its members' addresses; a member not in ``emails_by_id`` has no mailbox and is left out."""
        members = [emails_by_id.get(str(m.value)) for m in group.members or [] if m.value]
        return MailGroup(
            email=str(group.external_id or ""),
            name=group.display_name or "",
            members=tuple(m for m in members if m),
            id=str(group.id),
        )

    def _find_group(self, email: str) -> MailGroup | None:
        found = self._groups(f"find group {email}", filter=f'externalId eq "{_escape(email)}"', count=2).resources
        return self._group_with_members(found[0]) if found else None

    def _group_with_members(self, group: Any) -> MailGroup:
        emails: dict[str, str] = {}
        for member_id in {str(m.value) for m in group.members or [] if m.value}:
            with contextlib.suppress(NotFound):  # a member whose User was deleted since is no member
                emails[member_id] = self.get(member_id).email
        return self._to_group(group, emails)

    def list_groups(self) -> Iterator[MailGroup]:
        emails_by_id: dict[str, str] | None = None
        start = 1
        while True:
            page = self._groups("list groups", start_index=start, count=MAX_PAGE_SIZE)
            resources = page.resources or []
            if resources and emails_by_id is None:
                emails_by_id = {m.id: m.email for m in self.list_all()}
            for group in resources:
                if group.external_id:  # a Group without an address was not made by us: not a mail group
                    yield self._to_group(group, emails_by_id or {})
            start += len(resources)
            if not resources or start > (page.total_results or 0):
                return

    def _members(self, addresses: tuple[str, ...], group: str) -> list[GroupMember]:
        """References to the Users behind ``addresses``; an address with no mailbox yet is left out (the next
        sync adds it once the mailbox exists)."""
        members = []
        for address in addresses:
            mailbox = self.find(address)
            if mailbox is None:
                log.warning("mail group %s: %s has no mailbox yet, left out", group, address)
                continue
            members.append(GroupMember(value=mailbox.id, type="User", display=mailbox.email))
        return members

    def create_group(self, spec: MailGroupSpec) -> MailGroup:
        existing = self._find_group(spec.email)
        if existing is not None:
            return self.update_group(existing.id, spec)
        what = f"create group {spec.email}"

        def attempt() -> MailGroup:
            group = Group(
                external_id=spec.email, display_name=spec.name, members=self._members(spec.members, spec.email)
            )
            return self._group_with_members(self._attempt(lambda: self._scim.create(group), what))

        group, created = self._retry.create(attempt, lambda: self._find_group(spec.email), what)
        return group if created else self.update_group(group.id, spec)

    def update_group(self, group_id: str, spec: MailGroupSpec) -> MailGroup:
        what = f"update group {spec.email}"
        ops: list[PatchOperation[Any]] = [
            PatchOperation(op="replace", path="displayName", value=spec.name),
            PatchOperation(op="replace", path="members", value=self._members(spec.members, spec.email)),
        ]
        patch = PatchOp[Group](operations=ops)
        result = self._call(lambda: self._scim.modify(Group, group_id, patch), what)
        if result is None:  # 204 No Content: read it back
            result = self._call(lambda: self._scim.query(Group, group_id), what)
        return self._group_with_members(result)

    def delete_group(self, group_id: str) -> None:
        try:
            self._call(lambda: self._scim.delete(Group, group_id), f"delete group {group_id}")
        except NotFound:
            return  # gone already (a retried delete whose first answer was lost): what we wanted

    def close(self) -> None:
        self._http.close()
        close_limiter = getattr(self._limiter, "close", None)
        if self._owns_limiter and close_limiter is not None:
            close_limiter()

    def __enter__(self) -> ScimProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
