"""Presets for OpenID Connect clients: what a well-known application needs, beside the SAML presets
(idp.sps.presets).

Alibaba Mail's OAuth 2.0 sign-in: its documentation, "OAuth 2.0 identity authentication"
(https://help.aliyun.com/en/document_detail/2937171.html), says the feature is in the AI Premium Edition
only, that the mail server is the OAuth 2.0 client and the company's identity provider the OAuth 2.0
server, and that the integration uses the authorization code grant per RFC 6749 with PKCE per RFC 7636.
It does not publish the redirect URI Alibaba Mail sends people back to: the admin reads it from Alibaba
Mail's admin console and passes it with --redirect-uri. The mailbox is found by the person's mail address,
so the preset asks for the ``email`` scope (the address idp.mail_address gives, the one JIT made the
mailbox with).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OidcPreset:
    name: str
    scopes: tuple[str, ...]
    source: str
    """The page the values come from."""
    notes: tuple[str, ...]
    """What the admin does on the application's side, printed after the client is added; ``{entity_id}`` is
    the client's name in the audit trail and in ``[provisioning] jit_sps``."""


ALIMAIL = OidcPreset(
    name="Alibaba Mail",
    scopes=("openid", "profile", "email"),
    source="https://help.aliyun.com/en/document_detail/2937171.html",
    notes=(
        "Alibaba Mail's OAuth 2.0 sign-in needs its AI Premium Edition.",
        "In Alibaba Mail's admin console, enter the authorization, token and userinfo endpoints of our discovery "
        "document, this client id and its secret; the code flow with PKCE (S256) is what it uses.",
        "Register the redirect URI Alibaba Mail's console shows with --redirect-uri (it must match exactly).",
        "For mailboxes made at first sign-in, add {entity_id} to [provisioning] jit_sps "
        "(or leave jit_sps empty for every application).",
    ),
)

PRESETS: dict[str, OidcPreset] = {"alimail": ALIMAIL}
