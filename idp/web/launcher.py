"""IdP-initiated sign-in (/saml/init?sp=ENTITY_ID) and the app launcher (/apps) that links to it.

An employee starts here instead of at the SP: we send the SP an unsolicited Response (no InResponseTo) on
the same sign-in pipeline as SP-initiated sign-in (group check, roles, JIT provisioning, audit). Only SPs
whose policy says ``idp_initiated`` take part: an SP that never expects unsolicited responses may treat one
as an attack, and the launcher must not show a tile that cannot work.

Tile order: SPs filled from the mailbox preset first (webmail is what most people open), then by name.
Alibaba Mail (direct) counts as a mailbox; its tile opens /apps/alimail (idp.web.alimail_direct).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as HttpResponse

from idp.connectors.direct_app import ENTITY_ID as ALIMAIL_DIRECT
from idp.person import Person
from idp.saml.errors import SamlRequestError
from idp.web.i18n import translate
from idp.web.services import services
from idp.web.signin_flow import sign_in
from idp.web.sso import refused_request
from idp.web.sso_session import current_sso

bp = Blueprint("launcher", __name__)

MAILBOX_PRESETS = frozenset({"mailbox"})
_STATUS = {"unknown_sp": 404, "idp_initiated_not_allowed": 403}


@dataclass(frozen=True)
class Tile:
    entity_id: str
    name: str
    mailbox: bool
    href: str


@bp.get("/saml/init")
def idp_initiated() -> HttpResponse:
    """The SP is checked before the person is asked to sign in: nobody types a password for a refusal."""
    entity_id = request.args.get("sp", "").strip()
    sso = current_sso()
    try:
        if not entity_id:
            raise SamlRequestError("unknown_sp", "No service (sp=) was named.", None)
        req = services().saml_requests.unsolicited_request(entity_id, request.args.get("RelayState"))
    except SamlRequestError as exc:
        return refused_request(
            exc,
            event="idp_initiated",
            status=_STATUS.get(exc.reason, 400),
            username=sso.person.username if sso else None,
        )
    return sign_in(req)


@bp.get("/apps")
def apps() -> HttpResponse | str:
    sso = current_sso()
    if sso is None:
        return redirect(url_for("login.login", next=url_for("launcher.apps")), code=303)
    return render_template("apps.html", person=sso.person, tiles=tiles_for(sso.person))


def tiles_for(person: Person) -> list[Tile]:
    """The SPs this person can start from here: the ones /saml/init would start (open to IdP-initiated
    sign-in, with an ACS to answer at) and whose access decision lets the person in, both asked of the same
    code a click on the tile runs; and Alibaba Mail (direct) when it is configured and lets the person in."""
    svc = services()
    tiles = []
    for entry in svc.registry.list():
        try:
            svc.saml_requests.unsolicited_request(entry.entity_id, None)
        except SamlRequestError:
            continue
        if not svc.access.refusals(person, entry.entity_id):
            name = entry.policy.display_name or entry.name
            mailbox = entry.policy.preset in MAILBOX_PRESETS
            tiles.append(Tile(entry.entity_id, name, mailbox, url_for("launcher.idp_initiated", sp=entry.entity_id)))
    if svc.settings.alimail_direct is not None and not svc.access.refusals(person, ALIMAIL_DIRECT):
        href = url_for("alimail_direct.open_alimail")
        tiles.append(Tile(ALIMAIL_DIRECT, translate("launcher.alimail_direct"), True, href))
    return sorted(tiles, key=lambda t: (not t.mailbox, t.name.casefold(), t.entity_id))
