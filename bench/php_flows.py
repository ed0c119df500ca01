"""The two browser flows of bench.flows against SimpleSAMLphp: its pages, for bench.flows' clients.

The same SP (python3-saml) makes the same signed HTTP-Redirect AuthnRequests, addressed to SimpleSAMLphp's
SSOService.php; the responses come back as bench.flows.ResponseSample, so the same strict check vouches for
them. Pages are read with bench.flows' regular expressions.
"""

from __future__ import annotations

import httpx

from bench.flows import FlowError, Pages, ResponseSample, SignedRequest, login_form_fields
from idp.demo.samba_dc import DemoUser

_TIMEOUT = 30


def php_full_login(http: httpx.Client, request: SignedRequest, user: DemoUser) -> ResponseSample:
    """SSOService.php (-> 302 to core/loginuserpass.php?AuthState=...), then the form's username, password and
    AuthState posted back; SimpleSAMLphp answers that POST with the auto-POST page."""
    page = http.get(request.url, follow_redirects=True, timeout=_TIMEOUT)
    if page.status_code != 200:
        raise FlowError(f"login page: HTTP {page.status_code} at {page.url}: {_snippet(page.text)}")
    action, fields = login_form_fields(str(page.url), page.text, None)
    if "AuthState" not in fields:
        raise FlowError(f"no login form with an AuthState at {page.url}: {_snippet(page.text)}")
    fields.update(username=user.username, password=user.password)
    answer = http.post(action, data=fields, timeout=_TIMEOUT)
    return php_auto_post(answer, request.request_id)


def php_auto_post(r: httpx.Response, request_id: str) -> ResponseSample:
    if r.status_code != 200 or 'name="SAMLResponse"' not in r.text:
        raise FlowError(f"expected the auto-POST page, got HTTP {r.status_code} at {r.url}: {_snippet(r.text)}")
    action, fields = login_form_fields(str(r.url), r.text, None)
    if not fields.get("SAMLResponse"):
        raise FlowError("the auto-POST form carries no SAMLResponse")
    return ResponseSample(request_id, action, fields)


def _snippet(text: str) -> str:
    return " ".join(text.split())[:300]


SIMPLESAMLPHP = Pages(php_full_login, php_auto_post)
