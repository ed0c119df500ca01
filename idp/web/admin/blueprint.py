"""The /admin blueprint. Every page module adds its routes to ``bp``; the guard runs before all of them."""

from __future__ import annotations

from flask import Blueprint, Response
from werkzeug.wrappers import Response as BaseResponse

from idp.web.admin.guard import require_admin

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.before_request
def _guard() -> BaseResponse | tuple[str, int] | None:
    return require_admin()


@bp.after_request
def _no_store(resp: Response) -> Response:
    # Admin pages show who signed in and from where; no shared proxy or back button should keep them.
    resp.headers["Cache-Control"] = "no-store"
    return resp
