"""Per-SP policy: what an SP receives and what it must do to get it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from idp.settings import NameIdFormatName, SpDefaults


class SpPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    nameid_format: NameIdFormatName = "emailAddress"
    """The format issued when the AuthnRequest does not ask for a specific one we support."""
    attributes: list[str] = Field(default_factory=lambda: ["mail", "displayName", "givenName", "sn", "groups"])
    """Keys from idp.saml.attributes.CATALOGUE released to this SP."""
    sign_response: bool = True
    sign_assertion: bool = True
    require_signed_requests: bool = False
    """Refuse AuthnRequests without a valid signature even when the metadata does not say AuthnRequestsSigned."""
    allowed_groups: list[str] = Field(default_factory=list)
    """AD groups (cn or DN, nested membership counts) whose members may use this SP; empty allows everyone."""
    assertion_lifetime: int | None = Field(default=None, ge=30, le=3600)
    enabled: bool = True

    @classmethod
    def from_defaults(cls, defaults: SpDefaults) -> SpPolicy:
        return cls(**defaults.model_dump())
