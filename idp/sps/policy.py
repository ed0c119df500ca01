"""Per-SP policy: what an SP receives and what it must do to get it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from idp.person import GroupRef, Person
from idp.settings import UNSIGNED_POLICY, NameIdFormatName, SpDefaults
from idp.sps.vocabulary import CATALOGUE

_ROLE_ARN = re.compile(r"^acs:ram::\d+:role/[\w.@+=,-]+$")
_PROVIDER_ARN = re.compile(r"^acs:ram::\d+:saml-provider/[\w.-]+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z0-9-]{1,63}$")


def _catalogue_key(key: str) -> str:
    # Checked when the policy is saved: an unknown key would otherwise fail every sign-in to the SP.
    if key not in CATALOGUE:
        raise ValueError(f"{key!r} is not an attribute in the catalogue ({', '.join(CATALOGUE)})")
    return key


class RoleMapping(BaseModel):
    """Members of ``group`` may assume an Alibaba Cloud RAM role through this SP (role-based SSO)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: str = Field(min_length=1, max_length=512)
    """AD security group, as GroupRef's stored form (DN and SID); nested membership counts."""
    role_arn: str
    """acs:ram::<account id>:role/<role name>"""
    provider_arn: str
    """acs:ram::<account id>:saml-provider/<IdP name in RAM>"""

    @field_validator("role_arn")
    @classmethod
    def _role(cls, v: str) -> str:
        if not _ROLE_ARN.match(v.strip()):
            raise ValueError("must look like acs:ram::<account id>:role/<role name>")
        return v.strip()

    @field_validator("provider_arn")
    @classmethod
    def _provider(cls, v: str) -> str:
        if not _PROVIDER_ARN.match(v.strip()):
            raise ValueError("must look like acs:ram::<account id>:saml-provider/<provider name>")
        return v.strip()

    @property
    def value(self) -> str:
        """The attribute value Alibaba Cloud expects: "role-ARN,provider-ARN"."""
        return f"{self.role_arn},{self.provider_arn}"


class SpPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(default=None, max_length=200)
    """Shown in the console and on the app launcher instead of the name in the SP's metadata."""
    preset: str | None = None
    """The preset (idp.sps.presets) this policy was filled from, for the console to show; None: by hand."""
    nameid_format: NameIdFormatName = "emailAddress"
    """The format issued when the AuthnRequest does not ask for a specific one we support."""
    nameid_attribute: str | None = None
    """Catalogue key whose value is the NameID for the emailAddress and unspecified formats; None: mail for
    emailAddress, sAMAccountName for unspecified. Persistent and transient NameIDs never come from AD."""
    nameid_domain: str | None = None
    """When set, the NameID is the part of that value before any "@", then "@" and this domain: an Alibaba
    Cloud RAM user's logon name is <name>@<account default domain>."""
    attributes: list[str] = Field(default_factory=lambda: ["mail", "displayName", "givenName", "sn", "groups"])
    """Keys from idp.sps.vocabulary.CATALOGUE released to this SP."""
    attribute_name_format: Literal["uri", "basic"] = "uri"
    """uri: released under their urn:oid names (NameFormat uri); basic: under their friendly names
    (NameFormat basic), which many SaaS consoles expect."""
    attribute_names: dict[str, str] = Field(default_factory=dict)
    """Catalogue key -> the SAML Name this SP expects instead (e.g. "email"); overrides the format above."""
    roles: list[RoleMapping] = Field(default_factory=list)
    """Alibaba Cloud role-based SSO: released as the .../SAML-Role/Attributes/Role attribute, one value for
    each mapping whose group the person is in."""
    role_session_name_attribute: str | None = None
    """Catalogue key released as .../SAML-Role/Attributes/RoleSessionName (when roles are mapped)."""
    sign_response: bool = True
    sign_assertion: bool = True
    encrypt_assertion: bool = False
    """Encrypt the assertion to the SP's encryption certificate (AES-GCM, key sent with RSA-OAEP)."""
    require_signed_requests: bool = False
    """Refuse AuthnRequests without a valid signature even when the metadata does not say AuthnRequestsSigned."""
    allowed_groups: list[str] = Field(default_factory=list)
    """AD security groups (GroupRef's stored form; nested membership counts) whose members may use this SP;
    empty allows everyone. A bare name, stored before groups were identities, counts only while it names
    exactly one security group."""
    assertion_lifetime: int | None = Field(default=None, ge=30, le=3600)
    idp_initiated: bool = False
    """Employees may start sign-in here (/saml/init, the app launcher) without a request from the SP."""
    default_relay_state: str | None = Field(default=None, max_length=1024)
    """RelayState sent with IdP-initiated responses: where the SP should take the person afterwards."""
    relay_state_allowed: list[str] = Field(default_factory=list)
    """Further RelayStates an IdP-initiated link (/saml/init?RelayState=...) may ask for; any other is refused,
    so nobody can hand out a sign-in link that lands employees on a page the SP was not meant to send them to."""
    mfa: Literal["required", "optional"] = "optional"
    """required: everyone gives a second factor (TOTP or a recovery code) before this SP gets an assertion;
    optional: only when [mfa] required_groups names the person's group or the SP's request asks for it."""
    enabled: bool = True

    @field_validator("attributes")
    @classmethod
    def _attributes(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(_catalogue_key(k) for k in v))

    @field_validator("nameid_attribute", "role_session_name_attribute")
    @classmethod
    def _optional_key(cls, v: str | None) -> str | None:
        return None if v is None else _catalogue_key(v)

    @field_validator("attribute_names")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        for key, name in v.items():
            _catalogue_key(key)
            if not name.strip() or len(name) > 256:
                raise ValueError(f"the SAML name for {key!r} must be 1 to 256 characters")
        return {k: n.strip() for k, n in v.items()}

    @field_validator("relay_state_allowed")
    @classmethod
    def _relay_states(cls, v: list[str]) -> list[str]:
        for value in v:
            if not value.strip() or len(value) > 1024:
                raise ValueError("each allowed RelayState must be 1 to 1024 characters")
        return list(dict.fromkeys(value.strip() for value in v))

    @field_validator("nameid_domain")
    @classmethod
    def _domain(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        v = v.strip().lstrip("@").lower()
        if not _DOMAIN.match(v):
            raise ValueError(f"{v!r} is not a domain name")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SpPolicy:
        if self.role_session_name_attribute is not None and not self.roles:
            raise ValueError("role_session_name_attribute needs at least one role mapping")
        if self.default_relay_state and not self.idp_initiated:
            raise ValueError("default_relay_state is only used with idp_initiated")
        if not (self.sign_response or self.sign_assertion):
            raise ValueError(UNSIGNED_POLICY)
        return self

    @classmethod
    def from_defaults(cls, defaults: SpDefaults) -> SpPolicy:
        return cls(**defaults.model_dump())


def matching_roles(person: Person, roles: Sequence[RoleMapping]) -> list[RoleMapping]:
    """The role mappings whose group the person is in (nested membership counts), each role once."""
    seen: set[str] = set()
    out = []
    for mapping in roles:
        if mapping.value not in seen and person.in_any_group([GroupRef.parse(mapping.group)]):
            seen.add(mapping.value)
            out.append(mapping)
    return out
