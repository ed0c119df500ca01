"""The one error the SAML layer raises about a request it will not answer normally."""

from __future__ import annotations

from idp.codes import RequestReason

Reason = RequestReason


class SamlRequestError(Exception):
    """A SAML request we refuse.

    ``reason`` is the stable audit code (and what the web layer translates by); ``message`` is one English
    sentence for the person in front of the browser; ``sp_entity_id`` is set once the sender is known.
    """

    def __init__(
        self, reason: Reason, message: str, sp_entity_id: str | None = None, *, request_id: str | None = None
    ) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason: RequestReason = reason
        self.message = message
        self.sp_entity_id = sp_entity_id
        self.request_id = request_id
        """Set on a replay: the browser that parked this very request may be reloading its page."""
