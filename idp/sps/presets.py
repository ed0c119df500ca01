"""Presets: the policy a well-known SP needs, filled from a few parameters the admin knows (an account's default
domain, which AD groups get which RAM role), plus what the admin must enter on the provider's side.

Each requirement below is taken from the provider's published documentation; the URL is next to it. Where a
provider does not publish a value (an IDaaS instance's own endpoints, the international user-based SSO
entityID), the preset says so instead of guessing: the admin reads it from the provider's console.

A preset only fills an SpPolicy; it never saves anything. The console shows the result for the admin to review
and save like any other policy change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

from idp.sps.manual import manual_metadata
from idp.sps.policy import RoleMapping, SpPolicy

ParamKind = Literal["text", "lines", "choice"]


class PresetError(ValueError):
    """The parameters do not make a usable policy; ``errors`` maps each parameter at fault to what is wrong."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{name}: {message}" for name, message in self.errors.items()))


class UnknownPreset(KeyError):
    """No preset has that name."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: ParamKind = "text"
    required: bool = False
    choices: tuple[str, ...] = ()
    default: str = ""


@dataclass(frozen=True)
class ProviderSide:
    """What the SP looks like from our side, and where the admin finds the rest. ``None``: not published as a
    fixed value; the admin copies it from the provider's console (``metadata_url`` then says where)."""

    entity_id: str | None
    acs_url: str | None
    metadata_url: str | None
    docs: tuple[str, ...]


@dataclass(frozen=True)
class Preset:
    key: str
    params: tuple[Param, ...]
    build: Callable[[dict[str, str]], SpPolicy]
    provider: Callable[[dict[str, str]], ProviderSide]

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


# --- shared rules ------------------------------------------------------------------------------------------

_SITES = ("cn", "intl")
"""Alibaba Cloud's China site (aliyun.com) and international site (alibabacloud.com) sign in at different hosts."""

_ACCOUNT_ID = re.compile(r"^\d{5,20}$")

# https://www.alibabacloud.com/help/en/ram/configure-alibaba-cloud-as-a-trusted-sp-for-role-based-sso and
# https://www.alibabacloud.com/help/doc-detail/96239.htm: "RelayState only accepts URLs from Alibaba-owned domains".
_ALIBABA_RELAY_DOMAINS = (
    "aliyun.com",
    "hichina.com",
    "yunos.com",
    "taobao.com",
    "tmall.com",
    "alibabacloud.com",
    "alipay.com",
)

# AssumeRole's RoleSessionName: ^[a-zA-Z0-9.@\-_]+$, two characters at least
# (https://developer.aliyun.com/ask/238559 quoting the STS API reference). Free-text AD attributes (names,
# departments) are often Chinese and would be refused by Alibaba Cloud with an unhelpful message, so only
# identifier-like attributes may feed it.
SESSION_NAME_SOURCES = ("samAccountName", "uid", "upn", "mail", "employeeID", "employeeNumber")

# The RAM user's logon name is <name>@<logon suffix>; the <name> comes from one of these (its part before "@").
LOGON_NAME_SOURCES = ("samAccountName", "upn", "mail", "uid", "employeeID", "employeeNumber")

_ALLOWED_GROUPS = Param("allowed_groups", "lines")


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def _choice(params: dict[str, str], p: Param, errors: dict[str, str]) -> str:
    value = params.get(p.name, "").strip() or p.default
    if value not in p.choices:
        errors[p.name] = f"choose one of {', '.join(p.choices)}"
    return value


def _required(params: dict[str, str], name: str, errors: dict[str, str]) -> str:
    value = params.get(name, "").strip()
    if not value:
        errors[name] = "required"
    return value


def _relay_state(params: dict[str, str], errors: dict[str, str], *, alibaba: bool) -> str | None:
    value = params.get("default_relay_state", "").strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        errors["default_relay_state"] = "must be an https:// URL"
    elif alibaba and not any(parts.hostname == d or parts.hostname.endswith("." + d) for d in _ALIBABA_RELAY_DOMAINS):
        errors["default_relay_state"] = "Alibaba Cloud only accepts a RelayState on " + ", ".join(
            "*." + d for d in _ALIBABA_RELAY_DOMAINS
        )
    return value


def _policy(errors: dict[str, str], **fields: object) -> SpPolicy:
    """The SpPolicy, or a PresetError naming the preset parameter (or policy field) behind each problem."""
    if errors:
        raise PresetError(errors)
    try:
        return SpPolicy(**fields)
    except ValidationError as exc:
        raise PresetError(_policy_errors(exc)) from None


def _policy_errors(exc: ValidationError) -> dict[str, str]:
    out: dict[str, str] = {}
    for error in exc.errors():
        loc = error["loc"]
        name = str(loc[0]) if loc else "policy"
        message = error["msg"].removeprefix("Value error, ")
        if name == "roles" and len(loc) > 1 and isinstance(loc[1], int):
            message = f"line {loc[1] + 1}: {message}"
        out.setdefault(name, message)
    return out


# --- Alibaba Cloud RAM user-based SSO ----------------------------------------------------------------------
# Requirements: https://www.alibabacloud.com/help/en/ram/saml-response-for-user-based-sso
#   - the whole Assertion signed; Recipient = the ACS URL; NameID = <RAM user name>@<logon suffix>, the suffix being
#     the default domain (<alias>.onaliyun.com), a domain alias or the auxiliary domain.
#   - Audience = https://signin.aliyun.com/<account id>/saml/SSO (China site; the entityID in the account's SP
#     metadata, https://signin.aliyun.com/saml/SpMetadata.xml?tenantID=<account id>).
# SP side: https://www.alibabacloud.com/help/doc-detail/96239.htm (entityID/ACS come from that metadata; RelayState
# optional, Alibaba domains only). Alibaba's AuthnRequest asks for NameIDPolicy emailAddress, and the logon name
# has an e-mail's shape, so the NameID is issued in that format. Alibaba Cloud offers IdP-initiated sign-in
# (https://www.alibabacloud.com/help/doc-detail/93685.htm), so the app launcher may show it.

_USER_PARAMS = (
    Param("site", "choice", choices=_SITES, default="cn"),
    Param("account_id", required=True),
    Param("nameid_domain", required=True),
    Param("nameid_attribute", "choice", choices=LOGON_NAME_SOURCES, default="samAccountName"),
    Param("default_relay_state"),
    _ALLOWED_GROUPS,
)


def _ram_user(params: dict[str, str]) -> SpPolicy:
    errors: dict[str, str] = {}
    _choice(params, _USER_PARAMS[0], errors)
    _account_id(params, errors)
    domain = _required(params, "nameid_domain", errors)
    attribute = _choice(params, _USER_PARAMS[3], errors)
    relay = _relay_state(params, errors, alibaba=True)
    return _policy(
        errors,
        preset="aliyun_ram_user",
        nameid_format="emailAddress",
        nameid_attribute=attribute,
        nameid_domain=domain,
        attributes=[],
        sign_assertion=True,
        sign_response=True,
        idp_initiated=True,
        default_relay_state=relay,
        allowed_groups=_lines(params.get("allowed_groups", "")),
    )


def _account_id(params: dict[str, str], errors: dict[str, str]) -> str:
    value = _required(params, "account_id", errors)
    if value and not _ACCOUNT_ID.match(value):
        errors["account_id"] = "the Alibaba Cloud account ID is a number (RAM console, account overview)"
    return value


def _ram_user_side(params: dict[str, str]) -> ProviderSide:
    uid = params.get("account_id", "").strip()
    docs = (
        "https://www.alibabacloud.com/help/doc-detail/96239.htm",
        "https://www.alibabacloud.com/help/en/ram/saml-response-for-user-based-sso",
    )
    if params.get("site", "cn") == "intl":
        # Only the ACS URL is published for the international site; the entityID is in the account's metadata.
        return ProviderSide(None, "https://signin-intl.aliyun.com/saml/SSO", None, docs)
    return ProviderSide(
        f"https://signin.aliyun.com/{uid}/saml/SSO",
        "https://signin.aliyun.com/saml/SSO",
        f"https://signin.aliyun.com/saml/SpMetadata.xml?tenantID={uid}",
        docs,
    )


# --- Alibaba Cloud RAM role-based SSO ----------------------------------------------------------------------
# Requirements: https://www.alibabacloud.com/help/en/ram/saml-response-for-role-based-sso
#   - the whole Assertion signed; Recipient = the role-based ACS URL; NameID present but not used to find anyone
#     (the example uses the persistent format);
#   - attribute https://www.aliyun.com/SAML-Role/Attributes/Role: one value "role-ARN,provider-ARN" per role the
#     person may assume; https://www.aliyun.com/SAML-Role/Attributes/RoleSessionName: who is signing in.
# SP side (fixed, public): https://www.alibabacloud.com/help/en/ram/configure-alibaba-cloud-as-a-trusted-sp-for-role-based-sso
#   China site (https://help.aliyun.com/document_detail/113735.html): metadata
#   https://signin.aliyun.com/saml-role/sp-metadata.xml, entityID urn:alibaba:cloudcomputing,
#   ACS https://signin.aliyun.com/saml-role/sso. International: urn:alibaba:cloudcomputing:international,
#   https://signin.alibabacloud.com/saml-role/sso, metadata https://signin.alibabacloud.com/saml-role/sp-metadata.xml.
# Someone in none of the mapped groups would reach Alibaba Cloud with no Role value and fail there without a
# useful message, so the preset allows exactly the mapped groups: we refuse them here, with a reason.

_ROLE_PARAMS = (
    Param("site", "choice", choices=_SITES, default="cn"),
    Param("roles", "lines", required=True),
    Param("role_session_name_attribute", "choice", choices=SESSION_NAME_SOURCES, default="samAccountName"),
    Param("default_relay_state"),
)


def parse_role_lines(text: str) -> tuple[list[RoleMapping], dict[int, str]]:
    """One mapping per line as "group, role-ARN, provider-ARN" (the group may itself hold commas: a DN). Returns
    the mappings and, by 1-based line number, what is wrong with each line that is not one."""
    mappings: list[RoleMapping] = []
    problems: dict[int, str] = {}
    for number, line in enumerate(_lines(text), start=1):
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3 or not all(parts):
            problems[number] = "write: AD group, role ARN, provider ARN"
            continue
        try:
            mappings.append(RoleMapping(group=parts[0], role_arn=parts[1], provider_arn=parts[2]))
        except ValidationError as exc:
            problems[number] = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
    return mappings, problems


def _ram_role(params: dict[str, str]) -> SpPolicy:
    errors: dict[str, str] = {}
    _choice(params, _ROLE_PARAMS[0], errors)
    roles, problems = parse_role_lines(params.get("roles", ""))
    if problems:
        errors["roles"] = "; ".join(f"line {n}: {msg}" for n, msg in problems.items())
    elif not roles:
        errors["roles"] = "map at least one AD group to a role"
    session = _choice(params, _ROLE_PARAMS[2], errors)
    relay = _relay_state(params, errors, alibaba=True)
    return _policy(
        errors,
        preset="aliyun_ram_role",
        nameid_format="persistent",
        attributes=[],
        roles=roles,
        role_session_name_attribute=session,
        sign_assertion=True,
        sign_response=True,
        idp_initiated=True,
        default_relay_state=relay,
        allowed_groups=list(dict.fromkeys(r.group for r in roles)),
    )


def _ram_role_side(params: dict[str, str]) -> ProviderSide:
    docs = (
        "https://www.alibabacloud.com/help/en/ram/configure-alibaba-cloud-as-a-trusted-sp-for-role-based-sso",
        "https://www.alibabacloud.com/help/en/ram/saml-response-for-role-based-sso",
    )
    if params.get("site", "cn") == "intl":
        return ProviderSide(
            "urn:alibaba:cloudcomputing:international",
            "https://signin.alibabacloud.com/saml-role/sso",
            "https://signin.alibabacloud.com/saml-role/sp-metadata.xml",
            docs,
        )
    return ProviderSide(
        "urn:alibaba:cloudcomputing",
        "https://signin.aliyun.com/saml-role/sso",
        "https://signin.aliyun.com/saml-role/sp-metadata.xml",
        docs,
    )


# --- Alibaba Cloud IDaaS (EIAM) with us as its external SAML IdP ---------------------------------------------
# https://www.alibabacloud.com/help/en/idaas/eiam/user-guide/bind-saml-identity-provider/ : IDaaS is the SP; it
#   reads our metadata URL, then links the SAML identity to an IDaaS account (manual or automatic binding, by a
#   matching rule on the IDaaS account's username or e-mail).
# https://www.alibabacloud.com/help/en/idaas/eiam/user-guide/saml-idp-field-mapping-configuration-guide : IDaaS
#   fills account fields from the AttributeStatement; the admin picks attributes by name, so they are released
#   under plain (basic) names.
# Each IDaaS instance has its own SP entityID and ACS URL: the admin downloads the instance's SP metadata.

_IDAAS_PARAMS = (
    Param("match_on", "choice", choices=("mail", "upn", "samAccountName"), default="mail"),
    _ALLOWED_GROUPS,
)


def _idaas(params: dict[str, str]) -> SpPolicy:
    errors: dict[str, str] = {}
    match_on = _choice(params, _IDAAS_PARAMS[0], errors)
    return _policy(
        errors,
        preset="aliyun_idaas",
        # An account name is not an e-mail address: say "unspecified" for it rather than mislabel it.
        nameid_format="unspecified" if match_on == "samAccountName" else "emailAddress",
        nameid_attribute=match_on,
        attributes=["mail", "displayName", "samAccountName", "mobile", "department"],
        attribute_name_format="basic",
        sign_assertion=True,
        sign_response=True,
        idp_initiated=False,
        allowed_groups=_lines(params.get("allowed_groups", "")),
    )


def _idaas_side(params: dict[str, str]) -> ProviderSide:
    return ProviderSide(
        None,
        None,
        None,
        (
            "https://www.alibabacloud.com/help/en/idaas/eiam/user-guide/bind-saml-identity-provider/",
            "https://www.alibabacloud.com/help/en/idaas/eiam/user-guide/saml-idp-field-mapping-configuration-guide",
        ),
    )


# --- an enterprise mailbox ---------------------------------------------------------------------------------
# Mail SaaS that speak SAML find the mailbox by the e-mail address in the NameID and read the person's name and
# department from plain attribute names (e.g. Zoho Mail: https://zoho.com.cn/mail/articles/saml-.html). Alibaba
# Mail itself signs in through its own API, not SAML (see DESIGN.md §6), so this stays a generic template.
# nameid_domain serves a mailbox domain that differs from AD's mail attribute (mail from samAccountName@domain).

_MAILBOX_PARAMS = (
    Param("nameid_attribute", "choice", choices=("mail", "upn", "samAccountName"), default="mail"),
    Param("nameid_domain"),
    Param("default_relay_state"),
    _ALLOWED_GROUPS,
)


def _mailbox(params: dict[str, str]) -> SpPolicy:
    errors: dict[str, str] = {}
    attribute = _choice(params, _MAILBOX_PARAMS[0], errors)
    domain = params.get("nameid_domain", "").strip() or None
    if attribute == "samAccountName" and domain is None:
        errors["nameid_domain"] = "an account name is not an e-mail address: give the mail domain to add to it"
    relay = _relay_state(params, errors, alibaba=False)
    return _policy(
        errors,
        preset="mailbox",
        nameid_format="emailAddress",
        nameid_attribute=attribute,
        nameid_domain=domain,
        attributes=["mail", "displayName", "givenName", "sn", "department"],
        attribute_name_format="basic",
        sign_assertion=True,
        sign_response=True,
        idp_initiated=True,
        default_relay_state=relay,
        allowed_groups=_lines(params.get("allowed_groups", "")),
    )


def _mailbox_side(params: dict[str, str]) -> ProviderSide:
    return ProviderSide(None, None, None, ())


PRESETS: dict[str, Preset] = {
    p.key: p
    for p in (
        Preset("aliyun_ram_user", _USER_PARAMS, _ram_user, _ram_user_side),
        Preset("aliyun_ram_role", _ROLE_PARAMS, _ram_role, _ram_role_side),
        Preset("aliyun_idaas", _IDAAS_PARAMS, _idaas, _idaas_side),
        Preset("mailbox", _MAILBOX_PARAMS, _mailbox, _mailbox_side),
    )
}


def get(key: str) -> Preset:
    try:
        return PRESETS[key]
    except KeyError:
        raise UnknownPreset(f"no preset named {key!r} ({', '.join(PRESETS)})") from None


def apply(key: str, params: Mapping[str, str], *, keep: SpPolicy | None = None) -> SpPolicy:
    """The policy preset ``key`` makes from ``params``; ``keep`` lends the fields a preset has no opinion on
    (the console's display name, whether the SP is enabled). Raises PresetError naming each bad parameter."""
    preset = get(key)
    known = {p.name for p in preset.params}
    unexpected = sorted(set(params) - known)
    if unexpected:
        raise PresetError({name: f"not a parameter of {key} ({', '.join(sorted(known))})" for name in unexpected})
    policy = preset.build({k: str(v) for k, v in params.items()})
    if keep is not None:
        policy = policy.model_copy(update={"display_name": keep.display_name, "enabled": keep.enabled})
    return policy


def provider_side(key: str, params: Mapping[str, str]) -> ProviderSide:
    """Where the provider's SP metadata lives, or its entityID/ACS URL to register it by hand."""
    return get(key).provider({k: str(v) for k, v in params.items()})


def provider_metadata(key: str, params: Mapping[str, str], certificate: str, *, name: str | None = None) -> bytes:
    """SP metadata for a provider whose endpoints are published, for when its metadata URL cannot be reached
    from here: the published entityID and ACS URL through the manual-registration path, with the certificate
    the admin copies from the provider's console. Raises PresetError when the provider publishes no fixed
    endpoints (then only its own metadata will do) and MetadataError for a bad certificate."""
    side = provider_side(key, params)
    if side.entity_id is None or side.acs_url is None:
        raise PresetError({"preset": f"{key} publishes no fixed entityID and ACS URL: register its own metadata"})
    policy = apply(key, params)
    return manual_metadata(side.entity_id, side.acs_url, certificate, name=name, nameid_format=policy.nameid_format)
