"""The sign-in pipeline (DESIGN.md §2) as named steps in order.

authenticate -> authorize -> provision -> respond. The web layer calls these steps; each one either returns
what the next step needs or raises :class:`SignInRefused` carrying the audit reason and what to tell the
person. Every terminal state writes exactly one audit event. ``provision`` is just-in-time mailbox
provisioning (idp/provisioning/jit.py), present when ``[provisioning]`` is configured with ``jit`` on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from idp import metrics
from idp.audit import AuditTrail
from idp.directory.client import Directory, normalize_username
from idp.directory.errors import DirectoryError, InvalidCredentials, ServiceAccountRejected
from idp.directory.person import Person
from idp.provisioning.jit import JitProvisioner, JitRefused
from idp.saml.attributes import matching_roles
from idp.saml.idp import AuthnRequestInfo, NameIdPolicyError, PostForm, SamlIdp
from idp.settings import LdapSettings
from idp.throttle import LoginThrottle

log = logging.getLogger(__name__)


def _canonical(typed: str, ldap: LdapSettings) -> str:
    """One name per account for the audit trail and the throttle: "CORP\\Alice", "alice@<realm>" and "alice"
    are the same person. (A mail address that differs from the UPN still counts apart; the per-address
    limit covers that.)"""
    try:
        name = normalize_username(typed, ldap)
    except InvalidCredentials:
        return typed.strip()[:256]
    return name.removesuffix("@" + ldap.realm.casefold()) if ldap.realm else name


class SignInRefused(Exception):
    """The sign-in stops here. ``reason`` is the audit code and the key of the message the person reads."""

    def __init__(self, reason: str, *, sp_name: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sp_name = sp_name


@dataclass(frozen=True)
class SsoContext:
    """The parts of the person's SSO session that the response needs."""

    session_index: str
    authn_instant_epoch: float


class SignInPipeline:
    def __init__(
        self,
        directory: Directory,
        saml: SamlIdp,
        audit: AuditTrail,
        throttle: LoginThrottle,
        ldap: LdapSettings,
        provisioner: JitProvisioner | None = None,
    ) -> None:
        self._directory = directory
        self._saml = saml
        self._audit = audit
        self._throttle = throttle
        self._ldap = ldap
        self._provisioner = provisioner

    def authenticate(self, username: str, password: str, *, ip: str | None, sp: str | None) -> Person:
        """Check the password against AD. Refuses an empty password without asking AD (an empty password is an
        anonymous bind that a directory may answer with success)."""
        username = _canonical(username, self._ldap)
        if not username or not password.strip():
            reason = "missing_username" if not username else "empty_password"
            self._refuse(reason, username=username or None, sp=sp, ip=ip)
        if self._throttle.blocked(username, ip):
            self._refuse("throttled", username=username, sp=sp, ip=ip)
        started = time.perf_counter()
        try:
            person = self._directory.authenticate(username, password)
        except DirectoryError as exc:
            if isinstance(exc, ServiceAccountRejected):
                log.error("the LDAP service account was refused by AD; check [ldap] bind_dn / bind_password")
            self._refuse(exc.reason, username=username, sp=sp, ip=ip, detail=exc.detail or None)
        finally:
            metrics.LDAP_AUTH_SECONDS.observe(time.perf_counter() - started)
        return person

    def authorize(self, req: AuthnRequestInfo, person: Person, *, ip: str | None) -> None:
        """The SP's policy: enabled, and the person in one of its groups when it names any."""
        policy = req.policy
        if not policy.enabled:
            self._refuse_at_sp("sp_disabled", req, person, ip)
        if policy.allowed_groups and not person.in_any_group(policy.allowed_groups):
            self._refuse_at_sp(
                "not_in_allowed_group", req, person, ip, detail="allowed: " + ", ".join(policy.allowed_groups)
            )

    def check_release(self, req: AuthnRequestInfo, person: Person, *, ip: str | None) -> None:
        """What the SP's policy promises it must be deliverable: a role for role-based SSO (Alibaba Cloud refuses
        an assertion without one, with a message that leaves the person guessing), and a certificate to
        encrypt to when the policy asks for encryption (never fall back to sending the assertion in clear)."""
        policy = req.policy
        if policy.roles and not matching_roles(person, policy.roles):
            self._refuse_at_sp(
                "no_role_for_user",
                req,
                person,
                ip,
                detail="role groups: " + ", ".join(dict.fromkeys(m.group for m in policy.roles)),
            )
        if policy.encrypt_assertion and not self._saml.sp_can_encrypt(req.sp_entity_id):
            log.error("%s must get encrypted assertions, but its metadata has no certificate", req.sp_entity_id)
            self._refuse_at_sp(
                "sp_cannot_encrypt",
                req,
                person,
                ip,
                detail="encrypt_assertion is on, and the SP's metadata has no encryption certificate",
            )

    def provision(self, req: AuthnRequestInfo, person: Person, *, ip: str | None) -> None:
        """Make sure the person's mailbox exists and matches AD (JIT), when this SP triggers it.

        A failure under ``on_failure = "allow"`` is queued and the sign-in goes on; under "deny" it stops here."""
        if self._provisioner is None or not self._provisioner.applies_to(req.sp_entity_id):
            return
        try:
            self._provisioner.provision(person, sp=req.sp_entity_id, ip=ip)
        except JitRefused as exc:
            self._refuse_at_sp("provisioning_failed", req, person, ip, detail=str(exc))

    def respond(
        self, req: AuthnRequestInfo, person: Person, sso: SsoContext, *, ip: str | None, reused_session: bool
    ) -> PostForm:
        """Authorize, provision, then build the signed response for the SP's ACS URL.

        A person the SP's NameID format has no value for (no mail for emailAddress) gets the SAML error
        response InvalidNameIDPolicy, so the SP can show its own message, and the admin an audit row."""
        self.authorize(req, person, ip=ip)
        self.check_release(req, person, ip=ip)
        try:
            self._saml.name_id_for(req, person)
        except NameIdPolicyError as exc:
            self._record_failure("no_nameid", username=person.username, sp=req.sp_entity_id, ip=ip, detail=str(exc))
            return self._saml.error_response(req, "InvalidNameIDPolicy")
        self.provision(req, person, ip=ip)
        form = self._saml.authn_response(
            req,
            person,
            session_index=sso.session_index,
            authn_instant=datetime.fromtimestamp(sso.authn_instant_epoch, UTC),
        )
        self._audit.record(
            "signin",
            "success",
            reason="sso_session" if reused_session else "password",
            username=person.username,
            sp=req.sp_entity_id,
            ip=ip,
            detail="idp_initiated" if req.request_id is None else None,
        )
        metrics.SIGNINS.labels(result="success", reason="sso_session" if reused_session else "password").inc()
        return form

    def audit_login_without_sp(self, person: Person, *, ip: str | None) -> None:
        self._audit.record("signin", "success", reason="password", username=person.username, ip=ip)
        metrics.SIGNINS.labels(result="success", reason="password").inc()

    def _refuse(
        self,
        reason: str,
        *,
        username: str | None,
        sp: str | None,
        ip: str | None,
        sp_name: str | None = None,
        detail: str | None = None,
    ) -> None:
        self._record_failure(reason, username=username, sp=sp, ip=ip, detail=detail)
        raise SignInRefused(reason, sp_name=sp_name)

    def _refuse_at_sp(
        self, reason: str, req: AuthnRequestInfo, person: Person, ip: str | None, *, detail: str | None = None
    ) -> None:
        """A refusal once the person is known and the SP asked: the page names the SP."""
        self._refuse(reason, username=person.username, sp=req.sp_entity_id, ip=ip, sp_name=req.sp_name, detail=detail)

    def _record_failure(
        self, reason: str, *, username: str | None, sp: str | None, ip: str | None, detail: str | None
    ) -> None:
        self._audit.record("signin", "failure", reason=reason, username=username, sp=sp, ip=ip, detail=detail)
        metrics.SIGNINS.labels(result="failure", reason=reason).inc()
