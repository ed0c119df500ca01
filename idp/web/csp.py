"""The Content-Security-Policy of our pages: one definition, which idp.app sends with every page that sets
none of its own, and which a page that needs a little more widens (idp.web.frontchannel)."""

from __future__ import annotations

PAGE_POLICY = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'"
"""No script, no frame, nothing from another origin; forms post to us only, and no site may frame our pages."""
