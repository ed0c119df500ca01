"""When a sign-in needs a second factor: the SP's policy says so, the person is in a group [mfa] names, or
the SP's request asks for it (RequestedAuthnContext). Required if any of them says so."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from idp.person import GroupRef, Person
from idp.settings import MfaSettings

REFEDS_MFA = "https://refeds.org/profile/mfa"
MFA_CONTEXTS = frozenset(
    {
        REFEDS_MFA,
        "http://schemas.microsoft.com/claims/multipleauthn",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract",
        "urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken",
    }
)
"""Classes an SP may request that only a second factor satisfies; the answer names REFEDS MFA."""

SpMfa = Literal["required", "optional"]


class MfaPolicy:
    def __init__(self, settings: MfaSettings) -> None:
        self._groups = tuple(GroupRef.parse(g) for g in settings.required_groups)

    @property
    def configured(self) -> bool:
        return bool(self._groups)

    def required(self, person: Person, sp_mfa: SpMfa, requested: Sequence[str]) -> bool:
        if sp_mfa == "required" or requests_mfa(requested):
            return True
        return bool(self._groups) and person.in_any_group(self._groups)


def requests_mfa(requested: Sequence[str]) -> bool:
    """True when every class the SP would accept needs a second factor (a request that also lists a password
    class is satisfied by the password)."""
    return bool(requested) and all(ref in MFA_CONTEXTS for ref in requested)
