"""The sign-in pipeline: the ordered list of steps, run over one context, with one audit row at the end.

Every front end calls ``SignIn.run``: SAML SSO (SP-initiated), IdP-initiated sign-in and the launcher, the
login form; the console's preview calls ``SignIn.preview``, which runs the release steps of the same list.
Adding a step (a second factor, a password change) is one class in steps.py and one entry in build_steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from idp import metrics
from idp.access import AccessDecision, Refusal
from idp.audit import AuditTrail
from idp.codes import AuditReason, AuditResult
from idp.connectors.alimail import AlimailLogin
from idp.connectors.direct_app import ENTITY_ID as ALIMAIL_DIRECT
from idp.directory.client import Directory
from idp.directory.kerberos import NegotiateAcceptor
from idp.directory.password import PasswordChanges
from idp.person import Person
from idp.provisioning.jit import JitProvisioner
from idp.saml.messages import AuthnRequestInfo, NameId
from idp.saml.responses import SamlResponses
from idp.settings import LdapSettings, LoginSettings, ProvisioningSettings
from idp.signin.context import (
    Answer,
    ChangePassword,
    NeedsPassword,
    NeedsSecondFactor,
    Outcome,
    PasswordExpiresSoon,
    Refused,
    SignedIn,
    SignInContext,
    SsoSession,
)
from idp.signin.sessions import LiveSession, SsoSessionIndex
from idp.signin.steps import (
    Authenticate,
    CheckSp,
    DecideAccess,
    IssueNameId,
    NegotiateSignIn,
    Provision,
    ReadPasswordExpiry,
    RecheckPerson,
    ReleaseAttributes,
    Respond,
    ReuseSsoSession,
    SecondFactor,
    SignInToAlimail,
    Step,
    WarnPasswordExpiry,
)
from idp.signin.throttle import LoginThrottle
from idp.sps.release import ReleasedAttribute
from idp.sps.source import SpSource
from idp.store.db import Database


def build_steps(
    *,
    access: AccessDecision,
    responses: SamlResponses,
    sps: SpSource,
    directory: Directory,
    throttle: LoginThrottle,
    ldap: LdapSettings,
    provisioner: JitProvisioner | None,
    sessions: SsoSessionIndex,
    login: LoginSettings,
    alimail: AlimailLogin | None,
    provisioning: ProvisioningSettings | None,
    second_factor: SecondFactor,
    negotiate: NegotiateAcceptor | None = None,
) -> list[Step]:
    """The order of a sign-in (DESIGN.md §2). ``alimail``: the Alibaba Mail (direct) connector, when
    ``[alimail_direct]`` is set; ``provisioning``: for the mail address it signs the person in as;
    ``negotiate``: the keytab's acceptor, when ``[kerberos]`` is set."""
    return [
        CheckSp(access),
        ReuseSsoSession(responses),
        RecheckPerson(directory, sessions, login),
        NegotiateSignIn(negotiate, directory, ldap),
        Authenticate(directory, throttle, ldap),
        DecideAccess(access),
        ReadPasswordExpiry(PasswordChanges(ldap)),
        WarnPasswordExpiry(login),
        second_factor,
        Provision(provisioner),
        SignInToAlimail(alimail, provisioning),
        IssueNameId(responses, sps),
        ReleaseAttributes(sps),
        Respond(responses, sps),
    ]


@dataclass(frozen=True)
class Preview:
    """What a sign-in of ``person`` to one SP would do now, without signing anyone in."""

    refusals: tuple[Refusal, ...]
    name_id: NameId | None
    name_id_problem: str | None
    released: tuple[ReleasedAttribute, ...]


class SignIn:
    def __init__(
        self,
        steps: Sequence[Step],
        access: AccessDecision,
        audit: AuditTrail,
        sessions: SsoSessionIndex,
        session_lifetime: int,
        db: Database,
    ) -> None:
        """``sessions`` and ``session_lifetime``: the shared index gets its row for a session a password or a
        ticket starts, in the transaction of the audit row; ``db`` commits the rows of a sign-in that goes on
        without one yet."""
        self._steps = tuple(steps)
        self._access = access
        self._audit = audit
        self._sessions = sessions
        self._session_lifetime = session_lifetime
        self._db = db

    def run(self, ctx: SignInContext) -> Outcome:
        """Run the steps in order until one ends the sign-in, and record how it ended."""
        outcome: Outcome | None = None
        for step in self._steps:
            outcome = step.process(ctx)
            if outcome is not None:
                break
        if outcome is None:
            outcome = SignedIn()
        self._record(ctx, outcome)
        return outcome

    def preview(self, person: Person, request: AuthnRequestInfo) -> Preview:
        """The access decision and the release steps for ``person`` at the request's SP; nothing is audited,
        provisioned or signed."""
        ctx = SignInContext(ip=None, request=request, person=person)
        for step in self._steps:
            if step.previews:
                step.process(ctx)
        refusals = tuple(self._access.refusals(person, request.sp_entity_id))
        return Preview(refusals, ctx.name_id, ctx.name_id_problem, ctx.released)

    def _record(self, ctx: SignInContext, outcome: Outcome) -> None:
        """One audit row (and one metric) for every way a sign-in ends; asking for the password is not an end.
        The rows the steps wrote, and the index row of a session started now, are committed with it."""
        if ctx.signed_in_now and ctx.session is not None:
            ctx.writes.extend(self._sessions.starting(self._live(ctx, outcome, ctx.session)))
        if isinstance(outcome, NeedsPassword | PasswordExpiresSoon | NeedsSecondFactor):
            # Not an end: the sign-in goes on after the warning or the second factor.
            if ctx.writes:
                self._db.write(ctx.writes)
            return
        result: AuditResult
        reason: AuditReason | None
        if isinstance(outcome, Refused | ChangePassword) or (
            isinstance(outcome, Answer) and outcome.refused is not None
        ):
            result = "failure"
            reason = outcome.refused if isinstance(outcome, Answer) else outcome.reason
            detail = None if isinstance(outcome, ChangePassword) else outcome.detail
        else:
            result, reason = "success", "password" if ctx.signed_in_now else "sso_session"
            if ctx.signed_in_now and ctx.session is not None and ctx.session.kerberos:
                reason = "kerberos"
            unsolicited = ctx.request is not None and ctx.request.request_id is None
            # The direct app's requests are unsolicited too; its own tag keeps them apart from SAML's.
            detail = "alimail_direct" if ctx.sp == ALIMAIL_DIRECT else "idp_initiated" if unsolicited else None
        self._audit.record(
            "signin",
            result,
            reason=reason,
            username=ctx.username,
            sp=ctx.sp,
            ip=ctx.ip,
            detail=detail,
            together_with=ctx.writes,
        )
        metrics.SIGNINS.labels(sp=ctx.sp or "", result=result, reason=reason).inc()

    def _live(self, ctx: SignInContext, outcome: Outcome, session: SsoSession) -> LiveSession:
        """The index row of the session this run started, with the SP it answers (as the browser's session
        will list it: idp.web.sso_session.start_sso)."""
        sps: tuple[str, ...] = ()
        if ctx.request is not None and isinstance(outcome, Answer) and outcome.refused is None:
            sps = (ctx.request.sp_entity_id,)
        return LiveSession(
            session_index=session.session_index,
            username=session.person.username,
            started_at=datetime.fromtimestamp(session.authn_instant, UTC),
            checked_at=datetime.fromtimestamp(session.checked_at, UTC),
            expires_at=datetime.fromtimestamp(session.authn_instant + self._session_lifetime, UTC),
            client_ip=ctx.ip,
            sps=sps,
        )
