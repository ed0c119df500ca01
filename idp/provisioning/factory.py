"""Build the configured mailbox Provider from settings; the one place that knows every provider class."""

from __future__ import annotations

from idp.provisioning.alimail import AlimailProvider
from idp.provisioning.provider import Provider
from idp.provisioning.scim import ScimProvider
from idp.settings import ProvisioningSettings


class ProvisioningNotConfigured(Exception):
    """There is no [provisioning] section, so there is nothing to provision to."""


def make_provider(settings: ProvisioningSettings | None) -> Provider:
    """A ready client for the configured provider; the caller close()s it."""
    if settings is None:
        raise ProvisioningNotConfigured(
            'no [provisioning] section in the configuration: set provider = "alimail" or "scim" and its table'
        )
    if settings.provider == "alimail" and settings.alimail is not None:
        return AlimailProvider(settings.alimail)
    if settings.provider == "scim" and settings.scim is not None:
        return ScimProvider(settings.scim)
    # ProvisioningSettings validates this away; kept for type checkers and hand-built settings.
    raise ProvisioningNotConfigured(f"[provisioning.{settings.provider}] is missing")
