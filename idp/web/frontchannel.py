"""OpenID Connect Front-Channel Logout on the page a logout ends on: one hidden frame per client of the ended
session, loading the client's front-channel logout URI with ``iss`` and ``sid``. A browser that blocks
third-party cookies sends a client's frame none of its cookies, so those two are how the client finds the
session to end.

The page's Content-Security-Policy allows frames from exactly those clients' origins. A page that goes on by
itself (the LogoutResponse's auto-POST, a redirect to an SP or to a client's post-logout address) would cut
the frames off mid-load: it loads static/frontchannel.js instead of going on at once, which goes on when
the window's load event says every frame has loaded, or after a short wait; without JavaScript the page's
button or link remains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from idp.signin.logout import LogoutChain
from idp.web.csp import PAGE_POLICY


@dataclass(frozen=True)
class Frame:
    """A client to tell: its name (the frame's title) and the URL the frame loads."""

    name: str
    url: str


def frames(chain: LogoutChain, issuer: str) -> list[Frame]:
    """The frames of the chain's last page: each client with a front-channel logout URI, told which issuer's
    session (``sid``, the SessionIndex its ID tokens carry) ended."""
    if chain.session_index is None:
        return []
    params = urlencode({"iss": issuer, "sid": chain.session_index})
    return [Frame(c.name, _with_query(c.logout_uri, params)) for c in chain.front_channel if c.logout_uri]


def frame_src(shown: Sequence[Frame]) -> str:
    """The ``frame-src`` directive (with its leading "; ") that lets exactly these frames load; "" for none,
    which leaves frames to ``default-src 'none'``."""
    origins = sorted({_origin(f.url) for f in shown})
    return f"; frame-src {' '.join(origins)}" if origins else ""


def page_policy(shown: Sequence[Frame], nonce: str | None = None) -> str:
    """Our pages' policy (idp.web.csp), widened by these frames only, and the one script whose tag carries
    ``nonce`` when given."""
    script = f"; script-src 'nonce-{nonce}'" if nonce is not None else ""
    return PAGE_POLICY + script + frame_src(shown)


def _with_query(uri: str, params: str) -> str:
    # The URI may carry a query of its own (the specification allows it): ours goes after it.
    if uri.endswith(("?", "&")):
        return uri + params
    return uri + ("&" if "?" in uri else "?") + params


def _origin(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address goes in brackets, as in the URL
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}"
