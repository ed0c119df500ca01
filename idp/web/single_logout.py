"""Single logout in the browser: one session ends, every other SP of it is told, one after another, and then
every OpenID Connect client of it at once.

The browser carries our LogoutRequest to an SP (a redirect, or an auto-POST form), the SP sends its
LogoutResponse back to /saml/slo, and the chain goes on with the next SP; the progress is kept in the
session (idp.signin.logout holds the rules). Hidden iframes would tell them all at once, but our pages may
not be framed (frame-ancestors 'none') nor post anywhere but where form-action allows, and a third-party
frame gets no SP cookie in today's browsers. An SP that never sends the browser back leaves it there:
/saml/slo/next (the person coming back) counts that SP as not confirmed and goes on.

At the end the SP that started it gets its LogoutResponse (PartialLogout when any SP did not confirm), the
client that started it gets the browser back at its post-logout address, or the IdP's sign-out page lists the
applications that did not confirm; one audit row either way. Whichever page that is carries the frames that
tell the session's OIDC clients (idp.web.frontchannel); those the chain keeps from its first step, because
the session they were read from is gone by then.
"""

from __future__ import annotations

from collections.abc import Sequence

from flask import redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as HttpResponse

from idp.oidc.clients import OidcClient
from idp.saml.errors import SamlRequestError
from idp.saml.messages import LogoutRequestInfo, LogoutResponseInfo, PostForm, RedirectTo
from idp.signin.logout import LogoutChain, SignedInClient, mismatch
from idp.web.frontchannel import Frame, frames, page_policy
from idp.web.i18n import translate
from idp.web.services import services
from idp.web.signin_flow import client_ip, go_on, post_form
from idp.web.sso_session import SsoSession, current_sso, end_sso

_CHAIN_KEY = "slo_chain"


def sp_asked(req: LogoutRequestInfo) -> HttpResponse:
    """An SP's verified LogoutRequest: end this browser's session and tell the other SPs, unless it names
    another person or session, which is refused with Requester and leaves this session alone."""
    sso = current_sso()
    if sso is not None:
        signed_in = {sp.entity_id: sp for sp in sso.signed_in_sps()}
        why = mismatch(req, signed_in.get(req.sp_entity_id), sso.session_index)
        if why is not None:
            services().audit.record(
                "logout",
                "refused",
                reason="session_mismatch",
                sp=req.sp_entity_id,
                ip=client_ip(),
                username=sso.person.username,
                detail=why,
            )
            return _send(services().saml_responses.logout_response(req, "Requester", why), req.sp_entity_id)
    return start(end_sso(), req)


def start(
    ended: SsoSession | None,
    origin: LogoutRequestInfo | None,
    *,
    initiator: OidcClient | None = None,
    then: str | None = None,
) -> HttpResponse:
    """The session ``ended`` (None: there was none) is over here; tell its SPs and clients. ``initiator``: the
    client whose logout request started it, which asked for the browser back at ``then`` (or not: None)."""
    chain = LogoutChain.begin(
        ended.person.username if ended is not None else None,
        ended.session_index if ended is not None else None,
        ended.signed_in_sps() if ended is not None else [],
        origin,
        clients=_clients(ended.client_ids) if ended is not None else [],
        initiator=_signed_in(initiator) if initiator is not None else None,
        then=then,
    )
    return _advance(chain)


def _clients(client_ids: list[str]) -> list[SignedInClient]:
    """The session's clients as they are registered now (a client removed since is not told)."""
    found = (services().oidc.clients.get(c) for c in client_ids)
    return [_signed_in(c) for c in found if c is not None]


def _signed_in(client: OidcClient) -> SignedInClient:
    return SignedInClient(client.entity_id, client.name, client.frontchannel_logout_uri)


def answer_received() -> HttpResponse:
    """A LogoutResponse at /saml/slo. A POST is checked and parked for a same-site GET (idp.web.pending):
    the chain is in the session, whose cookie a cross-site POST does not bring. Raises SamlRequestError for
    an answer refused outside a chain; inside one, the SP it came from did not confirm and the chain goes on."""
    requests = services().saml_requests
    if request.method == "POST":
        accepted = requests.parse_logout_response(
            "post", request.form.get("SAMLResponse", ""), request.form.get("RelayState")
        )
        return redirect(url_for("saml.slo_next", resume=services().pending.put(accepted)), code=303)
    chain = _load()
    try:
        response = requests.parse_logout_response(
            "redirect",
            request.args.get("SAMLResponse", ""),
            request.args.get("RelayState"),
            query_string=request.query_string.decode("ascii", "replace"),
        )
    except SamlRequestError as exc:
        if chain is None or chain.waiting_for is None:
            raise
        chain.refused_answer(f"{exc.reason}: {exc.message}")
        return _advance(chain)
    return _answered(chain, response)


def next_step() -> HttpResponse:
    """/saml/slo/next: a parked POST answer, or the person back without one (that SP did not confirm)."""
    chain = _load()
    if "resume" in request.args:
        response = services().pending.pop(request.args["resume"], LogoutResponseInfo)
        if response is not None:
            return _answered(chain, response)
    if chain is None:
        return redirect(url_for("login.home"), code=303)
    chain.gave_up()
    return _advance(chain)


def _answered(chain: LogoutChain | None, response: LogoutResponseInfo) -> HttpResponse:
    if chain is None or chain.waiting_for is None:
        raise SamlRequestError(
            "unexpected_response", "No single logout is waiting for an answer in this browser.", response.sp_entity_id
        )
    why = chain.answered(response)
    if why is not None:
        # The browser is here, not at the SP we wait for: that SP will not answer in this chain now.
        chain.refused_answer(why)
    return _advance(chain)


def _advance(chain: LogoutChain) -> HttpResponse:
    """Send the browser to the next SP that can be told, or end the chain."""
    responses = services().saml_responses
    while (sp := chain.next_sp()) is not None:
        assert sp.name_id is not None and chain.session_index is not None  # LogoutChain.begin keeps only those
        sent = responses.logout_request(sp.entity_id, sp.name_id, chain.session_index)
        if sent is None:
            chain.cannot_tell(sp.entity_id, "its metadata has no single-logout address")
            continue
        chain.sent(sp.entity_id, sent.request_id)
        session[_CHAIN_KEY] = chain.to_dict()
        return _send(sent.out, sp.sp_name)
    session.pop(_CHAIN_KEY, None)
    return _finish(chain)


def _finish(chain: LogoutChain) -> HttpResponse:
    origin, initiator = chain.origin, chain.initiator
    started_by = origin.sp_entity_id if origin is not None else None
    if initiator is not None:
        started_by = initiator.entity_id
    services().audit.record(
        "logout",
        "success",
        reason="partial" if chain.partial else ("sp_initiated" if started_by is not None else "idp_page"),
        sp=started_by,
        ip=client_ip(),
        username=chain.username,
        detail=chain.detail() if chain.username is not None else "no IdP session was open",
    )
    told = frames(chain, services().oidc.issuer)
    if origin is not None:
        out = services().saml_responses.logout_response(origin, "PartialLogout" if chain.partial else "Success")
        return _send(out, origin.sp_entity_id, told)
    back_to = initiator.name if initiator is not None else translate("this.service")
    if chain.then is not None and not chain.partial:
        heading = translate("logout.frontchannel.returning", app=back_to)
        return go_on(chain.then, back_to, heading=heading, frames=told)
    # Applications that may still be signed in are named here, before the client's own page (if any).
    names = [chain.names.get(sp, sp) for sp in chain.not_confirmed]
    body = render_template("logged_out.html", not_confirmed=names, frames=told, then=chain.then, back_to=back_to)
    resp = HttpResponse(body, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = page_policy(told)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _send(out: PostForm | RedirectTo, sp_name: str, told: Sequence[Frame] = ()) -> HttpResponse:
    heading = translate("post.signing_out", sp=sp_name)
    if isinstance(out, RedirectTo):
        # From the sign-out button's POST too: see go_on.
        return go_on(out.url, sp_name, heading=heading, frames=told)
    return post_form(out, sp_name, heading=heading, frames=told)


def _load() -> LogoutChain | None:
    data = session.get(_CHAIN_KEY)
    return LogoutChain.from_dict(data) if isinstance(data, dict) else None
