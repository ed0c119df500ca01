"""The company's own look: its name, logo, colour and help-desk line on the pages employees see.

The colour reaches the pages through a small stylesheet of our own (/brand.css sets the one CSS custom property
style.css draws buttons, links and the focus ring with), so the Content-Security-Policy keeps refusing inline
styles. The logo and the stylesheet are read once, when the app is built; their URLs carry a hash of the
content, so browsers may keep them for a year and still see a change at the next restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, abort, current_app, url_for

from idp.settings import LOGO_TYPES, BrandingSettings

bp = Blueprint("branding", __name__)

_CACHE_FOREVER = "public, max-age=31536000, immutable"
_LOGO_POLICY = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
"""An SVG opened on its own is a document: no script, no fetch, only its own styles."""


@dataclass(frozen=True)
class Branding:
    settings: BrandingSettings
    stylesheet: bytes
    logo: bytes | None
    logo_type: str | None
    version: str
    """A hash of the stylesheet and the logo, in their URLs: computed once, not at every page (a logo may be
    256 KiB)."""

    def stylesheet_url(self) -> str:
        return url_for("branding.stylesheet", v=self.version)

    def logo_url(self) -> str | None:
        return url_for("branding.logo", v=self.version) if self.logo is not None else None

    @property
    def helpdesk(self) -> bool:
        s = self.settings
        return bool(s.helpdesk_text or s.helpdesk_phone or s.helpdesk_mail or s.helpdesk_url)


def load(settings: BrandingSettings) -> Branding:
    """The branding of this process. The settings were validated at start-up (the logo's type and size,
    the colour's contrast), so this only reads."""
    logo = settings.logo_file.read_bytes() if settings.logo_file is not None else None
    logo_type = LOGO_TYPES[settings.logo_file.suffix.lower()] if settings.logo_file is not None else None
    stylesheet = f":root {{ --accent: {settings.primary_color}; }}\n".encode()
    version = hashlib.sha256(stylesheet + (logo or b"")).hexdigest()[:12]
    return Branding(settings, stylesheet, logo, logo_type, version)


def install(app: Flask, settings: BrandingSettings) -> None:
    branding = app.extensions["branding"] = load(settings)
    app.register_blueprint(bp)

    @app.context_processor
    def _brand() -> dict:
        return {"brand": branding}


def _branding() -> Branding:
    return current_app.extensions["branding"]


@bp.get("/brand.css")
def stylesheet() -> Response:
    resp = Response(_branding().stylesheet, mimetype="text/css")
    resp.headers["Cache-Control"] = _CACHE_FOREVER
    return resp


@bp.get("/brand/logo")
def logo() -> Response:
    branding = _branding()
    if branding.logo is None or branding.logo_type is None:
        abort(404)
    resp = Response(branding.logo)
    resp.headers["Content-Type"] = branding.logo_type  # exactly the type: no charset appended to an image
    resp.headers["Cache-Control"] = _CACHE_FOREVER
    resp.headers["Content-Security-Policy"] = _LOGO_POLICY
    return resp
