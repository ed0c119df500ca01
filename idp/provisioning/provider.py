"""What every mailbox provider offers, whatever its API: the protocol, its data and its errors.

JIT provisioning at sign-in and the scheduled sync speak only this protocol, so Alibaba Mail, any SCIM 2.0
service and the emulator are interchangeable behind it. A provider never sees an LDAP entry or a
password (mailboxes of SSO users have none): it gets a ``MailboxSpec``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from idp.codes import ProviderReason


def normal_addresses(addresses: Iterable[str], excluding: str = "") -> tuple[str, ...]:
    """Mail addresses as a provider compares them: lower-case, each once, sorted, without ``excluding``."""
    skip = excluding.strip().lower()
    return tuple(sorted({a.strip().lower() for a in addresses if a.strip() and a.strip().lower() != skip}))


@dataclass(frozen=True)
class MailboxSpec:
    """The mailbox an employee should have, as AD describes them."""

    email: str
    display_name: str
    given_name: str | None = None
    surname: str | None = None
    department: tuple[str, ...] = ()
    """Path from the top of the organisation, e.g. ("Engineering", "Platform"); empty for none."""
    title: str | None = None
    phone: str | None = None
    employee_number: str | None = None
    aliases: tuple[str, ...] = ()
    """Further addresses that deliver to this mailbox (AD ``proxyAddresses``); kept sorted and lower-case."""

    def __post_init__(self) -> None:
        # Normalised once here so that every comparison (changed_fields, the sync's plan) is plain equality.
        object.__setattr__(self, "aliases", normal_addresses(self.aliases, excluding=self.email))


SPEC_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(MailboxSpec))
"""Every key ``Provider.update`` accepts in its ``changes``."""


@dataclass(frozen=True, kw_only=True)
class Mailbox(MailboxSpec):
    """A mailbox as the provider holds it; ``id`` is the provider's own, stable across renames."""

    id: str
    frozen: bool = False

    def spec(self) -> MailboxSpec:
        return MailboxSpec(**{name: getattr(self, name) for name in SPEC_FIELDS})


def changed_fields(current: MailboxSpec, wanted: MailboxSpec) -> dict[str, Any]:
    """The fields of ``wanted`` that differ from ``current``: what an update has to send.

    Email addresses compare case-insensitively because mail systems treat them so; a
    change of case alone is not worth a write.
    """
    changes: dict[str, Any] = {}
    for name in SPEC_FIELDS:
        have, want = getattr(current, name), getattr(wanted, name)
        if name == "email" and have.lower() == want.lower():
            continue
        if have != want:
            changes[name] = want
    return changes


@dataclass(frozen=True)
class MailGroupSpec:
    """A mail group (distribution list) as AD describes it: mail to ``email`` reaches every member."""

    email: str
    name: str
    members: tuple[str, ...]
    """Member mailbox addresses, sorted, lower-case (normalised on construction)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", normal_addresses(self.members))


@dataclass(frozen=True)
class MailGroup(MailGroupSpec):
    """A mail group as the provider holds it; ``id`` is the provider's own."""

    id: str

    def spec(self) -> MailGroupSpec:
        return MailGroupSpec(email=self.email, name=self.name, members=self.members)


def check_changes(changes: Mapping[str, Any]) -> None:
    """Refuse keys that are not MailboxSpec fields, so a typo never turns into a silent no-op."""
    unknown = sorted(set(changes) - set(SPEC_FIELDS))
    if unknown:
        raise ValueError(f"unknown mailbox field(s) {unknown}; allowed: {list(SPEC_FIELDS)}")


class ProviderError(Exception):
    """Base for everything a mailbox provider can refuse or fail with.

    ``reason`` is the stable code written to the audit trail; the message is for an admin
    and never carries a token or a secret.
    """

    reason: ProviderReason = "provider_error"


class NotFound(ProviderError):
    reason = "provider_not_found"


class Conflict(ProviderError):
    """The mailbox (or department) already exists: find it and reconcile instead of creating."""

    reason = "provider_conflict"


class RateLimited(ProviderError):
    """The provider (or our own shared limiter) says to slow down; still so after our retries."""

    reason = "provider_rate_limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Rejected(ProviderError):
    """The provider refused the request; ``code`` and ``message`` are its own words."""

    reason = "provider_rejected"

    def __init__(self, code: str, message: str, developer_message: str = "", status: int | None = None) -> None:
        text = f"{code}: {message}" if code else message
        if developer_message and developer_message != message:
            text += f" ({developer_message})"
        super().__init__(text)
        self.code = code
        self.message = message
        self.developer_message = developer_message
        self.status = status


class NotSupported(ProviderError):
    """The provider's API has no way to do this (e.g. mail groups); the caller reports it and moves on."""

    reason = "provider_unsupported"


class Unavailable(ProviderError):
    """The provider did not answer usably (timeouts, dropped connections, 5xx) after our retries."""

    reason = "provider_unavailable"


@runtime_checkable
class Provider(Protocol):
    """A mail service that holds one mailbox per employee.

    ``id_or_email`` accepts the provider's id or the mailbox's email address. Every create is safe to
    repeat after a timeout: it looks up by the stable key (the address) and reconciles what it finds.
    The group methods raise ``NotSupported`` where the service has no mail groups: always when
    ``supports_groups`` is false, and when a SCIM service turns out to offer no Groups.
    """

    supports_groups: bool

    def find(self, email: str) -> Mailbox | None: ...

    def list_all(self, page_size: int = 100) -> Iterator[Mailbox]: ...

    def create(self, spec: MailboxSpec) -> Mailbox:
        """Raise Conflict when a mailbox with that address existed before the first attempt; one a timed-out
        attempt of this call made is found, reconciled to ``spec`` and returned."""
        ...

    def update(self, id_or_email: str, changes: Mapping[str, Any]) -> Mailbox:
        """``changes`` maps MailboxSpec field names to their new values; only those are sent."""
        ...

    def freeze(self, id_or_email: str) -> Mailbox: ...

    def unfreeze(self, id_or_email: str) -> Mailbox: ...

    def delete(self, id_or_email: str) -> None: ...

    def list_groups(self) -> Iterator[MailGroup]: ...

    def create_group(self, spec: MailGroupSpec) -> MailGroup:
        """Idempotent: an existing group with that address is reconciled to ``spec`` and returned."""
        ...

    def update_group(self, group_id: str, spec: MailGroupSpec) -> MailGroup:
        """Make the group's name and members match ``spec``."""
        ...

    def delete_group(self, group_id: str) -> None: ...

    def close(self) -> None: ...
