"""The OpenID Connect endpoints: discovery, JWKS, authorization, token, userinfo, revocation, introspection.

The authorization endpoint is one more front end of the sign-in pipeline. A browser with an SSO session
(SAML or OIDC, it is the same one) is signed in without the form. Without one, the request waits in the
server-side session as a SAML request does (idp.web.signin_flow.park_request), so the login form, Windows
sign-in and the second-factor and password pages run the pipeline for the client itself: its access
decision, second factor and JIT, and its one audit row, which says how the person signed in (password,
kerberos). That run ends in AnswerClient, which sends the browser back here with a one-time note that the
pipeline has accepted this session for this very request; the endpoint takes the note instead of running
the pipeline a second time, so a sign-in is audited once, for the client, exactly as a SAML sign-in is.
The pipeline's access decision runs per client, with the client's ``allowed_groups``; only a sign-in the
pipeline accepts gets a code. Authlib checks the request (client, exact redirect URI, PKCE S256, scopes)
before anyone is asked for a password.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlencode

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, jsonify, redirect, request, session, url_for
from werkzeug.wrappers import Response as HttpResponse

from idp.oidc.claims import person_claims
from idp.oidc.clients import ENTITY_PREFIX, OidcClient
from idp.oidc.provider import Endpoints, InvalidHint
from idp.oidc.tokens import Subject
from idp.saml.messages import AuthnRequestInfo
from idp.signin.context import (
    NeedsPassword,
    NeedsSecondFactor,
    Outcome,
    Redirect,
    Refused,
    SignedIn,
    SignInContext,
)
from idp.signin.sessions import SsoSessionIndex
from idp.signin.steps import IssueNameId, ReleaseAttributes, Respond, SignInToAlimail, Step
from idp.web import single_logout
from idp.web.services import services
from idp.web.signin_flow import REMEMBER_COOKIE, client_ip, error_page, park_request
from idp.web.sso_session import current_sso, end_sso, record_mfa, refresh_sso, remember_client

bp = Blueprint("oidc", __name__)

_PREFIX = "/oidc"
_AUTHORIZE = f"{_PREFIX}/authorize"
_ACCEPTED = "oidc_accepted"
"""The note AnswerClient leaves in the server-side session for the authorization request it sends the browser
back to: the SSO session, the client and the request's exact address it accepted."""
_ACCEPTED_FOR = 300
"""Seconds the note is good for: the browser follows it at once, and a note left behind (a tab closed on the
way) must not spare a much later request the pipeline's checks."""


@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    base = services().settings.server.base_url + _PREFIX
    endpoints = Endpoints(
        authorization=f"{base}/authorize",
        token=f"{base}/token",
        userinfo=f"{base}/userinfo",
        jwks=f"{base}/jwks",
        revocation=f"{base}/revoke",
        introspection=f"{base}/introspect",
        end_session=f"{base}/logout",
    )
    return _public_json(services().oidc.discovery(endpoints))


@bp.get(f"{_PREFIX}/jwks")
def jwks() -> Response:
    return _public_json(services().oidc.keys.jwks())


@bp.get(_AUTHORIZE)
def authorize() -> HttpResponse:
    svc = services()
    server = svc.oidc
    sso = current_sso()
    try:
        grant = server.get_consent_grant(end_user=sso.person if sso is not None else None)
    except OAuth2Error as error:
        client_id = request.args.get("client_id", "")
        svc.audit.record(
            "oidc_code_issued",
            "refused",
            username=sso.person.username if sso is not None else None,
            sp=client_id and ENTITY_PREFIX + client_id,
            ip=client_ip(),
            detail=f"{error.error}: {error.description or ''}"[:500],
        )
        if error.redirect_uri:  # the client and its redirect URI are known: it reads the error itself
            return server.handle_error_response(None, error)
        return error_page("error.oidc_request", 400, sp=client_id or None, detail=error.error)
    client = grant.client.client
    req = _client_request(client, grant.redirect_uri)
    if sso is None:
        return redirect(url_for("login.login", k=park_request(req)), code=303)
    if _take_acceptance(sso.session_index, req):
        signed_in, person = sso.for_signin(), sso.person
    else:
        ctx = SignInContext(
            ip=client_ip(),
            request=req,
            session=sso.for_signin(),
            remembered_browser=request.cookies.get(REMEMBER_COOKIE),
        )
        outcome = svc.oidc_signin.run(ctx)
        if ctx.session_ended:
            end_sso()
        elif ctx.session_rechecked and ctx.session is not None:
            refresh_sso(ctx.session)
        if ctx.second_factor_now and ctx.session is not None:  # a remembered browser counts for the session
            record_mfa(ctx.session)
        if not (isinstance(outcome, SignedIn) and ctx.person is not None and ctx.session is not None):
            return _not_yet(outcome, req)
        signed_in, person = ctx.session, ctx.person
    subject = Subject(
        claims=person_claims(person, svc.settings.provisioning),
        username=person.username,
        session_index=signed_in.session_index,
        auth_time=int(signed_in.authn_instant),
    )
    resp: HttpResponse = server.create_authorization_response(grant=grant, grant_user=subject)
    remember_client(signed_in.session_index, client.client_id)  # its logout tells this client too
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _client_request(client: OidcClient, redirect_uri: str) -> AuthnRequestInfo:
    """What the pipeline knows of an authorization request: the client (by its entity id) and, as
    ``relay_state``, the request's own address, where the browser comes back to once signed in."""
    return AuthnRequestInfo(
        request_id="oidc",  # solicited: the client asked (the audit row must not read "IdP-initiated")
        sp_entity_id=client.entity_id,
        sp_name=client.name,
        acs_url=redirect_uri,
        acs_binding="",
        force_authn=False,
        is_passive=False,
        nameid_format=None,
        relay_state=request.full_path,
    )


def _not_yet(outcome: Outcome, req: AuthnRequestInfo) -> HttpResponse:
    """The answer to a run of the pipeline that gave no code: a refusal, or the page that asks for what is
    missing, with the request waiting in the session for the sign-in that page runs."""
    if isinstance(outcome, Refused):
        return error_page(outcome.reason, outcome.status, sp=outcome.sp_name)
    if isinstance(outcome, NeedsSecondFactor):  # the code (or enrolment) page runs the sign-in for the client
        return redirect(url_for("mfa.enrol" if outcome.enrol else "mfa.verify", k=park_request(req)), code=303)
    if isinstance(outcome, NeedsPassword):
        return redirect(url_for("login.login", k=park_request(req)), code=303)
    return error_page("error.oidc_request", 400, sp=req.sp_name, detail=type(outcome).__name__)


class AnswerClient:
    """[response] The answer to an OpenID Connect client is the authorization endpoint's, not a SAML response.
    A sign-in that a waiting authorization request started (the login form, a Windows ticket, the second-factor
    and password pages: idp.web.signin_flow.sign_in) has passed every step up to here: the browser goes back to
    that request, and a one-time note in the server-side session says that this SSO session was just accepted
    for this client and this exact request, so that the endpoint issues the code without running the
    pipeline again. The note is only ever written here, after the pipeline's yes, in the session the browser
    cannot write: a request that does not carry it is run through the pipeline as any other."""

    previews = False

    def process(self, ctx: SignInContext) -> Outcome | None:
        req, signed_in = ctx.request, ctx.session
        if req is None or signed_in is None or not req.sp_entity_id.startswith(ENTITY_PREFIX):
            return None
        back = req.relay_state
        if back is None or not back.startswith(_AUTHORIZE + "?"):
            return None  # not a request of the authorization endpoint's (see _client_request)
        session[_ACCEPTED] = {
            "session_index": signed_in.session_index,
            "sp": req.sp_entity_id,
            "request": back,
            "at": time.time(),
        }
        return Redirect(back, req.sp_name)


def _take_acceptance(session_index: str, req: AuthnRequestInfo) -> bool:
    """Whether AnswerClient has just accepted this SSO session for this client and this exact request; the
    note is used up by the request it names."""
    note = session.get(_ACCEPTED)
    if not isinstance(note, dict) or (note.get("session_index"), note.get("sp"), note.get("request")) != (
        session_index,
        req.sp_entity_id,
        req.relay_state,
    ):
        return False
    session.pop(_ACCEPTED)
    return time.time() - float(note.get("at", 0)) < _ACCEPTED_FOR


@bp.post(f"{_PREFIX}/token")
def token() -> HttpResponse:
    svc = services()
    resp: HttpResponse = svc.oidc.create_token_response()
    if resp.status_code >= 400:  # a refused exchange or refresh: the client reads why, the admin too
        body = resp.get_json(silent=True) or {}
        client_id = request.authorization.username if request.authorization else request.form.get("client_id", "")
        svc.audit.record(
            "oidc_token_issued",
            "refused",
            sp=client_id and ENTITY_PREFIX + client_id,
            ip=client_ip(),
            detail=f"{request.form.get('grant_type', '')}: {body.get('error', resp.status_code)} "
            f"{body.get('error_description', '')}".strip()[:500],
        )
    return resp


@bp.route(f"{_PREFIX}/userinfo", methods=["GET", "POST"])
def userinfo() -> HttpResponse:
    return services().oidc.create_endpoint_response("userinfo")


@bp.post(f"{_PREFIX}/revoke")
def revoke() -> HttpResponse:
    return services().oidc.create_endpoint_response("revocation")


@bp.post(f"{_PREFIX}/introspect")
def introspect() -> HttpResponse:
    return services().oidc.create_endpoint_response("introspection")


@bp.route(f"{_PREFIX}/logout", methods=["GET", "POST"])
def end_session() -> HttpResponse:
    """RP-initiated logout: the SSO session ends, here, at every SAML SP of it (single logout) and at its other
    OIDC clients (front channel), and with it every token issued in it. The request must carry the ID token
    the client got (``id_token_hint``): without it any page on the web could sign people out.
    ``post_logout_redirect_uri`` must be one of the client's registered redirect URIs; the browser goes there
    once the SPs have been told, unless one did not confirm: then it ends on our signed-out page, which names
    that SP and links on to the client."""
    svc = services()
    values = request.values
    try:
        claims = svc.oidc.id_token_hint(values.get("id_token_hint", ""))
    except InvalidHint as exc:
        return error_page("error.oidc_request", 400, sp=values.get("client_id") or None, detail=str(exc))
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else list(audience or [])
    client = svc.oidc.clients.get(values.get("client_id") or (audiences[0] if audiences else ""))
    if client is None or client.client_id not in audiences:
        return error_page("error.oidc_request", 400, detail="the client is unknown or not the ID token's audience")
    target = values.get("post_logout_redirect_uri")
    if target is not None and target not in client.redirect_uris:
        return error_page(
            "error.oidc_request", 400, sp=client.name, detail="post_logout_redirect_uri is not registered"
        )
    sso = current_sso()
    if sso is not None and str(sso.person.guid) != claims.get("sub"):
        return error_page("error.oidc_request", 400, sp=client.name, detail="the ID token names another person")
    if target is not None and (state := values.get("state")):
        target += ("&" if "?" in target else "?") + urlencode({"state": state})
    return single_logout.start(end_sso(), None, initiator=client, then=target)


def _public_json(data: Mapping[str, object]) -> Response:
    resp = jsonify(data)
    resp.headers["Access-Control-Allow-Origin"] = "*"  # single-page apps read these from their own origin
    resp.headers["Cache-Control"] = "public, max-age=300"
    return resp


def session_alive(sessions: SsoSessionIndex) -> Callable[[Subject], bool]:
    """Whether the SSO session a token was issued in is live: a logout (SAML or OIDC), an admin's revoke
    or its end ends every token issued in it too."""

    def alive(subject: Subject) -> bool:
        return any(s.session_index == subject.session_index for s in sessions.live(subject.username))

    return alive


_SAML_ANSWER_STEPS = (SignInToAlimail, IssueNameId, ReleaseAttributes, Respond)
"""The steps that make the SAML answer (or Alibaba Mail's login URL): a client gets a code instead."""


def oidc_steps(steps: Sequence[Step]) -> list[Step]:
    """The steps an authorization request runs: every step of a SAML sign-in (session, recheck, password,
    second factor, access, JIT) up to the answer, which the authorization server makes."""
    return [s for s in steps if not isinstance(s, _SAML_ANSWER_STEPS)]


def answering_clients(steps: Sequence[Step]) -> list[Step]:
    """``steps`` with AnswerClient before the SAML answer: the pipeline of the web pages that sign a person in
    (idp.web.signin_flow.sign_in), which then finishes a sign-in an authorization request waits on too."""
    first = next(i for i, s in enumerate(steps) if isinstance(s, _SAML_ANSWER_STEPS))
    return [*steps[:first], AnswerClient(), *steps[first:]]
