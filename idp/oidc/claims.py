"""What an ID token and the userinfo endpoint say about a person, from the same Person the SAML attribute
release reads, and the same mail address rule (idp.mail_address) as the emailAddress NameID and JIT.

``sub`` is the person's objectGUID: stable across renames and moves, and never reused for someone else.
"""

from __future__ import annotations

from idp.mail_address import NoMailAddress, mail_address
from idp.person import Person
from idp.settings import ProvisioningSettings

_BY_SCOPE: dict[str, tuple[str, ...]] = {
    "profile": ("name", "given_name", "family_name", "preferred_username"),
    "email": ("email", "email_verified"),
    "groups": ("groups",),
}


def person_claims(person: Person, provisioning: ProvisioningSettings | None) -> dict[str, object]:
    """Every claim we know of ``person``; ``released`` picks those a token's scopes allow."""
    claims: dict[str, object] = {
        "sub": str(person.guid),
        "name": person.display_name or person.username,
        "preferred_username": person.upn or person.username,
        "groups": list(person.groups),
    }
    if person.given_name:
        claims["given_name"] = person.given_name
    if person.surname:
        claims["family_name"] = person.surname
    try:
        claims["email"] = mail_address(person, provisioning)
        # The address is the one our directory and mailbox rule give: the company vouches for it.
        claims["email_verified"] = True
    except NoMailAddress:
        pass
    return claims


def released(claims: dict[str, object], scope: str) -> dict[str, object]:
    """``sub`` always; the other claims only under the scope that asks for them."""
    scopes = scope.split()
    allowed = {"sub"}.union(*(_BY_SCOPE.get(s, ()) for s in scopes))
    return {k: v for k, v in claims.items() if k in allowed}
