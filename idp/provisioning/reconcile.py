"""Make a provider's mailbox match what AD says, whoever created it first.

Two nodes may provision the same new hire at once (two sign-ins, or a sign-in during the nightly
sync): the loser's create gets 409, which here means "it exists now; find it and update what
differs", never a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from idp.provisioning.provider import Conflict, Mailbox, MailboxSpec, Provider, changed_fields


@dataclass(frozen=True)
class Reconciled:
    mailbox: Mailbox
    action: Literal["created", "updated", "unchanged"]
    changes: dict[str, Any] = field(default_factory=dict)
    """The fields that were sent on update (MailboxSpec names)."""


def ensure_mailbox(provider: Provider, spec: MailboxSpec) -> Reconciled:
    """Create the mailbox, or update the fields that differ; leaves a frozen mailbox frozen.

    Whether a frozen mailbox should be thawed is the caller's decision (a sign-in says the account is
    active in AD; the sync knows more), so ``mailbox.frozen`` is returned for it to act on.
    """
    existing = provider.find(spec.email)
    if existing is None:
        try:
            return Reconciled(provider.create(spec), "created")
        except Conflict:
            existing = provider.find(spec.email)
            if existing is None:
                raise
    changes = changed_fields(existing.spec(), spec)
    if not changes:
        return Reconciled(existing, "unchanged")
    return Reconciled(provider.update(existing.id, changes), "updated", changes)
