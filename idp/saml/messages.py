"""What the SAML layer hands the rest of the product: requests it accepted, and what the browser carries back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PostForm:
    """An auto-POST form the browser submits."""

    action: str
    fields: dict[str, str]


@dataclass(frozen=True)
class RedirectTo:
    url: str


@dataclass(frozen=True)
class AuthnRequestInfo:
    """An accepted AuthnRequest (or, for an IdP-initiated sign-in, what the SP would have asked).

    It names the SP and says where to answer; it carries no policy: the sign-in reads the SP's policy by
    entityID whenever it needs it, so a change made while the person types their password applies."""

    request_id: str | None
    """None for an IdP-initiated sign-in: the response is unsolicited (no InResponseTo)."""
    sp_entity_id: str
    sp_name: str
    """mdui:DisplayName, else OrganizationDisplayName, else the entityID."""
    acs_url: str
    acs_binding: str
    force_authn: bool
    is_passive: bool
    nameid_format: str | None
    """The format the request's NameIDPolicy asked for (None = unspecified/absent)."""
    relay_state: str | None
    requested_contexts: tuple[str, ...] = ()
    """The AuthnContextClassRefs of the request's RequestedAuthnContext, any of which satisfies the SP
    (empty: it asked for none)."""


@dataclass(frozen=True)
class LogoutRequestInfo:
    request_id: str
    sp_entity_id: str
    name_id: str
    session_indexes: tuple[str, ...]
    relay_state: str | None
    binding: str
    """The binding the response goes back with (a SAML binding URI)."""
    response_location: str
    name_id_format: str | None = None
    name_qualifier: str | None = None
    sp_name_qualifier: str | None = None


@dataclass(frozen=True)
class SentLogoutRequest:
    """A LogoutRequest of ours on its way to an SP, and what its answer must say it answers."""

    request_id: str
    sp_entity_id: str
    out: PostForm | RedirectTo


@dataclass(frozen=True)
class LogoutResponseInfo:
    """An SP's verified LogoutResponse to one of our LogoutRequests."""

    sp_entity_id: str
    in_response_to: str
    success: bool
    status: str
    """The top-level status code URI."""


@dataclass(frozen=True)
class NameId:
    format: str
    """The format URI."""
    value: str
    name_qualifier: str | None = None
    sp_name_qualifier: str | None = None


class NameIdPolicyError(Exception):
    """No NameID can be issued for this request and person; answer with InvalidNameIDPolicy."""
