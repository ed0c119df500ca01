"""What the SAML layer needs from the SP registry, and nothing more."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Protocol

from idp.sps.policy import SpPolicy


class SpSource(Protocol):
    def metadata_files(self) -> list[Path]:
        """Every registered SP's metadata file (validated when it was added)."""
        ...

    def policy_for(self, entity_id: str) -> SpPolicy:
        """The SP's policy; the configured defaults when none was stored."""
        ...

    def metadata_expired(self, entity_id: str) -> datetime | None:
        """The validUntil of the SP's metadata once it has passed (sign-in must be refused), else None."""
        ...

    def version(self) -> str:
        """Changes whenever an SP is added, replaced or removed, so that every worker reloads cheaply."""
        ...
