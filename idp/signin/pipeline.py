"""The sign-in pipeline: the ordered list of steps, run over one context, with one audit row at the end.

Every front end calls ``SignIn.run``: SAML SSO (SP-initiated), IdP-initiated sign-in and the launcher, the
login form; the console's preview calls ``SignIn.preview``, which runs the release steps of the same list.
Adding a step (a second factor, a password change) is one class in steps.py and one entry in build_steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from idp import metrics
from idp.access import AccessDecision, Refusal
from idp.audit import AuditTrail
from idp.codes import SignInMethod
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
)
from idp.signin.sessions import SsoSessionIndex
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
    def __init__(self, steps: Sequence[Step], access: AccessDecision, audit: AuditTrail) -> None:
        self._steps = tuple(steps)
        self._access = access
        self._audit = audit

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
        """One audit row (and one metric) for every way a sign-in ends; asking for the password is not an end."""
        if isinstance(outcome, NeedsPassword | PasswordExpiresSoon | NeedsSecondFactor):
            return  # not an end: the sign-in goes on after the warning
        if isinstance(outcome, Refused | ChangePassword) or (
            isinstance(outcome, Answer) and outcome.refused is not None
        ):
            reason = outcome.refused if isinstance(outcome, Answer) else outcome.reason
            detail = None if isinstance(outcome, ChangePassword) else outcome.detail
            self._audit.record(
                "signin", "failure", reason=reason, username=ctx.username, sp=ctx.sp, ip=ctx.ip, detail=detail
            )
            metrics.SIGNINS.labels(sp=ctx.sp or "", result="failure", reason=reason).inc()
            return
        how: SignInMethod = "password" if ctx.signed_in_now else "sso_session"
        if ctx.signed_in_now and ctx.session is not None and ctx.session.kerberos:
            how = "kerberos"
        unsolicited = ctx.request is not None and ctx.request.request_id is None
        # The direct app's requests are unsolicited too; its own tag keeps them apart from SAML's.
        detail = "alimail_direct" if ctx.sp == ALIMAIL_DIRECT else "idp_initiated" if unsolicited else None
        self._audit.record(
            "signin",
            "success",
            reason=how,
            username=ctx.username,
            sp=ctx.sp,
            ip=ctx.ip,
            detail=detail,
        )
        metrics.SIGNINS.labels(sp=ctx.sp or "", result="success", reason=how).inc()
