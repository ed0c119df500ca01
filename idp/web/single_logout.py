"""Single logout in the browser: one session ends, and every other SP of it is told, one after another.

The browser carries our LogoutRequest to an SP (a redirect, or an auto-POST form), the SP sends its
LogoutResponse back to /saml/slo, and the chain goes on with the next SP; the progress is kept in the
session (idp.signin.logout holds the rules). Hidden iframes would tell them all at once, but our pages may
not be framed (frame-ancestors 'none') nor post anywhere but where form-action allows, and a third-party
frame gets no SP cookie in today's browsers. An SP that never sends the browser back leaves it there:
/saml/slo/next (the person coming back) counts that SP as not confirmed and goes on.

At the end the SP that started it gets its LogoutResponse (PartialLogout when any SP did not confirm), or
the IdP's sign-out page lists the applications that did not; one audit row either way.
"""

from __future__ import annotations

from flask import redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as HttpResponse

from idp.saml.errors import SamlRequestError
from idp.saml.messages import LogoutRequestInfo, LogoutResponseInfo, PostForm, RedirectTo
from idp.signin.logout import LogoutChain, mismatch
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


def start(ended: SsoSession | None, origin: LogoutRequestInfo | None) -> HttpResponse:
    """The session ``ended`` (None: there was none) is over here; tell its SPs."""
    chain = LogoutChain.begin(
        ended.person.username if ended is not None else None,
        ended.session_index if ended is not None else None,
        ended.signed_in_sps() if ended is not None else [],
        origin,
    )
    return _advance(chain)


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
    origin = chain.origin
    services().audit.record(
        "logout",
        "success",
        reason="partial" if chain.partial else ("sp_initiated" if origin is not None else "idp_page"),
        sp=origin.sp_entity_id if origin is not None else None,
        ip=client_ip(),
        username=chain.username,
        detail=chain.detail() if chain.username is not None else "no IdP session was open",
    )
    if origin is not None:
        out = services().saml_responses.logout_response(origin, "PartialLogout" if chain.partial else "Success")
        return _send(out, origin.sp_entity_id)
    names = [chain.names.get(sp, sp) for sp in chain.not_confirmed]
    return HttpResponse(render_template("logged_out.html", not_confirmed=names), mimetype="text/html")


def _send(out: PostForm | RedirectTo, sp_name: str) -> HttpResponse:
    if isinstance(out, RedirectTo):
        # From the sign-out button's POST too: see go_on.
        return go_on(out.url, sp_name, heading=translate("post.signing_out", sp=sp_name))
    return post_form(out, sp_name, heading=translate("post.signing_out", sp=sp_name))


def _load() -> LogoutChain | None:
    data = session.get(_CHAIN_KEY)
    return LogoutChain.from_dict(data) if isinstance(data, dict) else None
