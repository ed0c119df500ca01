"""Typed errors of the SP registry; each carries the sentence an admin needs and a short audit reason."""

from __future__ import annotations

from idp.codes import SpRegistryReason


class SpRegistryError(Exception):
    """Base class: ``str(error)`` is the message for the admin, ``reason`` the audit trail's short code."""

    reason: SpRegistryReason = "error"


class MetadataError(SpRegistryError):
    """SP metadata we refuse; ``element`` names the element at fault (None: the whole document)."""

    reason: SpRegistryReason = "invalid_metadata"

    def __init__(self, problem: str, element: str | None = None) -> None:
        self.problem = problem
        self.element = element
        super().__init__(f"{element}: {problem}" if element else problem)


class MetadataSignatureError(MetadataError):
    """Metadata from a URL with a pinned certificate that is unsigned or not signed by that certificate."""

    reason = "bad_metadata_signature"


class EntityMismatchError(MetadataError):
    """A metadata URL now serves another SP than the one registered from it."""

    reason = "entity_id_changed"


class DuplicateSpError(SpRegistryError):
    reason = "duplicate_entity_id"

    def __init__(self, entity_id: str) -> None:
        self.entity_id = entity_id
        super().__init__(f"an SP with entityID {entity_id!r} is already registered (use --replace to update it)")


class UnknownSpError(SpRegistryError):
    reason = "unknown_sp"

    def __init__(self, entity_id: str) -> None:
        self.entity_id = entity_id
        super().__init__(f"no SP with entityID {entity_id!r} is registered")


class StoredPolicyError(SpRegistryError):
    """A policy row that no longer matches SpPolicy; we fail closed rather than fall back to the defaults."""

    reason = "bad_stored_policy"


class RegistryStorageError(SpRegistryError):
    """The metadata directory cannot be written."""

    reason = "storage_error"


class FetchError(SpRegistryError):
    """Metadata could not be downloaded from a URL."""

    reason: SpRegistryReason = "fetch_failed"


class FetchRefused(FetchError):
    reason = "fetch_refused_url"


class FetchTimeout(FetchError):
    reason = "fetch_timeout"


class FetchHttpError(FetchError):
    reason = "fetch_http_error"

    def __init__(self, message: str, status: int) -> None:
        self.status = status
        super().__init__(message)


class FetchTooLarge(FetchError):
    reason = "fetch_too_large"


class FetchNotXml(FetchError):
    reason = "fetch_not_xml"


class PolicyInvalidError(SpRegistryError):
    """A policy the console or CLI asked for that SpPolicy refuses; the message lists every field at fault."""

    reason = "invalid_policy"


class NotFromUrlError(SpRegistryError):
    """A refresh was asked for an SP that was not registered from a metadata URL."""

    reason = "no_metadata_url"

    def __init__(self, entity_id: str) -> None:
        self.entity_id = entity_id
        super().__init__(f"the SP {entity_id!r} was not registered from a metadata URL; there is nothing to refresh")
