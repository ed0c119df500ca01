"""Tables. Kept small: the audit trail, per-SP policy, the sync's provisioning state, the JIT outbox and the
index of live SSO sessions; metadata XML itself lives in metadata/."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Index, Integer, LargeBinary, String, Text, false, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


_FAILED_SIGNIN = text("event = 'signin' AND result = 'failure'")
FAILED_PASSWORD_CHECK = text("event IN ('signin', 'password_changed') AND result = 'failure'")
"""Rows of a password AD checked and refused, at the login form or as the current password of the change form.
Queries filter with this very clause: SQLite uses a partial index only for a query that repeats its terms."""


class AuditEvent(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(40))
    """What happened: signin, saml_request, logout, sp_added, keys_init, ..."""
    result: Mapped[str] = mapped_column(String(20))
    """success | failure | refused | error"""
    reason: Mapped[str | None] = mapped_column(String(60))
    username: Mapped[str | None] = mapped_column(String(256))
    sp_entity_id: Mapped[str | None] = mapped_column(String(1024))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(128))
    """The id of the HTTP request that wrote the row (also in its log lines and on the page the person saw)."""

    __table_args__ = (
        Index("ix_audit_user_at", "username", "at"),
        Index("ix_audit_sp_at", "sp_entity_id", "at"),
        # The login throttle counts recent failures per address (both password forms); indexing only failures
        # keeps that count small when thousands of employees sign in from one NAT address.
        Index("ix_audit_fail_user_at", "username", "at", sqlite_where=_FAILED_SIGNIN, postgresql_where=_FAILED_SIGNIN),
        Index(
            "ix_audit_fail_ip_at",
            "client_ip",
            "at",
            sqlite_where=FAILED_PASSWORD_CHECK,
            postgresql_where=FAILED_PASSWORD_CHECK,
        ),
    )


class SpPolicyRecord(Base):
    __tablename__ = "sp_policies"

    entity_id: Mapped[str] = mapped_column(String(1024), primary_key=True)
    policy: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ProvisioningRecordRow(Base):
    """What was last provisioned for one person, keyed by objectGUID (stable across renames and moves)."""

    __tablename__ = "provisioning_records"

    guid: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(256), index=True)
    email: Mapped[str] = mapped_column(String(320))
    mailbox_id: Mapped[str | None] = mapped_column(String(256))
    fingerprint: Mapped[str] = mapped_column(String(64), default="")
    """sha256 of the MailboxSpec last written; empty until a write succeeded."""
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    frozen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """When we froze it: the delete grace period counts from here."""
    last_error: Mapped[str | None] = mapped_column(Text)
    """The provider's error of the last failed action; NULL once an action succeeds."""
    failed_action: Mapped[str | None] = mapped_column(String(20))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class MailGroupRecordRow(Base):
    """A mail group the sync made from a mail-enabled AD group, keyed by the group's objectGUID: only the
    groups recorded here are ever deleted, never one made by hand at the provider."""

    __tablename__ = "mail_group_records"

    guid: Mapped[str] = mapped_column(String(36), primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    group_id: Mapped[str] = mapped_column(String(256))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class SyncLeaseRow(Base):
    """One row per named job; whoever holds an unexpired lease runs it, every other node waits."""

    __tablename__ = "sync_leases"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SyncWatermarkRow(Base):
    """AD's uSNChanged high-water mark after the last complete sync, per domain controller (USNs are
    local to a DC)."""

    __tablename__ = "sync_watermarks"

    dc: Mapped[str] = mapped_column(String(512), primary_key=True)
    usn: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class OutboxRow(Base):
    """Provisioning work a sign-in could not finish: one row per person, retried by `idp outbox run`.

    ``version`` grows whenever a newer spec replaces the row's, so a worker that finishes an older spec
    does not mark the newer one done. A worker owns a row while ``lease_expires_at`` is in the future;
    a worker that crashed simply lets it expire.
    """

    __tablename__ = "provisioning_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guid: Mapped[str] = mapped_column(String(36), unique=True)
    username: Mapped[str] = mapped_column(String(256))
    spec: Mapped[dict] = mapped_column(JSON)
    """The MailboxSpec to ensure, as a JSON object."""
    fingerprint: Mapped[str] = mapped_column(String(64))
    """records.fingerprint(spec): a sign-in with the same spec need not try again while this is pending."""
    enqueued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    """When the sign-in queued this spec: a later sync (or freeze) supersedes it."""
    state: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    """pending | done | failed (the provider rejected the data: needs an admin, see `idp outbox retry`)"""
    version: Mapped[int] = mapped_column(Integer, default=1)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class SeenRequestRow(Base):
    """A SAML request ID we answered, kept until a request carrying it would be refused as too old anyway:
    the primary key makes "first to insert wins" the database's decision, across workers and nodes."""

    __tablename__ = "saml_seen_requests"

    issuer: Mapped[str] = mapped_column(String(1024), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class SpMetadataUrlRow(Base):
    """An SP registered from a metadata URL: where to download it again, and how the last downloads went.
    The metadata itself is in metadata/ like every other SP's; this row only schedules its refresh."""

    __tablename__ = "sp_metadata_urls"

    entity_id: Mapped[str] = mapped_column(String(1024), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    """As the admin gave it, query included (it may carry the SP's access token); redacted in audit rows."""
    pinned_cert: Mapped[str | None] = mapped_column(Text)
    """PEM; when set, only metadata whose enveloped signature verifies with it is accepted."""
    allow_http: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    """The admin allowed plain http and loopback addresses for this URL (testing); otherwise https to a public
    address only."""
    last_fetched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_success_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_changed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    next_refresh_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    """Failed downloads in a row; the wait before the next try doubles with each."""
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_reason: Mapped[str | None] = mapped_column(String(60))


class SpOriginRow(Base):
    """How an SP not registered from a URL came in, for the console to name its source: an uploaded file
    (its name as the admin's computer called it) or fields typed by hand. The stored file's own name is a
    hash of the entityID, which tells an admin nothing."""

    __tablename__ = "sp_origins"

    entity_id: Mapped[str] = mapped_column(String(1024), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    """"file" or "manual"."""
    file_name: Mapped[str | None] = mapped_column(String(255))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    added_by: Mapped[str | None] = mapped_column(String(256))


class AttemptCounterRow(Base):
    """Password attempts per account since the counter last reset, counted before each bind (store/attempts.py)."""

    __tablename__ = "attempt_counters"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    count: Mapped[int] = mapped_column(Integer)


class SsoSessionRow(Base):
    """One live SSO session, so that admins can list and revoke them: the sessions themselves sit in
    flask-session under random ids that nothing can enumerate. Written when a session starts and when
    something in it changes (a new SP, a recheck against AD), deleted at logout."""

    __tablename__ = "sso_sessions"

    session_index: Mapped[str] = mapped_column(String(64), primary_key=True)
    """The SAML SessionIndex: random, one per SSO session, and what every SP was told."""
    username: Mapped[str] = mapped_column(String(256), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """When the person was last read from AD (the password check, then each recheck)."""
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    client_ip: Mapped[str | None] = mapped_column(String(64))
    sps: Mapped[list] = mapped_column(JSON, default=list)
    """Entity IDs of the SPs this session has signed in to."""
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(String(256))


class SyncRunRow(Base):
    """One sync run that held the sync lease (`idp sync`, or the console's Sync now and Dry run), for the
    console's history: written when the run starts, updated while it works, completed when it ends."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    """NULL while it runs (or when its process died: the lease it held then expires)."""
    started_by: Mapped[str] = mapped_column(String(256))
    """The admin who pressed the button, or the operating-system user `idp sync` ran as."""
    origin: Mapped[str] = mapped_column(String(20))
    """console | cli"""
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    incremental: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_holder: Mapped[str] = mapped_column(String(200))
    """The lease holder of the run: a running row whose holder no longer holds the lease was interrupted."""
    phase: Mapped[str] = mapped_column(String(20), default="starting")
    """starting | outbox | planning | applying | done"""
    status: Mapped[str] = mapped_column(String(20), default="running")
    """running | ok | failures | brake | error"""
    counts: Mapped[dict | None] = mapped_column(JSON)
    """The plan's actions by kind (create, update, freeze, unfreeze, delete, skip) and the unchanged."""
    planned_writes: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    """Writes carried out so far, successful or not: the progress of a running sync."""
    applied: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    brake: Mapped[bool] = mapped_column(Boolean, default=False)
    """The safety brake stopped the run (for a dry run: would stop it)."""
    outbox: Mapped[str | None] = mapped_column(Text)
    """What working the outbox first did, in words."""
    note: Mapped[str | None] = mapped_column(Text)
    """The brake's or the error's own sentence."""
    actions: Mapped[list | None] = mapped_column(JSON)
    """The first planned actions of a dry run, or the first failed ones of a run, with their reason or error."""


class MfaFactorRow(Base):
    """One second factor of a person, keyed by objectGUID. ``secret`` is sealed (idp.mfa.sealing);
    ``last_step`` is the TOTP time step last accepted, so a code is good once."""

    __tablename__ = "mfa_factors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    guid: Mapped[str] = mapped_column(String(36), index=True)
    username: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(20))
    """totp, webauthn"""
    secret: Mapped[str | None] = mapped_column(Text)
    """A TOTP factor's sealed secret; none for a passkey."""
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    credential_id: Mapped[bytes | None] = mapped_column(LargeBinary(1024), unique=True, index=True)
    """A passkey's (idp.mfa.passkeys) credential id, public key (COSE), last sign count and transports."""
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    sign_count: Mapped[int | None] = mapped_column(BigInteger)
    transports: Mapped[str | None] = mapped_column(String(200))


class MfaRecoveryCodeRow(Base):
    """A recovery code's SHA-256 (idp.mfa.recovery); ``used_at`` set once it signed someone in."""

    __tablename__ = "mfa_recovery_codes"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    guid: Mapped[str] = mapped_column(String(36), index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MfaRememberedBrowserRow(Base):
    """A browser that needs no code until ``expires_at``: the SHA-256 of the token its cookie holds."""

    __tablename__ = "mfa_remembered_browsers"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    guid: Mapped[str] = mapped_column(String(36), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OidcClientRow(Base):
    """An OpenID Connect client (idp.oidc.clients): its secret only as a SHA-256, none for a public client."""

    __tablename__ = "oidc_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    redirect_uris: Mapped[list] = mapped_column(JSON)
    scopes: Mapped[list] = mapped_column(JSON)
    allowed_groups: Mapped[list] = mapped_column(JSON)
    frontchannel_logout_uri: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OidcCodeRow(Base):
    """An authorization code waiting for its one exchange, by the SHA-256 of the code."""

    __tablename__ = "oidc_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(String(512))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(10))
    subject: Mapped[dict] = mapped_column(JSON)
    """The person's claims at sign-in (idp.oidc.claims), with the SSO session's index and auth_time."""
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class OidcTokenRow(Base):
    """An access token and its refresh token, by their SHA-256. Every token refreshed from one code shares
    ``family``: a refresh token used twice revokes the whole family."""

    __tablename__ = "oidc_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    family: Mapped[str] = mapped_column(String(64), index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    access_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(Text)
    subject: Mapped[dict] = mapped_column(JSON)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    access_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    refresh_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    refresh_used: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    revoked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
