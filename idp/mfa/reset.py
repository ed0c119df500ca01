"""An admin's reset of a person's second factors (console and CLI alike): every factor, recovery code and
remembered browser gone, and one audit row naming the admin. The person enrols again at their next sign-in
that needs a factor."""

from __future__ import annotations

from idp.audit import AuditTrail
from idp.mfa.factors import Factors


def reset_factors(factors: Factors, audit: AuditTrail, username: str, *, actor: str, ip: str | None = None) -> int:
    """How many factors ``username`` (as recorded at enrolment) had; 0 writes a refused row."""
    guid = factors.guid_of(username)
    removed = factors.reset(guid) if guid is not None else 0
    audit.record(
        "mfa_removed",
        "success" if removed else "refused",
        reason="admin_reset",
        username=username,
        ip=ip,
        detail=f"by {actor}: {removed} factor(s) removed",
    )
    return removed
