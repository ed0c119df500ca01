"""Alibaba Mail (direct) as one more application of the sign-in pipeline, beside the SAML SPs.

It has an entity id of its own, so the audit trail, the metrics, ``[provisioning] jit_sps`` and the one
access decision (idp.access) name it as they name an SP; its policy comes from ``[alimail_direct]``
(``allowed_groups``) rather than from the SP registry, which holds SAML metadata this application has none of.
A sign-in to it carries the same request an IdP-initiated SAML sign-in carries, addressed to the logon API,
so every step before the last one runs unchanged.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from idp.saml.messages import AuthnRequestInfo
from idp.settings import AlimailDirectSettings
from idp.sps.policy import SpPolicy
from idp.sps.source import SpSource

ENTITY_ID = "urn:ad-sso-bridge:alimail-direct"
NAME = "Alibaba Mail"


def direct_request(settings: AlimailDirectSettings) -> AuthnRequestInfo:
    """What a sign-in to Alibaba Mail (direct) asks: nothing the person or an SP chose, so nothing to check."""
    return AuthnRequestInfo(
        request_id=None,
        sp_entity_id=ENTITY_ID,
        sp_name=NAME,
        acs_url=settings.host + settings.login_path,
        acs_binding="",
        force_authn=False,
        is_passive=False,
        nameid_format=None,
        relay_state=None,
    )


class WithDirectApp:
    """An ``SpSource`` that knows Alibaba Mail (direct) besides the registry's SPs."""

    def __init__(self, sps: SpSource, settings: AlimailDirectSettings) -> None:
        self._sps = sps
        self._policy = SpPolicy(display_name=NAME, allowed_groups=list(settings.allowed_groups), idp_initiated=True)

    def metadata_files(self) -> list[Path]:
        return self._sps.metadata_files()

    def policy_for(self, entity_id: str) -> SpPolicy:
        return self._policy if entity_id == ENTITY_ID else self._sps.policy_for(entity_id)

    def metadata_expired(self, entity_id: str) -> datetime | None:
        return None if entity_id == ENTITY_ID else self._sps.metadata_expired(entity_id)

    def version(self) -> str:
        return self._sps.version()
