"""/apps/alimail: the stable address that signs an employee straight into Alibaba Mail (direct).

A bookmark, the app launcher's tile or a company portal link starts here; the pipeline runs as for any
application (SSO session or password, access decision, JIT mailbox) and its last step sends the browser to
the one-time login URL Alibaba Mail's logon API issued. Without ``[alimail_direct]`` the address does not
exist.
"""

from __future__ import annotations

from flask import Blueprint, abort
from werkzeug.wrappers import Response as HttpResponse

from idp.connectors.direct_app import direct_request
from idp.web.services import services
from idp.web.signin_flow import sign_in

bp = Blueprint("alimail_direct", __name__)


@bp.get("/apps/alimail")
def open_alimail() -> HttpResponse:
    settings = services().settings.alimail_direct
    if settings is None:
        abort(404)
    return sign_in(direct_request(settings))
