"""Mailbox provisioning: one Provider protocol, with Alibaba Mail and SCIM 2.0 behind it.

Import the concrete providers from their modules (``idp.provisioning.alimail``,
``idp.provisioning.scim``); they pull in their HTTP stacks, which the rest of the app does not need.
"""

from idp.provisioning.mapping import PersonNotProvisionable, spec_from_person
from idp.provisioning.provider import (
    Conflict,
    Mailbox,
    MailboxSpec,
    MailGroup,
    MailGroupSpec,
    NotFound,
    NotSupported,
    Provider,
    ProviderError,
    RateLimited,
    Rejected,
    Unavailable,
    changed_fields,
)
from idp.provisioning.reconcile import Reconciled, ensure_mailbox

__all__ = [
    "Conflict",
    "MailGroup",
    "MailGroupSpec",
    "Mailbox",
    "MailboxSpec",
    "NotFound",
    "NotSupported",
    "PersonNotProvisionable",
    "Provider",
    "ProviderError",
    "RateLimited",
    "Reconciled",
    "Rejected",
    "Unavailable",
    "changed_fields",
    "ensure_mailbox",
    "spec_from_person",
]
