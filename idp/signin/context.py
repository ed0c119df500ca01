"""What one sign-in carries from step to step, and how it can end.

A front end (SAML SSO, IdP-initiated, the login form, later OIDC) fills a SignInContext with what it knows
and runs the pipeline; each step reads what earlier steps left and adds its own part. A step that ends the
sign-in returns an Outcome; the front end turns the Outcome into HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from idp.codes import SignInReason
from idp.mfa.passkeys import PasskeyAssertion
from idp.person import Person
from idp.saml.messages import AuthnRequestInfo, NameId, PostForm
from idp.sps.release import ReleasedAttribute
from idp.store.db import Write


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    """Passed to AD's bind and nowhere else: not logged, not stored, not shown in a repr."""


@dataclass(frozen=True)
class SsoSession:
    """The part of the person's single sign-on session the sign-in needs (the web layer stores it)."""

    person: Person
    session_index: str
    authn_instant: float
    """Epoch seconds of the password check that started the session."""
    rechecked_at: float | None = None
    """Epoch seconds of the last recheck against AD that said yes (RecheckPerson); None: none since the
    password check."""
    mfa_at: float | None = None
    """Epoch seconds of the second factor given in this session (SecondFactor); None: password only."""
    kerberos: bool = False
    """The session was started by a Windows (Kerberos) ticket rather than a password."""

    @property
    def checked_at(self) -> float:
        """When AD last said yes to this person: the password check, or the latest recheck."""
        return self.rechecked_at if self.rechecked_at is not None else self.authn_instant


@dataclass
class SignInContext:
    ip: str | None
    request: AuthnRequestInfo | None = None
    """What the SP asked; None for a sign-in at the IdP's own login page with no SP waiting."""
    credentials: Credentials | None = None
    """What was typed on the login form in this round, if anything."""
    session: SsoSession | None = None
    """The SSO session the browser came with, or the one the password check has just started."""
    attempted_username: str | None = None
    """The account a password was tried for, in canonical form, before AD said who it is (the throttle
    counts failures by it)."""
    person: Person | None = None
    signed_in_now: bool = False
    """The password was checked in this run: the front end stores ``session`` as the new SSO session."""
    session_rechecked: bool = False
    """AD was asked about the session's person again in this run: the front end stores ``session`` (its
    person and ``checked_at`` are fresh)."""
    session_ended: bool = False
    """The SSO session may not be used again (AD refused the person, or an admin revoked it): the front end
    drops it."""
    name_id: NameId | None = None
    name_id_problem: str | None = None
    """Why no NameID can be issued (for the audit trail and the console's preview)."""
    released: tuple[ReleasedAttribute, ...] = ()
    expiry_warned: bool = False
    """The browser has seen the password expiry warning today (WarnPasswordExpiry shows it once a day)."""
    second_factor_code: str | PasskeyAssertion | None = field(default=None, repr=False)
    """What was given on the second-factor page in this round (a TOTP or a recovery code, or what the
    browser's passkey signed), if anything."""
    remembered_browser: str | None = field(default=None, repr=False)
    """The browser's "remember this browser" token, if its cookie has one."""
    second_factor_now: bool = False
    """A second factor was given in this run: the front end records ``session.mfa_at`` in the SSO session."""
    step_up: bool = False
    """The person asks to give a second factor whatever the policy (before managing their own factors)."""
    negotiate_token: bytes | None = field(default=None, repr=False)
    """The browser's SPNEGO token (``Authorization: Negotiate``), if it sent one in this round."""
    writes: list[Write] = field(default_factory=list)
    """Rows a step wrote for the sign-in, committed with its audit row at the end (SignIn.run): one
    transaction, not one per step."""

    @property
    def sp(self) -> str | None:
        return self.request.sp_entity_id if self.request is not None else None

    @property
    def username(self) -> str | None:
        """Who the audit row names: the person once known, else the account a password was tried for."""
        if self.person is not None:
            return self.person.username
        if self.attempted_username is not None:
            return self.attempted_username
        return self.session.person.username if self.session is not None else None


@dataclass(frozen=True)
class Answer:
    """Send the browser to the SP with this form: a response with an assertion, or a SAML error status
    (then ``refused`` says why, for the audit trail)."""

    form: PostForm
    sp_name: str
    refused: SignInReason | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Refused:
    """Stop with a page that tells the person ``reason`` in their language; ``detail`` is for the admin."""

    reason: SignInReason
    status: int
    sp_name: str | None = None
    detail: str | None = None
    says: SignInReason | None = None
    """Whose words the person reads, when they must not learn the reason itself."""


@dataclass(frozen=True)
class Redirect:
    """Send the browser to the URL that answers the application: Alibaba Mail's one-time login URL (direct
    sign-in), or the authorization request an OIDC client waits on (idp.web.oidc.AnswerClient). A login URL
    signs the person in by itself, so it is kept out of reprs and logs like a password."""

    url: str = field(repr=False)
    sp_name: str


@dataclass(frozen=True)
class NeedsPassword:
    """Nobody is signed in (or the SP wants a fresh password): show the login form, then run again."""


@dataclass(frozen=True)
class SignedIn:
    """The person signed in at the IdP itself; no SP is waiting."""


@dataclass(frozen=True)
class NeedsSecondFactor:
    """The person is known but this sign-in needs a second factor the session has not given: ask for a code
    (``enrol``: the person has no factor yet and enrols one first), then run again."""

    enrol: bool
    sp_name: str | None = None


@dataclass(frozen=True)
class ChangePassword:
    """The password was right but AD wants a new one first (expired, or must change at next logon): show the
    change form, then run again with the new password."""

    reason: SignInReason
    username: str
    """The account's sAMAccountName, for the change form."""
    sp_name: str | None = None


@dataclass(frozen=True)
class PasswordExpiresSoon:
    """The person is signed in, and their password expires soon: offer to change it now or later."""

    expires_at: datetime
    sp_name: str | None = None


Outcome = (
    Answer | Redirect | Refused | NeedsPassword | NeedsSecondFactor | SignedIn | ChangePassword | PasswordExpiresSoon
)
