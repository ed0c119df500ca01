"""One typed settings object for the whole service.

Loaded from a TOML file (``$IDP_CONFIG``, default ``./idp.toml``) and then from environment variables
``IDP_SECTION__KEY`` that override single keys. Validation happens once, at start-up, and a bad or missing
key stops the process with a message that names it: an admin should never learn about a typo from a
failed login at 9 a.m.
"""

from __future__ import annotations

import json
import os
import string
import tomllib
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

NameIdFormatName = Literal["emailAddress", "persistent", "transient", "unspecified"]


UNSIGNED_POLICY = (
    "sign_response and sign_assertion cannot both be off: anyone could then forge a response for this SP; "
    "keep at least one signature"
)


class SettingsError(Exception):
    """The configuration cannot be used; the message names the key and what is wrong with it."""


class _Section(BaseModel):
    # A misspelt key is an error, not a silently ignored line.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    base_url: str = "http://127.0.0.1:8000"
    """The public URL employees' browsers use; endpoints in our metadata are built from it."""
    data_dir: Path = Path("var")
    """Where sessions, the SQLite database and other local state live."""
    secret_key_file: Path | None = None
    """Flask secret key (CSRF, cookie signing); generated under data_dir when unset."""
    session_backend: Literal["filesystem", "redis"] = "filesystem"
    redis_url: str = "redis://127.0.0.1:6379/0"
    session_lifetime: int = Field(default=8 * 3600, ge=60)
    """Seconds an SSO session lasts before the password is asked again."""
    cookie_samesite: Literal["None", "Lax", "Strict"] = "Lax"
    """Lax is safe with both bindings: a cross-site POST to /saml/sso is answered with a 303 to a GET
    on our own site (see web/sso.py), and Lax cookies travel on that top-level GET."""
    trusted_proxy_count: int = Field(default=0, ge=0, le=5)
    """How many reverse proxies in front of us may set X-Forwarded-For/-Proto."""
    rate_limit_per_minute: int = Field(default=600, ge=0)
    """Requests to /saml/* and /login one client address may make per minute without a live SSO session (the
    signed-in are not limited), in each worker (up to this many at once, then at this rate); over it the
    answer is 429. 0 turns the limit off. In-process, measured at 2 µs a request (9 µs for IPv6), where a
    counter shared in the database (idp.store.attempts) costs a write of 0.2 ms on SQLite, more on
    PostgreSQL, on every request of a flood. A sign-in takes about three requests, so 600 leaves an office
    behind one NAT address room for a crowd arriving at nine; raise it if a whole site shares one address,
    and set trusted_proxy_count behind a proxy, or every employee shares the proxy's address."""
    default_language: Literal["en", "zh-CN"] = "en"
    metrics_token: str = ""
    """Bearer token Prometheus sends to read /metrics; with neither this nor metrics_token_file, /metrics is
    not served at all (its counters tell an outsider who signs in to what, and when)."""
    metrics_token_file: Path | None = None

    def metrics_secret(self) -> str:
        if self.metrics_token or self.metrics_token_file is None:
            return self.metrics_token
        return self.metrics_token_file.read_text().strip()

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @property
    def is_https(self) -> bool:
        return self.base_url.startswith("https://")

    @model_validator(mode="after")
    def _samesite_none_needs_https(self) -> ServerSettings:
        if self.cookie_samesite == "None" and not self.is_https:
            raise ValueError('cookie_samesite = "None" needs an https:// base_url (browsers drop such cookies)')
        return self


class IdpSettings(_Section):
    entity_id: str = ""
    """Our SAML entityID; defaults to <base_url>/saml/metadata."""
    key_file: Path = Path("certs/idp.key")
    cert_file: Path = Path("certs/idp.crt")
    persistent_id_secret_file: Path = Path("certs/persistent-id.secret")
    organization: str = "ad-sso-bridge"
    assertion_lifetime: int = Field(default=300, ge=30, le=3600)
    clock_skew: int = Field(default=60, ge=0, le=600)
    request_lifetime: int = Field(default=300, ge=30, le=3600)
    """Seconds after its IssueInstant (plus clock_skew) that an SP's request is still answered; each request ID
    is answered once within that time."""
    max_request_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    """Largest SAMLRequest accepted, decoded (after inflate for the Redirect binding)."""
    max_relay_state: int = Field(default=1024, ge=80, le=8192)


class LdapSettings(_Section):
    urls: list[str] = Field(default_factory=list, min_length=1)
    """Domain controllers in the order to try, e.g. ["ldaps://dc1.corp.example.com"]."""
    base_dn: str
    bind_dn: str
    """The service account that finds users, e.g. "svc-sso@corp.example.com"."""
    bind_password: str = ""
    bind_password_file: Path | None = None
    domain: str = ""
    """NetBIOS domain name (CORP) accepted in CORP\\alice; empty accepts any."""
    upn_suffix: str = ""
    """Realm used to bind as user@realm, e.g. corp.example.com; taken from the base DN when empty."""
    start_tls: bool = False
    ca_file: Path | None = None
    tls_verify: bool = True
    tls_valid_names: list[str] = Field(default_factory=list)
    """Extra names accepted in the DC certificate (Samba's has only CN=DC1.<realm>, no SAN)."""
    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    receive_timeout: float = Field(default=10.0, gt=0, le=120)
    pool_size: int = Field(default=4, ge=1, le=64)
    user_filter: str = "(&(objectCategory=person)(objectClass=user))"
    """Extra filter that every sign-in user must match (ANDed with the username lookup)."""
    extra_attributes: list[str] = Field(default_factory=lambda: ["department", "title", "telephoneNumber"])
    group_cache_seconds: float = Field(default=300, ge=0, le=86400)
    """How long the nesting of groups (which group is in which) is kept before it is read again. A person's
    own group memberships are read at every sign-in; a group unknown to the cache reloads it at once."""

    @field_validator("urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        for url in v:
            if not url.startswith(("ldap://", "ldaps://")):
                raise ValueError(f"{url!r} must start with ldap:// or ldaps://")
        return v

    @model_validator(mode="after")
    def _password_source(self) -> LdapSettings:
        if not self.bind_password and self.bind_password_file is None:
            raise ValueError("set bind_password or bind_password_file for the service account")
        return self

    def service_password(self) -> str:
        if self.bind_password or self.bind_password_file is None:
            return self.bind_password
        return self.bind_password_file.read_text().strip()

    @property
    def realm(self) -> str:
        if self.upn_suffix:
            return self.upn_suffix
        parts = [p.split("=", 1)[1] for p in self.base_dn.split(",") if p.strip().lower().startswith("dc=")]
        return ".".join(parts)


class DatabaseSettings(_Section):
    url: str = ""
    """SQLAlchemy URL; SQLite under data_dir when empty. PostgreSQL for several nodes."""


class MetadataSettings(_Section):
    dir: Path = Path("metadata")
    allow_http_loopback: bool = True
    """Accept http:// ACS and logout URLs on 127.0.0.0/8 and localhost in SP metadata (local testing only).
    Downloading metadata from a URL is governed per URL instead (see `idp sp add --allow-http`)."""
    refresh_max_interval: int = Field(default=24 * 3600, ge=60)
    """Longest wait (seconds) between two downloads of an SP's metadata URL, whatever its cacheDuration says."""
    refresh_min_interval: int = Field(default=600, ge=1)
    """Shortest wait between two downloads, however short the metadata's cacheDuration or validUntil; also
    the first wait after a failed download (it doubles with every further failure, up to the longest)."""
    refresh_poll: int = Field(default=60, ge=0)
    """How often (seconds) the served IdP looks for metadata URLs that are due; one node at a time does the
    work. 0: not in the server at all (run `idp sp refresh --all` from cron instead)."""
    fetch_timeout: float = Field(default=10.0, gt=0, le=120)
    """Seconds one download of metadata may take in total."""

    @model_validator(mode="after")
    def _intervals(self) -> MetadataSettings:
        if self.refresh_min_interval > self.refresh_max_interval:
            raise ValueError("refresh_min_interval must not be longer than refresh_max_interval")
        return self


class LoginSettings(_Section):
    """Throttling of wrong passwords, shared by every worker and node (through the database)."""

    failure_window: int = Field(default=300, ge=10, le=86400)
    """Seconds without a wrong password after which the count is forgotten (at least AD's own lockout
    observation window is used, so the count never resets before AD's does)."""
    max_failures_per_user: int = Field(default=5, ge=0)
    """Wrong passwords for one account before further tries are refused without asking AD (0: no limit of
    ours). The throttle always stops at least one below the lockout threshold AD applies to the person
    (the domain's or a fine-grained policy's), whatever this says, so guessing never locks the AD account."""
    unknown_lockout_threshold: int = Field(default=3, ge=0, le=999)
    """The lockout threshold assumed for people whose fine-grained password policy (PSO) the service
    account may not read (AD hides PSOs from non-admins by default; `idp ldap test` says when). Grant the
    service account read access to the Password Settings Container to use the real one."""
    max_failures_per_ip: int = Field(default=30, ge=0)
    """Wrong passwords from one client address in the window (password spraying), at the login form and as the
    current password of the change form together; 0: no limit."""
    recheck_seconds: int = Field(default=60, ge=0, le=3600)
    """How often a reused SSO session reads the person from AD again (enabled, not locked or expired, groups),
    so that disabling someone or removing them from an SP's group takes effect within this time, not at
    the end of the session. While no DC answers, a session checked within the last five recheck intervals
    goes on (a DC restart must not sign everyone out); older ones are refused with directory_unavailable."""
    expiry_warning_days: int = Field(default=14, ge=0, le=365)
    """A person whose AD password expires within this many days is offered to change it after signing in
    (at most once a day per browser); 0: no warning."""


class AdminSettings(_Section):
    """Who may open the admin console at /admin."""

    groups: list[str] = Field(default_factory=list)
    """AD security groups (name, DN or SID; nested membership counts) whose members are admins. A name counts
    only while it names exactly one security group in the domain (two same-named groups in different OUs
    open the console to nobody, and the refusal says why): prefer a DN or SID. Empty: nobody is, and
    the console refuses everyone; the CLI still works for whoever can read the config."""
    recheck_seconds: int = Field(default=60, ge=0, le=3600)
    """How often an admin's group membership is read again from AD while they use the console, so that
    removing someone from the group takes effect within this time, not at their next password."""


class SpDefaults(_Section):
    nameid_format: NameIdFormatName = "emailAddress"
    attributes: list[str] = Field(default_factory=lambda: ["mail", "displayName", "givenName", "sn", "groups"])
    sign_response: bool = True
    sign_assertion: bool = True
    require_signed_requests: bool = False

    @model_validator(mode="after")
    def _signed(self) -> SpDefaults:
        if not (self.sign_response or self.sign_assertion):
            raise ValueError(UNSIGNED_POLICY)
        return self


class _RetrySettings(BaseModel):
    """How every provider client retries 429s, 5xx and dropped connections (see retry.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_attempts: int = Field(default=5, ge=1, le=20)
    retry_base_wait: float = Field(default=0.2, gt=0, le=10)
    max_retry_wait: float = Field(default=20.0, gt=0, le=300)
    """Cap on one wait between attempts, including a Retry-After the server asks for."""


class AlimailSettings(_RetrySettings):
    """The ``[alimail]`` section of the configuration."""

    host: str = "https://alimail-cn.aliyuncs.com"
    """The regional API host; pick the one of the region the mail domain lives in."""
    client_id: str
    client_secret: SecretStr = SecretStr("")
    client_secret_file: Path | None = None
    mail_domain: str
    """The domain mailboxes are created in; also names the shared rate-limit bucket."""
    department_source: Literal["attribute", "ou"] = "attribute"
    """Where a person's department path comes from: AD's ``department`` attribute (``/`` separates
    levels) or the OU path of their DN."""
    api_limit_per_second: int = Field(default=40, ge=1, le=1000)
    """The API's own limit: this many requests in any one-second window per mail domain, counted when
    they arrive at the API and shared by every app of the domain (40, as Alibaba documents). We never
    send a request that could be the (N+1)-th arrival in one second: a place is held from the moment a
    request is sent until one second after its answer came back. Lower it to leave room for another
    app calling the API for the same domain."""
    rate_per_second: float = Field(default=40.0, gt=0, le=1000)
    """The pace we send at: requests at least ``1/rate`` seconds apart, never back to back. It smooths
    bursts; it is not what keeps us under the API's limit (``api_limit_per_second`` does that, whatever
    the network and thread scheduling do to when a request arrives). Above ``api_limit_per_second`` it
    has no effect; below it, it caps our share of the domain's budget. A sync at the defaults sends
    about 40 / (1 s + one round trip) requests per second."""
    redis_url: str = ""
    """Share the rate limit through this Redis (several processes or nodes); empty limits per process."""
    rate_limit_max_wait: float = Field(default=30.0, gt=0)
    """Longest a call waits for a slot under our own limiter before giving up with RateLimited."""
    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    read_timeout: float = Field(default=15.0, gt=0, le=300)

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for the emulator)")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _secret_source(self) -> AlimailSettings:
        if not self.client_secret.get_secret_value() and self.client_secret_file is None:
            raise ValueError("set client_secret or client_secret_file")
        return self

    def secret(self) -> str:
        if self.client_secret_file is not None:
            return self.client_secret_file.read_text(encoding="utf-8").strip()
        return self.client_secret.get_secret_value()


class ScimSettings(_RetrySettings):
    """The ``[scim]`` section of the configuration."""

    base_url: str
    """The SCIM base URL, e.g. https://saas.example.com/scim/v2 (``/Users`` is appended)."""
    bearer_token: SecretStr = SecretStr("")
    bearer_token_file: Path | None = None
    verify_tls: bool = True
    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    read_timeout: float = Field(default=15.0, gt=0, le=300)
    rate_per_second: float | None = Field(default=None, gt=0)
    """Our own limit, when the service documents one; None sends as fast as answers come."""
    redis_url: str = ""

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must start with https://")
        return v.rstrip("/")

    def token(self) -> str:
        if self.bearer_token_file is not None:
            return self.bearer_token_file.read_text(encoding="utf-8").strip()
        return self.bearer_token.get_secret_value()


ADDRESS_PATTERN_FIELDS: dict[str, str] = {
    "username": "sAMAccountName",
    "given_name": "givenName",
    "surname": "sn",
    "mail_domain": "mail",
}
"""The placeholders of ``address_pattern``, each with the AD attribute an admin fills in when it is empty
(a mail domain missing from the settings is fixed just as well by giving the person a ``mail``)."""


class ProvisioningSettings(_Section):
    """Mailboxes follow AD: which provider, whose mailboxes, and the sync's safety limits."""

    provider: Literal["alimail", "scim"]
    alimail: AlimailSettings | None = None
    scim: ScimSettings | None = None
    scope_base_dns: list[str] = Field(default_factory=list)
    """OUs whose people get mailboxes (subtrees); the whole domain when empty."""
    scope_group_dn: str = ""
    """Only members of this group (nested membership counts); everyone in the OUs when empty."""
    mail_domain: str = ""
    """For SCIM: the mail domain of the address pattern (Alibaba Mail uses its own)."""
    mail_domains: list[str] = Field(default_factory=list)
    """Further mail domains: a person without AD ``mail`` whose UPN ends in one of these (or in the mail
    domain) gets the UPN as address."""
    address_pattern: str = "{username}@{mail_domain}"
    """The address of someone with neither AD ``mail`` nor a UPN in a mail domain. Placeholders:
    {username} (sAMAccountName), {given_name}, {surname}, {mail_domain}."""
    no_mailbox_group: str = ""
    """DN of a group whose members (nested membership counts) never get a mailbox: service accounts,
    shared logons, test users."""
    department_source: Literal["attribute", "ou"] = "attribute"
    """For SCIM: department from AD's department attribute or the OU path (Alibaba Mail uses its own)."""
    freeze_brake_share: float = Field(default=0.10, gt=0, le=1)
    """A sync that would freeze more than this share of the active mailboxes stops unless --force."""
    delete_enabled: bool = False
    delete_grace_days: int = Field(default=30, ge=1)
    """A mailbox frozen this long by the sync is deleted, when delete_enabled."""
    workers: int = Field(default=4, ge=1, le=32)
    """Provider calls in flight at once; the rate limiter still holds the provider's limit."""
    lease_seconds: float = Field(default=300, ge=10)
    jit: bool = True
    """Make sure the mailbox exists and matches AD at every sign-in (just in time). On by default once
    a [provisioning] section exists; without one there is nothing to provision to."""
    jit_sps: list[str] = Field(default_factory=list)
    """EntityIDs of the SPs whose sign-ins trigger JIT; empty means every SP."""
    on_failure: Literal["allow", "deny"] = "allow"
    """When JIT cannot reach the provider: "allow" signs the person in and leaves the work to the outbox
    worker; "deny" refuses the sign-in (the work is still queued, so a later try can succeed)."""
    jit_timeout: float = Field(default=3.0, gt=0, le=30)
    """Total seconds a sign-in may spend on provider calls before it counts as a failure."""
    outbox_lease_seconds: float = Field(default=120, ge=5)
    """How long a worker owns a claimed outbox row; a crashed worker's rows are retried after this."""
    outbox_max_backoff: float = Field(default=3600, ge=1)
    """Longest wait between two attempts at one outbox row (the wait doubles from 30 s up to this)."""

    @field_validator("address_pattern")
    @classmethod
    def _address_pattern(cls, v: str) -> str:
        try:
            fields = {name for _, name, _, _ in string.Formatter().parse(v) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a pattern: {exc}") from None
        unknown = sorted(fields - set(ADDRESS_PATTERN_FIELDS))
        if unknown:
            known = ", ".join("{" + name + "}" for name in ADDRESS_PATTERN_FIELDS)
            raise ValueError(f"unknown placeholder(s) {unknown}; the pattern may use {known}")
        if v.count("@") != 1 or v.endswith("@"):
            raise ValueError("must make one address, e.g. {username}@{mail_domain}")
        return v

    @model_validator(mode="after")
    def _provider_section(self) -> ProvisioningSettings:
        if getattr(self, self.provider) is None:
            raise ValueError(f'provider = "{self.provider}" needs a [provisioning.{self.provider}] table')
        return self

    @property
    def mapping(self) -> tuple[Literal["attribute", "ou"], str]:
        """(department source, mail domain) for spec_from_person."""
        if self.provider == "alimail" and self.alimail is not None:
            return self.alimail.department_source, self.alimail.mail_domain
        return self.department_source, self.mail_domain


class AlimailDirectSettings(_Section):
    """``[alimail_direct]``: sign people straight into Alibaba Mail through its API Open Platform's logon
    operation (the app needs the ``User.Login.All`` permission, which Alibaba Mail's support enables).

    Alibaba does not publish that operation's request, so every part of it is a key here; the defaults are
    the values public integrations show where they show one (the host, ``app_code``, ``redirect_url``,
    ``sign``) and our own choice elsewhere. Alibaba's integration notes for the app override them."""

    host: str = "https://mailsso.mxhichina.com"
    """The logon server: this one for the SaaS edition, the server's own URL for an on-premises one."""
    app_code: str
    """The App ID of the API Open Platform app."""
    app_secret_file: Path
    """A file holding the app's Secret (nothing else in it)."""
    auth: Literal["sign", "token"] = "sign"
    """sign: the request carries app_code, a timestamp and a signature made with the Secret;
    token: it carries an access token from ``token_path`` (client_credentials with App ID and Secret)."""
    login_path: str = "/api/v2/sso/login_url"
    token_path: str = "/oauth2/v2.0/token"  # noqa: S105 - a URL path, not a secret
    sign_algorithm: Literal["md5", "hmac-sha256"] = "md5"
    """md5: hex MD5 of the sorted ``name=value`` pairs joined by ``&`` followed by the Secret;
    hmac-sha256: hex HMAC-SHA256 of those pairs keyed with the Secret."""
    app_code_param: str = "app_code"
    email_param: str = "email"
    redirect_param: str = "redirect_url"
    timestamp_param: str = "timestamp"
    """Milliseconds since the epoch."""
    sign_param: str = "sign"
    url_field: str = "loginUrl"
    """The field of the answer that holds the one-time login URL."""
    landing_url: str = ""
    """Where webmail opens after the login (sent as the redirect parameter); empty sends none."""
    allowed_groups: list[str] = Field(default_factory=list)
    """AD security groups whose members may be signed in this way (nested membership counts); empty allows
    everyone. The same access decision as an SP's allowed groups."""
    url_lifetime: float = Field(default=60.0, gt=0, le=3600)
    """Seconds an issued login URL is trusted to work; an answer that comes later than this is not used."""
    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    read_timeout: float = Field(default=10.0, gt=0, le=120)
    connect_attempts: int = Field(default=2, ge=1, le=5)
    """Tries when the connection cannot be made (the request was never sent); nothing that may have reached
    the server is sent again."""

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for the emulator)")
        return v.rstrip("/")

    @field_validator("login_path", "token_path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("must be a path starting with /")
        return v

    @model_validator(mode="after")
    def _distinct_params(self) -> AlimailDirectSettings:
        names = [self.app_code_param, self.email_param, self.redirect_param, self.timestamp_param, self.sign_param]
        if any(not n.strip() for n in names) or len(set(names)) != len(names):
            raise ValueError("the *_param names must be non-empty and all different")
        return self

    def secret(self) -> str:
        return self.app_secret_file.read_text(encoding="utf-8").strip()


class BrandingSettings(_Section):
    """The company's own look on the pages employees see (login, errors, signed out, the apps page)."""

    company_name: str = Field(default="", max_length=120)
    logo_file: Path | None = None
    """A PNG or SVG of at most 256 KiB, served by the IdP itself; checked at start-up."""
    primary_color: str = "#0b6bcb"
    """Buttons, links and the focus ring, as #rrggbb. White text on it and it on white must keep WCAG AA
    contrast (4.5:1); a colour that does not is refused at start-up."""
    helpdesk_text: str = Field(default="", max_length=300)
    """The help-desk line under every page, e.g. "Forgot your password? Call the IT help desk"."""
    helpdesk_phone: str = Field(default="", max_length=40, pattern=r"^[0-9+() .-]*$")
    helpdesk_mail: str = Field(default="", max_length=254, pattern=r"^([^@\s]+@[^@\s]+)?$")
    helpdesk_url: str = Field(default="", max_length=500, pattern=r"^(https?://\S+)?$")

    @field_validator("primary_color")
    @classmethod
    def _readable_color(cls, v: str) -> str:
        if len(v) != 7 or v[0] != "#" or any(c not in string.hexdigits for c in v[1:]):
            raise ValueError(f"{v!r} is not a colour written #rrggbb")
        ratio = contrast_ratio(v, "#ffffff")
        if ratio < MIN_CONTRAST:
            raise ValueError(
                f"{v} against white has a contrast of {ratio:.2f}:1, under the {MIN_CONTRAST}:1 WCAG AA asks of "
                "text (white text on buttons, links on the page): choose a darker colour"
            )
        return v.lower()


MIN_CONTRAST = 4.5
"""WCAG 2 AA for normal-size text."""


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2's contrast ratio of two #rrggbb colours, from 1 (same) to 21 (black on white)."""

    def luminance(color: str) -> float:
        def channel(hex2: str) -> float:
            c = int(hex2, 16) / 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = (channel(color[i : i + 2]) for i in (1, 3, 5))
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


class OidcSettings(_Section):
    """``[oidc]``: the OpenID Connect provider beside SAML (clients are registered with `idp oidc client add`)."""

    issuer: str = ""
    """Our OpenID Connect issuer; defaults to [server] base_url. Clients compare it to the ID token's ``iss``."""
    code_lifetime: int = Field(default=60, ge=10, le=600)
    """Seconds an authorization code may wait for its exchange (it is good for one exchange only)."""
    access_token_lifetime: int = Field(default=600, ge=60, le=86400)
    id_token_lifetime: int = Field(default=600, ge=60, le=86400)
    refresh_token_lifetime: int = Field(default=8 * 3600, ge=300, le=90 * 86400)
    """Seconds a refresh token lasts; each use replaces it by a new one (a used one revokes its family)."""

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must start with https:// (or http:// for a test on one machine)")
        return v.rstrip("/")


class MfaSettings(_Section):
    """The second factor (TOTP and recovery codes). An SP's policy can require it too (``mfa = "required"``),
    and an SP can ask for it in its request; with neither and no group here, nobody is asked for a code."""

    required_groups: list[str] = Field(default_factory=list)
    """AD security groups (name, DN or SID; nested membership counts) whose members give a second factor at
    every SSO session, whatever the SP."""
    key_file: Path = Path("certs/mfa.key")
    """The key TOTP secrets are sealed with in the database; made at the first enrolment when missing. Back it
    up with the signing key: without it every enrolled factor must be reset."""
    enrol_at_signin: bool = True
    """A person asked for a second factor who has none enrols one there and then (after their password);
    false: they are refused and must be enrolled from a signed-in session first."""
    remember_days: int = Field(default=30, ge=0, le=365)
    """"Remember this browser" skips the code for this many days; 0 hides the option."""
    issuer: str = ""
    """The name authenticator apps show next to the code; defaults to [idp] organization."""
    max_failures: int = Field(default=5, ge=1, le=100)
    """Wrong codes for one person within failure_window before further codes are refused unchecked."""
    failure_window: int = Field(default=300, ge=30, le=86400)


class KerberosSettings(_Section):
    """``[kerberos]``: Windows desktop sign-in (SPNEGO). A browser on one of ``networks`` is offered
    ``Negotiate`` at the login page; one that answers with a ticket for ``service_principal`` is signed in
    without the form, everyone else sees the form as before."""

    keytab: Path
    """The keytab holding the key of ``service_principal`` (README: "Windows desktop sign-in")."""
    service_principal: str = ""
    """``HTTP/<host>`` the browsers ask tickets for; defaults to HTTP/ and the host of [server] base_url."""
    networks: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    """Client networks (CIDR, as the app sees the address: after trusted_proxy_count) offered Negotiate;
    empty: nobody is, and Windows sign-in is off."""

    @field_validator("service_principal")
    @classmethod
    def _service_principal(cls, v: str) -> str:
        if v and (not v.startswith("HTTP/") or "@" in v):
            raise ValueError("must be HTTP/<host name> (no realm), e.g. HTTP/sso.corp.example.com")
        return v


class LogSettings(_Section):
    """Log lines of `idp serve` (every command's lines have a timestamp; other commands log warnings only,
    unless --verbose)."""

    format: Literal["text", "json"] = "text"
    """text: readable lines; json: one object a line (timestamp, level, logger, request_id, message)."""
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    syslog: str = ""
    """Also send every line to syslog (facility auth): "/dev/log", or "host:port" of a syslog server over UDP.
    Every audit row is a log line too (logger idp.audit), so this forwards the audit trail as it is written."""


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    idp: IdpSettings = IdpSettings()
    ldap: LdapSettings
    database: DatabaseSettings = DatabaseSettings()
    metadata: MetadataSettings = MetadataSettings()
    login: LoginSettings = LoginSettings()
    sp_defaults: SpDefaults = SpDefaults()
    admin: AdminSettings = AdminSettings()
    provisioning: ProvisioningSettings | None = None
    alimail_direct: AlimailDirectSettings | None = None
    branding: BrandingSettings = BrandingSettings()
    oidc: OidcSettings = OidcSettings()
    log: LogSettings = LogSettings()
    mfa: MfaSettings = MfaSettings()
    kerberos: KerberosSettings | None = None

    @property
    def kerberos_principal(self) -> str:
        configured = self.kerberos.service_principal if self.kerberos else ""
        return configured or f"HTTP/{urlsplit(self.server.base_url).hostname}"

    @property
    def entity_id(self) -> str:
        return self.idp.entity_id or f"{self.server.base_url}/saml/metadata"

    @property
    def oidc_issuer(self) -> str:
        return self.oidc.issuer or self.server.base_url

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{(self.server.data_dir / 'idp.db').resolve()}"


def render_toml(data: dict[str, dict[str, Any]]) -> str:
    """A settings file from one table per section. JSON scalars and arrays are valid TOML, so json.dumps
    writes each value (paths as strings); used by `idp demo` and the tests to write their configs."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is None:
                continue
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, list | tuple):
                value = [str(v) if isinstance(v, Path) else v for v in value]
            lines.append(f"{key} = {json.dumps(value, ensure_ascii=False)}")
        lines.append("")
    return "\n".join(lines)


def _env_overrides(environ: dict[str, str]) -> dict[str, dict[str, Any]]:
    """IDP_LDAP__URLS='["ldaps://a","ldaps://b"]' -> {"ldap": {"urls": [...]}}; JSON where it parses."""
    out: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith("IDP_") or "__" not in name:
            continue
        section, _, key = name[4:].partition("__")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and key.lower().endswith(("password", "url", "dn", "name", "suffix", "domain", "entity_id"))
        ):
            value = raw  # a numeric-looking password stays a string
        out.setdefault(section.lower(), {})[key.lower()] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for section, values in over.items():
        target = merged.setdefault(section, {})
        if not isinstance(target, dict):
            raise SettingsError(f"[{section}] must be a table in the config file")
        target.update(values)
    return merged


def _describe(err: ValidationError, source: str) -> str:
    lines = [f"Invalid configuration ({source}):"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        env = "IDP_" + "__".join(str(p).upper() for p in e["loc"][:2]) if len(e["loc"]) >= 2 else ""
        msg = "unknown key (misspelt?)" if e["type"] == "extra_forbidden" else e["msg"]
        hint = f" (or env {env})" if env else ""
        lines.append(f"  {key}{hint}: {msg}")
    return "\n".join(lines)


def config_file(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Path:
    """The configuration file load_settings reads: ``path``, else $IDP_CONFIG, else ./idp.toml."""
    environ = dict(os.environ if environ is None else environ)
    return Path(path or environ.get("IDP_CONFIG", "idp.toml"))


def load_settings(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read, merge and validate the configuration; raise SettingsError naming every bad key."""
    environ = dict(os.environ if environ is None else environ)
    config_path = config_file(path, environ)
    data: dict[str, Any] = {}
    if config_path.exists():
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{config_path}: not valid TOML: {exc}") from exc
    elif path is not None or "IDP_CONFIG" in environ:
        raise SettingsError(f"config file {config_path} does not exist (set IDP_CONFIG or --config)")
    data = _merge(data, _env_overrides(environ))
    base = config_path.parent.resolve()
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, str(config_path))) from None
    settings = _resolve_paths(settings, base)
    direct_secret = settings.alimail_direct.app_secret_file if settings.alimail_direct else None
    alimail = settings.provisioning.alimail if settings.provisioning else None
    scim = settings.provisioning.scim if settings.provisioning else None
    for key, secret, secret_file in (
        ("ldap.bind_password_file", settings.ldap.bind_password, settings.ldap.bind_password_file),
        ("server.metrics_token_file", settings.server.metrics_token, settings.server.metrics_token_file),
        ("alimail_direct.app_secret_file", "", direct_secret),
        ("provisioning.alimail.client_secret_file", "", alimail.client_secret_file if alimail else None),
        ("provisioning.scim.bearer_token_file", "", scim.bearer_token_file if scim else None),
    ):
        if not secret and secret_file is not None and not secret_file.is_file():
            raise SettingsError(f"Invalid configuration ({config_path}):\n  {key}: {secret_file} does not exist")
    keytab = settings.kerberos.keytab if settings.kerberos else None
    if keytab is not None and not os.access(keytab, os.R_OK):
        why = "does not exist" if not keytab.exists() else "cannot be read by this user"
        raise SettingsError(f"Invalid configuration ({config_path}):\n  kerberos.keytab: {keytab} {why}")
    logo = settings.branding.logo_file
    if logo is not None and (problem := logo_problem(logo)):
        raise SettingsError(f"Invalid configuration ({config_path}):\n  branding.logo_file: {problem}")
    return settings


MAX_LOGO_BYTES = 256 * 1024
LOGO_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}


def logo_problem(path: Path) -> str | None:
    """Why the logo file cannot be served (missing, too large, not the PNG or SVG its name says), or None."""
    if path.suffix.lower() not in LOGO_TYPES:
        return f"{path}: must be a .png or .svg file"
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror or exc})"
    if len(data) > MAX_LOGO_BYTES:
        return f"{path}: {len(data) // 1024} KiB, over the {MAX_LOGO_BYTES // 1024} KiB a logo may have"
    if path.suffix.lower() == ".png" and not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return f"{path}: not a PNG image"
    if path.suffix.lower() == ".svg" and b"<svg" not in data[:4096]:
        return f"{path}: not an SVG image (no <svg> element at its start)"
    return None


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    """Relative paths in the config are relative to the config file, not to wherever the process started."""

    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else (base / p)

    direct = settings.alimail_direct
    kerberos = settings.kerberos
    provisioning = settings.provisioning
    if provisioning is not None:
        alimail, scim = provisioning.alimail, provisioning.scim
        provisioning = provisioning.model_copy(
            update={
                "alimail": alimail
                and alimail.model_copy(update={"client_secret_file": fix(alimail.client_secret_file)}),
                "scim": scim and scim.model_copy(update={"bearer_token_file": fix(scim.bearer_token_file)}),
            }
        )
    return settings.model_copy(
        update={
            "server": settings.server.model_copy(
                update={
                    "data_dir": fix(settings.server.data_dir),
                    "secret_key_file": fix(settings.server.secret_key_file),
                    "metrics_token_file": fix(settings.server.metrics_token_file),
                }
            ),
            "idp": settings.idp.model_copy(
                update={
                    "key_file": fix(settings.idp.key_file),
                    "cert_file": fix(settings.idp.cert_file),
                    "persistent_id_secret_file": fix(settings.idp.persistent_id_secret_file),
                }
            ),
            "ldap": settings.ldap.model_copy(
                update={
                    "ca_file": fix(settings.ldap.ca_file),
                    "bind_password_file": fix(settings.ldap.bind_password_file),
                }
            ),
            "metadata": settings.metadata.model_copy(update={"dir": fix(settings.metadata.dir)}),
            "mfa": settings.mfa.model_copy(update={"key_file": fix(settings.mfa.key_file)}),
            "alimail_direct": direct and direct.model_copy(update={"app_secret_file": fix(direct.app_secret_file)}),
            "branding": settings.branding.model_copy(update={"logo_file": fix(settings.branding.logo_file)}),
            "kerberos": kerberos and kerberos.model_copy(update={"keytab": fix(kerberos.keytab)}),
            "provisioning": provisioning,
        }
    )
