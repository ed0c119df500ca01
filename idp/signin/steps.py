"""The steps of a sign-in, each one small and named after what it decides (DESIGN.md §2).

A step's ``process`` reads the context, adds its part, and returns None to go on or an Outcome to end the
sign-in there. A step that has nothing to do for this sign-in (no SP asked, the person already known)
returns None at once. Steps never call each other and never look back: the order lives in one list
(idp.signin.pipeline.build_steps).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from idp import metrics
from idp.access import AccessDecision
from idp.audit import AuditTrail
from idp.codes import DirectLoginReason, MfaReason, SignInReason
from idp.connectors import alimail
from idp.connectors.direct_app import ENTITY_ID as ALIMAIL_DIRECT
from idp.directory.account import REFUSALS
from idp.directory.client import Directory, normalize_username
from idp.directory.errors import (
    DirectoryError,
    InvalidCredentials,
    PasswordExpired,
    PasswordMustChange,
    ServiceAccountRejected,
)
from idp.directory.kerberos import KerberosRefused, NegotiateAcceptor, split_principal
from idp.directory.password import PasswordChanges, expires_at, with_expiry
from idp.mail_address import NoMailAddress, mail_address
from idp.mfa.factors import Factors
from idp.mfa.guard import CodeGuard
from idp.mfa.passkeys import PasskeyAssertion
from idp.mfa.policy import REFEDS_MFA, MfaPolicy
from idp.provisioning.jit import JitProvisioner, JitRefused
from idp.saml.messages import NameIdPolicyError
from idp.saml.responses import KERBEROS, PASSWORD_PROTECTED_TRANSPORT, SamlResponses
from idp.settings import LdapSettings, LoginSettings, ProvisioningSettings
from idp.signin.context import (
    Answer,
    ChangePassword,
    NeedsPassword,
    NeedsSecondFactor,
    Outcome,
    PasswordExpiresSoon,
    Redirect,
    Refused,
    SignInContext,
    SsoSession,
)
from idp.signin.sessions import SsoSessionIndex
from idp.signin.throttle import LoginThrottle
from idp.sps.release import release
from idp.sps.source import SpSource

log = logging.getLogger(__name__)


class Step(Protocol):
    previews: bool
    """True for the steps that decide what an SP receives: the console's preview runs exactly those."""

    def process(self, ctx: SignInContext) -> Outcome | None: ...


class CheckSp:
    """[sp] The SP may be signed in to at all (enabled, metadata current): refused before anyone types a
    password. The same access decision runs again once the person is known (DecideAccess)."""

    previews = False

    def __init__(self, access: AccessDecision) -> None:
        self._access = access

    def process(self, ctx: SignInContext) -> Outcome | None:
        if ctx.request is None:
            return None
        refusals = self._access.refusals(None, ctx.request.sp_entity_id)
        if refusals:
            return Refused(refusals[0].reason, 403, ctx.request.sp_name, refusals[0].detail)
        return None


class ReuseSsoSession:
    """[sso session] A person already signed in is not asked again, unless the SP wants a fresh password
    (ForceAuthn); an SP that may not show a login page (IsPassive) gets NoPassive instead."""

    previews = False

    def __init__(self, responses: SamlResponses) -> None:
        self._responses = responses

    def process(self, ctx: SignInContext) -> Outcome | None:
        if ctx.credentials is not None or ctx.negotiate_token is not None:
            return None  # the form was just filled in, or a ticket sent: Authenticate or NegotiateSignIn decides
        req = ctx.request
        if ctx.session is not None and not (req is not None and req.force_authn):
            ctx.person = ctx.session.person
            return None
        if req is not None and req.is_passive:
            form = self._responses.error_response(req, "NoPassive")
            return Answer(form, req.sp_name, refused="no_passive")
        return NeedsPassword()


class RecheckPerson:
    """[sso session] A reused session is only as good as AD's word on the person now: a revoked session ends
    at once, and at most every ``recheck_seconds`` AD is asked again (enabled, not locked or expired, groups),
    so a person disabled or moved out of an SP's group loses access within that time, with the words a
    password sign-in would get.

    When no DC answers, the session goes on while its last good check is younger than ``_GRACE_CHECKS``
    rechecks (a DC restart must not sign everyone out), then is refused until AD answers again: never
    allowed on old knowledge for the rest of its lifetime. Such a refusal does not end the session, since
    AD has said nothing against the person."""

    previews = False

    _GRACE_CHECKS = 5

    def __init__(
        self,
        directory: Directory,
        sessions: SsoSessionIndex,
        login: LoginSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._directory = directory
        self._sessions = sessions
        self._every = login.recheck_seconds
        self._clock = clock

    def process(self, ctx: SignInContext) -> Outcome | None:
        session = ctx.session
        if session is None or ctx.person is None or ctx.signed_in_now:
            return None
        sp_name = ctx.request.sp_name if ctx.request else None
        if self._sessions.revoked(session.session_index):
            ctx.session_ended = True
            return Refused("session_revoked", 403, sp_name)
        now = self._clock()
        if now - session.checked_at < self._every:
            return None
        try:
            person = self._directory.recheck(session.person.guid)
        except REFUSALS as exc:
            ctx.session_ended = True
            return Refused(exc.reason, 403, sp_name, exc.detail or None)
        except DirectoryError as exc:
            if now - session.checked_at < self._GRACE_CHECKS * self._every:
                log.warning("AD could not recheck %s; the session goes on for now: %s", session.person.username, exc)
                return None
            return Refused("directory_unavailable", 503, sp_name, exc.detail or None)
        if person is None:
            ctx.session_ended = True
            return Refused("account_not_found", 403, sp_name, "not found by objectGUID under base_dn and user_filter")
        ctx.person = person
        ctx.session = replace(session, person=person, rechecked_at=now)
        ctx.session_rechecked = True
        return None


class Authenticate:
    """[authenticate] The password against AD: never an empty one (an empty password is an anonymous bind
    that a directory may answer with success), never past the throttle (so nobody can use us to lock an AD
    account), and with AD's own refusal (disabled, expired, locked, ...) as the reason."""

    previews = False

    def __init__(self, directory: Directory, throttle: LoginThrottle, ldap: LdapSettings) -> None:
        self._directory = directory
        self._throttle = throttle
        self._ldap = ldap

    def process(self, ctx: SignInContext) -> Outcome | None:
        if ctx.person is not None:
            return None
        if ctx.credentials is None:
            return NeedsPassword()
        sp_name = ctx.request.sp_name if ctx.request else None
        username = canonical_username(ctx.credentials.username, self._ldap)
        # The name a refusal is recorded under until AD says whose account it is.
        ctx.attempted_username = username or None
        if not username:
            return Refused("missing_username", 401, sp_name)
        if not ctx.credentials.password.strip():
            return Refused("empty_password", 401, sp_name)
        if self._throttle.address_blocked(ctx.ip):
            return Refused("throttled", 429, sp_name)
        started = time.perf_counter()
        try:
            # The name as typed: the directory normalises it itself, and knows a mail address from a UPN.
            account = self._directory.resolve(ctx.credentials.username)
            if account is None:
                self._directory.pretend_bind()
                return Refused("invalid_credentials", 401, sp_name)
            ctx.attempted_username = account.username
            if not self._throttle.take(account):
                return Refused("throttled", 429, sp_name)
            try:
                person = self._directory.check_password(account, ctx.credentials.password)
            except DirectoryError as exc:
                self._throttle.settle(account, exc.reason)
                raise
            ctx.writes.append(self._throttle.forgetting(account))
        except (PasswordExpired, PasswordMustChange) as exc:
            # AD says so only to the right password: the person may set a new one here and go on.
            return ChangePassword(exc.reason, ctx.attempted_username or username, sp_name)
        except DirectoryError as exc:
            if isinstance(exc, ServiceAccountRejected):
                log.error("the LDAP service account was refused by AD; check [ldap] bind_dn / bind_password")
            # AD says "locked" whatever the password: the same words as a wrong one, so the page cannot be
            # used to learn which accounts exist and are locked (the audit row keeps the truth).
            says: SignInReason | None = "invalid_credentials" if exc.reason == "account_locked" else None
            return Refused(exc.reason, 401, sp_name, exc.detail or None, says=says)
        finally:
            metrics.LDAP_AUTH_SECONDS.observe(time.perf_counter() - started)
        ctx.person = person
        ctx.session = SsoSession(person, "_" + secrets.token_hex(16), time.time())
        ctx.signed_in_now = True
        return None


class NegotiateSignIn:
    """[authenticate] A Windows (Kerberos) ticket the browser sent instead of a password: accepted with our
    keytab, its principal in our realm mapped to the AD person (sAMAccountName, else userPrincipalName),
    who must be allowed to sign in now exactly as a password sign-in checks it (disabled, locked, expired).
    Every refusal is a 401: the front end shows the password form."""

    previews = False

    def __init__(self, acceptor: NegotiateAcceptor | None, directory: Directory, ldap: LdapSettings) -> None:
        self._acceptor = acceptor
        self._directory = directory
        self._realm = ldap.realm.upper()

    def process(self, ctx: SignInContext) -> Outcome | None:
        if ctx.person is not None or ctx.negotiate_token is None or self._acceptor is None:
            return None
        sp_name = ctx.request.sp_name if ctx.request else None
        try:
            principal = self._acceptor.accept(ctx.negotiate_token)
        except KerberosRefused as exc:
            return Refused(exc.reason, 401, sp_name, exc.detail)
        name, realm = split_principal(principal)
        ctx.attempted_username = principal[:256]
        if realm.upper() != self._realm:
            return Refused("kerberos_unknown_person", 401, sp_name, f"{principal}: not of realm {self._realm}")
        try:
            account = self._directory.resolve(name) or self._directory.resolve(principal)
            if account is not None:
                ctx.attempted_username = account.username
            person = self._directory.recheck(account.guid) if account is not None else None
        except DirectoryError as exc:
            says: SignInReason | None = "invalid_credentials" if exc.reason == "account_locked" else None
            return Refused(exc.reason, 401, sp_name, exc.detail or None, says=says)
        if person is None:
            return Refused("kerberos_unknown_person", 401, sp_name, f"{principal}: no such person under base_dn")
        ctx.person = person
        ctx.session = SsoSession(person, "_" + secrets.token_hex(16), time.time(), kerberos=True)
        ctx.signed_in_now = True
        return None


class DecideAccess:
    """[access] The one access decision (idp.access), on the SP's policy as it is now."""

    previews = False

    def __init__(self, access: AccessDecision) -> None:
        self._access = access

    def process(self, ctx: SignInContext) -> Outcome | None:
        if ctx.request is None or ctx.person is None:
            return None
        refusals = self._access.refusals(ctx.person, ctx.request.sp_entity_id)
        if not refusals:
            return None
        if refusals[0].reason == "sp_cannot_encrypt":
            log.error("%s must get encrypted assertions, but its metadata has no certificate", ctx.request.sp_entity_id)
        return Refused(refusals[0].reason, 403, ctx.request.sp_name, refusals[0].detail)


class ReadPasswordExpiry:
    """[password] When the person's password expires, worked out from what the search read and the policy's
    maximum age (cached), for the warning below and for an SP whose policy releases passwordExpires.

    Only where the person was just read from AD (a password or Kerberos sign-in, a recheck, the console's
    preview): the result is kept in the SSO session, so a reused session answers without asking AD for the
    policy again, and goes on answering while AD is down."""

    previews = True

    def __init__(self, ages: PasswordChanges) -> None:
        self._ages = ages

    def process(self, ctx: SignInContext) -> Outcome | None:
        if ctx.person is None:
            return None
        if ctx.session is not None and not (ctx.signed_in_now or ctx.session_rechecked):
            return None  # the session's person carries what its sign-in or last recheck worked out
        try:
            ctx.person = with_expiry(ctx.person, self._ages.max_age)
        except DirectoryError as exc:
            # Only a cache miss asks AD; without an answer the sign-in goes on without the expiry.
            log.warning("could not read the maximum password age: %s", exc)
            return None
        if ctx.session is not None:
            ctx.session = replace(ctx.session, person=ctx.person)
        return None


class WarnPasswordExpiry:
    """[password] Someone who has just typed a password that expires within ``login.expiry_warning_days`` is
    offered to change it now, once a day per browser; "later" goes on to the SP (a reused session is not
    warned again)."""

    previews = False

    def __init__(self, login: LoginSettings, *, clock: Callable[[], float] = time.time) -> None:
        self._within = timedelta(days=login.expiry_warning_days)
        self._clock = clock

    def process(self, ctx: SignInContext) -> Outcome | None:
        if not ctx.signed_in_now or ctx.expiry_warned or ctx.person is None or not self._within:
            return None
        expiry = expires_at(ctx.person)
        if expiry is None or expiry - datetime.fromtimestamp(self._clock(), UTC) > self._within:
            return None
        return PasswordExpiresSoon(expiry, ctx.request.sp_name if ctx.request else None)


class SecondFactor:
    """[mfa] A second factor, once per SSO session, where the SP's policy, an [mfa] group of the person or the
    SP's request (RequestedAuthnContext) asks for one. A code typed in this round is checked (throttled, each
    code once); a remembered browser needs none; a person with no factor enrols one first, when
    ``enrol_at_signin`` allows, else is refused. Where nothing asks for one, this costs no database query."""

    previews = False

    def __init__(
        self,
        policy: MfaPolicy,
        factors: Factors,
        guard: CodeGuard,
        sps: SpSource,
        responses: SamlResponses,
        audit: AuditTrail,
        *,
        enrol_at_signin: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._policy = policy
        self._factors = factors
        self._guard = guard
        self._sps = sps
        self._responses = responses
        self._audit = audit
        self._enrol = enrol_at_signin
        self._clock = clock

    def process(self, ctx: SignInContext) -> Outcome | None:
        person, session, req = ctx.person, ctx.session, ctx.request
        if person is None or session is None or session.mfa_at is not None:
            return None
        sp_mfa = self._sps.policy_for(req.sp_entity_id).mfa if req is not None else "optional"
        requested = req.requested_contexts if req is not None else ()
        if not ctx.step_up and not self._policy.required(person, sp_mfa, requested):
            return None
        sp_name = req.sp_name if req is not None else None
        if ctx.second_factor_code is not None:
            proof = self._guard.check(person.guid, ctx.second_factor_code)
            if proof == "throttled":
                return Refused("throttled", 429, sp_name)
            if proof is None:
                passkey = isinstance(ctx.second_factor_code, PasskeyAssertion)
                return Refused("mfa_wrong_passkey" if passkey else "mfa_wrong_code", 401, sp_name)
            self._given(ctx, session, proof)
            return None
        if ctx.remembered_browser and self._factors.is_remembered(person.guid, ctx.remembered_browser):
            self._given(ctx, session, "remembered_browser")
            return None
        if req is not None and req.is_passive:
            form = self._responses.error_response(req, "NoPassive")
            return Answer(form, req.sp_name, refused="no_passive", detail="a second factor is needed")
        enrolled = self._factors.has_any(person.guid)
        if not enrolled and not self._enrol:
            return Refused("mfa_not_enrolled", 403, sp_name)
        return NeedsSecondFactor(enrol=not enrolled, sp_name=sp_name)

    def _given(self, ctx: SignInContext, session: SsoSession, proof: MfaReason) -> None:
        ctx.session = replace(session, mfa_at=self._clock())
        ctx.second_factor_now = True
        self._audit.record("mfa", "success", reason=proof, username=ctx.username, sp=ctx.sp, ip=ctx.ip)


class Provision:
    """[provision] The person's mailbox exists and matches AD (JIT), for the SPs that trigger it. A failure
    under ``on_failure = "allow"`` is queued and the sign-in goes on; under "deny" it stops here."""

    previews = False

    def __init__(self, provisioner: JitProvisioner | None) -> None:
        self._provisioner = provisioner

    def process(self, ctx: SignInContext) -> Outcome | None:
        req, person = ctx.request, ctx.person
        if self._provisioner is None or req is None or person is None:
            return None
        if not self._provisioner.applies_to(req.sp_entity_id):
            return None
        try:
            self._provisioner.provision(person, sp=req.sp_entity_id, ip=ctx.ip)
        except JitRefused as exc:
            return Refused("provisioning_failed", 403, req.sp_name, str(exc))
        return None


class SignInToAlimail:
    """[response] Alibaba Mail (direct): its logon API's one-time login URL for the person's mail address
    (idp.mail_address, the address JIT has just made sure of), where the browser is sent. Asked once per
    sign-in and never again on failure: a request that may have reached Alibaba Mail may have issued a login,
    and a second one would sign the person in twice. Every other sign-in goes on to the SAML steps."""

    previews = False

    # A refusal about this person's mailbox is theirs (403); anything else is Alibaba Mail or our app's
    # registration there failing (502/503), which the person cannot mend.
    _STATUS: dict[type[alimail.LoginError], tuple[DirectLoginReason, int]] = {
        alimail.MailboxFrozen: ("alimail_mailbox_frozen", 403),
        alimail.MailboxUnknown: ("alimail_mailbox_unknown", 403),
        alimail.AppCredentialsRejected: ("alimail_app_rejected", 502),
        alimail.LoginNotPermitted: ("alimail_login_not_permitted", 502),
        alimail.LoginRejected: ("alimail_login_rejected", 502),
        alimail.LoginRateLimited: ("alimail_rate_limited", 503),
        alimail.LoginUnavailable: ("alimail_unavailable", 503),
    }

    def __init__(self, login: alimail.AlimailLogin | None, provisioning: ProvisioningSettings | None) -> None:
        self._login = login
        self._provisioning = provisioning

    def process(self, ctx: SignInContext) -> Outcome | None:
        req, person = ctx.request, ctx.person
        if self._login is None or req is None or person is None or req.sp_entity_id != ALIMAIL_DIRECT:
            return None
        try:
            address = mail_address(person, self._provisioning)
        except NoMailAddress as exc:
            return Refused("no_mail_address", 403, req.sp_name, f"{exc} (missing: {exc.missing})")
        try:
            login = self._login.login_url(address)
        except alimail.LoginError as exc:
            reason, status = self._STATUS.get(type(exc), ("alimail_login_rejected", 502))
            return Refused(reason, status, req.sp_name, exc.message)
        return Redirect(login.url, req.sp_name)


class IssueNameId:
    """[release] The NameID, computed once (a transient one is new at every call). A person without a mail
    address (idp.mail_address) reads our own page naming what AD lacks: the SP's error page could only say
    "InvalidNameIDPolicy". Any other format the person has no value for gets that SAML status, so the SP
    can show its own message."""

    previews = True

    def __init__(self, responses: SamlResponses, sps: SpSource) -> None:
        self._responses = responses
        self._sps = sps

    def process(self, ctx: SignInContext) -> Outcome | None:
        req, person = ctx.request, ctx.person
        if req is None or person is None:
            return None
        try:
            ctx.name_id = self._responses.name_id(req, self._sps.policy_for(req.sp_entity_id), person)
        except NoMailAddress as exc:
            ctx.name_id_problem = str(exc)
            return Refused("no_mail_address", 403, req.sp_name, f"{exc} (missing: {exc.missing})")
        except NameIdPolicyError as exc:
            ctx.name_id_problem = str(exc)
            form = self._responses.error_response(
                req, "InvalidNameIDPolicy", "No identifier of the requested format is available."
            )
            return Answer(form, req.sp_name, refused="no_nameid", detail=str(exc))
        return None


class ReleaseAttributes:
    """[release] The attributes the SP's policy releases about the person, under the names it asks for."""

    previews = True

    def __init__(self, sps: SpSource) -> None:
        self._sps = sps

    def process(self, ctx: SignInContext) -> Outcome | None:
        if ctx.request is not None and ctx.person is not None:
            ctx.released = release(self._sps.policy_for(ctx.request.sp_entity_id), ctx.person)
        return None


class Respond:
    """[response] The signed (and, when the policy says so, encrypted) response to the SP's ACS URL."""

    previews = False

    def __init__(self, responses: SamlResponses, sps: SpSource) -> None:
        self._responses = responses
        self._sps = sps

    def process(self, ctx: SignInContext) -> Outcome | None:
        req = ctx.request
        if req is None or ctx.session is None or ctx.name_id is None:
            return None
        form = self._responses.authn_response(
            req,
            self._sps.policy_for(req.sp_entity_id),
            ctx.name_id,
            ctx.released,
            session_index=ctx.session.session_index,
            authn_instant=datetime.fromtimestamp(ctx.session.authn_instant, UTC),
            authn_context=authn_context_class(ctx.session),
        )
        return Answer(form, req.sp_name)


def authn_context_class(session: SsoSession) -> str:
    """How the person proved who they are, as the response's AuthnContextClassRef."""
    if session.mfa_at is not None:
        return REFEDS_MFA
    return KERBEROS if session.kerberos else PASSWORD_PROTECTED_TRANSPORT


def canonical_username(typed: str, ldap: LdapSettings) -> str:
    """One name per account for the audit trail and the throttle: "CORP\\Alice", "alice@<realm>" and "alice"
    are the same person. (A mail address that differs from the UPN still counts apart; the per-address
    limit covers that.)"""
    try:
        name = normalize_username(typed, ldap)
    except InvalidCredentials:
        return typed.strip()[:256]
    return name.removesuffix("@" + ldap.realm.casefold()) if ldap.realm else name
