"""/admin/directory: the Active Directory settings in force (the service account's password never shown),
the same step-by-step check as `idp ldap test`, and a lookup of one person: what AD says about them (the
account's state too, for the help desk: enabled, locked until when, password expiry), their live SSO sessions
and second factors,
what one registered SP would receive for them, and the refusal they would read there, in their words.

The preview runs the sign-in pipeline's own access decision and release steps (SignIn.preview), so it
cannot drift from what a sign-in sends. Checks and lookups are admin actions: each writes an audit row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flask import render_template, request
from ldap3.core.exceptions import LDAPException

from idp.codes import AccessReason
from idp.directory.account_state import AccountState
from idp.directory.check import STEPS, DirectoryReport, check_directory
from idp.directory.errors import DirectoryError
from idp.directory.kerberos import KerberosStatus, kerberos_status
from idp.mfa.factors import Factor
from idp.person import Person
from idp.saml.errors import SamlRequestError
from idp.settings import LdapSettings
from idp.signin.sessions import LiveSession
from idp.sps.errors import SpRegistryError
from idp.sps.registry import SpEntry
from idp.sps.release import ReleasedAttribute
from idp.sps.vocabulary import FORMAT_URIS
from idp.web.admin.blueprint import bp
from idp.web.admin.guard import current_admin
from idp.web.i18n import translate
from idp.web.services import services

_MAX_USERNAME = 256


@dataclass(frozen=True)
class Release:
    """What one SP would receive for one person, as a sign-in would decide and build it now."""

    sp: SpEntry
    nameid_format: str
    nameid_value: str | None
    nameid_error: str | None
    attributes: tuple[ReleasedAttribute, ...]
    refusals: frozenset[AccessReason]
    """Why the access decision would refuse the sign-in; empty when it would let the person in."""
    refused_with: tuple[str, ...]
    """What the person would read at this SP now, in the admin's language: the account's state first (a
    sign-in stops there), then the access decision's refusals; empty when they would be signed in."""

    @property
    def disabled(self) -> bool:
        return "sp_disabled" in self.refusals

    @property
    def metadata_expired(self) -> bool:
        return "sp_metadata_expired" in self.refusals

    @property
    def allowed(self) -> bool:
        """False when the SP's allowed_groups leave this person out."""
        return "not_in_allowed_group" not in self.refusals

    @property
    def no_role(self) -> bool:
        """The SP maps Alibaba Cloud roles and none matches this person."""
        return "no_role_for_user" in self.refusals

    @property
    def cannot_encrypt(self) -> bool:
        """The policy asks for encryption and the SP's metadata has no certificate."""
        return "sp_cannot_encrypt" in self.refusals


@dataclass(frozen=True)
class Lookup:
    username: str
    person: Person | None
    error: str | None
    release: Release | None
    state: AccountState | None = None
    sessions: tuple[LiveSession, ...] = ()
    factors: tuple[Factor, ...] = ()


@bp.get("/directory")
def directory() -> str:
    return _render()


@bp.post("/directory/test")
def directory_test() -> str:
    svc = services()
    settings = svc.settings.ldap
    try:
        report = check_directory(settings)
        error = None
    except (LDAPException, OSError) as exc:
        # The settings themselves are unusable (a CA file that cannot be read, say): no DC was even tried.
        report, error = None, str(exc) or type(exc).__name__
    svc.audit.record_change(
        "admin_directory_test",
        actor=current_admin().username,
        reason=("usable" if report.ok else "not_usable") if report else "check_failed",
        after=_summary(report) if report else {"error": error},
        ip=request.remote_addr,
    )
    return _render(report=report, check_error=error)


@bp.post("/directory/lookup")
def directory_lookup() -> tuple[str, int] | str:
    svc = services()
    admin = current_admin().username
    username = request.form.get("username", "").strip()
    sp_id = request.form.get("sp", "").strip() or None
    problem = _lookup_problem(username)
    entry = None
    if problem is None and sp_id is not None:
        entry = _sp_entry(sp_id)
        if entry is None:
            problem = translate("admin.directory.unknown_sp", sp=sp_id)
    if problem is not None:
        svc.audit.record_change(
            "admin_user_lookup", actor=admin, sp=sp_id, result="refused", reason="bad_input", note=problem,
            after={"user": username[:_MAX_USERNAME]}, ip=request.remote_addr,
        )  # fmt: skip
        return _render(lookup_form={"username": username, "sp": sp_id or ""}, lookup_problem=problem), 400
    lookup = _lookup(username, entry)
    svc.audit.record_change(
        "admin_user_lookup",
        actor=admin,
        sp=sp_id,
        reason="found" if lookup.person else ("directory_error" if lookup.error else "not_found"),
        after={"user": username, "found": lookup.person is not None, "error": lookup.error},
        ip=request.remote_addr,
    )
    return _render(lookup_form={"username": username, "sp": sp_id or ""}, lookup=lookup)


def _lookup_problem(username: str) -> str | None:
    if not username:
        return translate("admin.directory.username_missing")
    if len(username) > _MAX_USERNAME or not username.isprintable():
        return translate("admin.directory.username_invalid")
    return None


def _sp_entry(entity_id: str) -> SpEntry | None:
    try:
        return services().registry.get(entity_id)
    except SpRegistryError:
        return None


def _lookup(username: str, entry: SpEntry | None) -> Lookup:
    """The person through the IdP's own directory client (the one sign-ins use, pooled, with failover)."""
    try:
        person = services().directory.find(username)
    except DirectoryError as exc:
        return Lookup(username, None, exc.detail or str(exc), None)
    if person is None:
        return Lookup(username, None, None, None)
    try:
        state = services().directory.account_state(person.dn)
    except DirectoryError as exc:
        return Lookup(username, person, exc.detail or str(exc), None)
    sessions = tuple(services().sessions.live(person.username))
    factors = tuple(services().factors.list(person.guid))
    release = _release(entry, person, state) if entry else None
    return Lookup(username, person, None, release, state, sessions, factors)


def _release(entry: SpEntry, person: Person, state: AccountState | None) -> Release:
    svc = services()
    nameid_format = FORMAT_URIS[entry.policy.nameid_format]
    try:
        # The request an SP sends without a NameIDPolicy: the SP's own NameID format then applies.
        preview = svc.signin.preview(person, svc.saml_requests.plain_request(entry.entity_id))
    except SamlRequestError as exc:  # no usable metadata (expired, no HTTP-POST ACS): nothing can be sent
        refusals = frozenset(r.reason for r in svc.access.refusals(person, entry.entity_id))
        return Release(entry, nameid_format, None, exc.message, (), refusals, _words(entry, state, refusals))
    refusals = frozenset(r.reason for r in preview.refusals)
    return Release(
        sp=entry,
        nameid_format=preview.name_id.format if preview.name_id is not None else nameid_format,
        nameid_value=preview.name_id.value if preview.name_id is not None else None,
        nameid_error=preview.name_id_problem,
        attributes=preview.released,
        refusals=refusals,
        refused_with=_words(entry, state, refusals),
    )


def _words(entry: SpEntry, state: AccountState | None, refusals: frozenset[AccessReason]) -> tuple[str, ...]:
    """The messages the person's sign-in page would show: the keys are the audit reasons, as at a sign-in."""
    sp = entry.policy.display_name or entry.name or entry.entity_id
    reasons = ([state.refusal.reason] if state is not None and state.refusal is not None else []) + sorted(refusals)
    return tuple(translate(reason, sp=sp) for reason in reasons)


def _summary(report: DirectoryReport) -> dict:
    """For the audit row: which DCs passed, and the first failed step of each that did not."""
    return {
        "usable": report.ok,
        "controllers": {
            dc.url: "ok" if dc.ok else next((f"{s.name}: {s.message}" for s in dc.steps if not s.ok), "incomplete")
            for dc in report.controllers
        },
    }


def _tls_mode(settings: LdapSettings, url: str) -> str:
    if url.startswith("ldaps://"):
        return "ldaps"
    return "start_tls" if settings.start_tls else "none"


def _kerberos() -> KerberosStatus | None:
    svc = services()
    kerberos = svc.settings.kerberos
    if kerberos is None:
        return None
    spn, realm = svc.settings.kerberos_principal, svc.settings.ldap.realm
    return kerberos_status(svc.directory, kerberos.keytab, spn, realm, datetime.now(UTC))


def _render(**context: object) -> str:
    svc = services()
    settings = svc.settings.ldap
    try:
        sps = sorted(svc.registry.list(), key=lambda e: (e.policy.display_name or e.name or e.entity_id).casefold())
    except SpRegistryError:
        sps = []
    context.setdefault("lookup_form", {"username": "", "sp": ""})
    return render_template(
        "admin/directory.html",
        ldap=settings,
        urls=[(url, _tls_mode(settings, url)) for url in settings.urls],
        password_file=settings.bind_password_file,
        steps=STEPS,
        sps=sps,
        kerberos=_kerberos(),
        **context,
    )
