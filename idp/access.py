"""The one access decision: may this person use this SP, and if not, every reason why not.

The sign-in pipeline refuses on the first reason, the app launcher shows a tile only when there is none,
and the console's preview lists them all: one rule, so the three cannot disagree. The SP's policy is read
by entityID at the moment of the decision (never a copy taken when the request arrived), so an admin who
switches an SP off or tightens its groups stops sign-ins that are already waiting at the password page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from idp.codes import AccessReason
from idp.person import GroupRef, Person, group_refs
from idp.sps.policy import SpPolicy, matching_roles
from idp.sps.source import SpSource


@dataclass(frozen=True)
class Refusal:
    reason: AccessReason
    """The audit code, and the key of the words the person reads."""
    detail: str
    """For the admin (audit row, console): what exactly is missing. Never shown to the person."""


@dataclass(frozen=True)
class SpFacts:
    """What the decision needs to know about an SP besides the person."""

    entity_id: str
    policy: SpPolicy
    metadata_expired: datetime | None
    """The validUntil of the SP's metadata once it has passed."""
    can_encrypt: bool
    """The SP's metadata holds a certificate we can encrypt assertions to."""


def refusals(person: Person | None, sp: SpFacts) -> list[Refusal]:
    """Every reason ``person`` may not sign in to ``sp``, most fundamental first; empty means allowed.

    With no person yet (nobody has typed a password), only the reasons that keep everyone out."""
    policy = sp.policy
    found: list[Refusal] = []
    if not policy.enabled:
        found.append(Refusal("sp_disabled", "the SP is switched off by an administrator"))
    if sp.metadata_expired is not None:
        found.append(
            Refusal("sp_metadata_expired", f"its metadata expired on {sp.metadata_expired:%Y-%m-%d %H:%M} UTC")
        )
    if person is None:
        return found
    allowed = group_refs(policy.allowed_groups)
    if allowed and not person.in_any_group(allowed):
        found.append(Refusal("not_in_allowed_group", "allowed: " + ", ".join(r.label for r in allowed)))
    if policy.roles and not matching_roles(person, policy.roles):
        groups = ", ".join(dict.fromkeys(GroupRef.parse(m.group).label for m in policy.roles))
        found.append(Refusal("no_role_for_user", "role groups: " + groups))
    if policy.encrypt_assertion and not sp.can_encrypt:
        found.append(
            Refusal("sp_cannot_encrypt", "encrypt_assertion is on, and the SP's metadata has no encryption certificate")
        )
    return found


class AccessDecision:
    """Reads the SP's facts fresh for each decision: the policy from the registry (whose per-process cache
    a change made in this process clears at once), expiry from its metadata, encryptability from the SAML
    layer (passed in as a function, so this module knows nothing of SAML)."""

    def __init__(self, sps: SpSource, can_encrypt: Callable[[str], bool]) -> None:
        self._sps = sps
        self._can_encrypt = can_encrypt

    def facts(self, entity_id: str) -> SpFacts:
        policy = self._sps.policy_for(entity_id)
        return SpFacts(
            entity_id=entity_id,
            policy=policy,
            metadata_expired=self._sps.metadata_expired(entity_id),
            # Only asked when it matters: it looks into the SP's metadata.
            can_encrypt=self._can_encrypt(entity_id) if policy.encrypt_assertion else True,
        )

    def refusals(self, person: Person | None, entity_id: str) -> list[Refusal]:
        return refusals(person, self.facts(entity_id))
