"""OpenID Connect clients: registered from the shell (`idp oidc client add`), stored in the database.

A confidential client's secret is shown once when it is made and kept only as a SHA-256 (a random 256-bit
secret needs no slow hash: nothing can be guessed from its digest). A public client (a single-page or
native app) has no secret and must prove its code with PKCE. Redirect URIs match exactly, character for
character. Each client is also an application of the sign-in pipeline under the entity id
``urn:ad-sso-bridge:oidc:<client_id>``, so the audit trail, the metrics and the one access decision name it
as they name an SP, and ``allowed_groups`` is an SP policy's ``allowed_groups``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from sqlalchemy import delete, select

from idp.person import GroupRef
from idp.sps.policy import SpPolicy
from idp.sps.source import SpSource
from idp.store.db import Database, rowcount
from idp.store.models import OidcClientRow

ENTITY_PREFIX = "urn:ad-sso-bridge:oidc:"
SCOPES = ("openid", "profile", "email", "groups")
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


OidcField = Literal["client_id", "name", "redirect_uris", "scopes", "groups", "frontchannel_logout_uri"]
"""The value at fault, by the name of its field in the console's form."""
OidcErrorCode = Literal[
    "client_id_invalid",
    "client_exists",
    "unknown_client",
    "public_client",
    "name_missing",
    "redirect_uri_missing",
    "redirect_uri_scheme",
    "redirect_uri_fragment",
    "frontchannel_uri_scheme",
    "frontchannel_uri_fragment",
    "frontchannel_uri_origin",
    "scope_unknown",
    "scope_openid",
    "groups_not_resolved",
    "groups_unchecked",
]
ERROR_KEYS = "oidc.error."
"""Each OidcErrorCode has words under this prefix in every catalogue."""


class OidcClientError(Exception):
    """A client cannot be registered, changed or found as asked.

    ``str()`` is the English sentence the shell prints and the audit trail keeps; ``key`` and ``params`` are the
    same refusal for a page in the reader's language, and ``field`` the form field at fault (None when the
    refusal is about the client as a whole: unknown, or public)."""

    def __init__(self, message: str, code: OidcErrorCode, *, field: OidcField | None = None, **params: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.params = params

    @property
    def key(self) -> str:
        return ERROR_KEYS + self.code


GroupResolver = Callable[[list[str]], list[str]]
"""The allowed groups as typed -> their stored form (GroupRef's, as an SP policy keeps them), or OidcClientError
(field "groups") naming those that are not one security group. Asked last, once every other value is known
good: it may ask AD."""


def unchecked_groups(typed: list[str]) -> list[str]:
    """The groups in GroupRef's stored form without asking AD: a bare name then counts only while it names
    exactly one security group (see ``Person.in_any_group``)."""
    return [str(GroupRef.parse(g)) for g in typed]


def unknown_client(client_id: str) -> OidcClientError:
    return OidcClientError(
        f"no OpenID Connect client {client_id!r} is registered", "unknown_client", client_id=client_id
    )


@dataclass(frozen=True)
class OidcClient:
    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...] = SCOPES
    allowed_groups: tuple[str, ...] = ()
    frontchannel_logout_uri: str | None = None
    """Where the browser tells the client that the session ended (OpenID Connect Front-Channel Logout)."""
    secret_hash: str | None = field(default=None, repr=False)

    @property
    def public(self) -> bool:
        return self.secret_hash is None

    @property
    def entity_id(self) -> str:
        return entity_id_of(self.client_id)

    @property
    def group_labels(self) -> tuple[str, ...]:
        """The allowed groups as people read them: each group's DN (its SID is in the stored form)."""
        return tuple(GroupRef.parse(g).label for g in self.allowed_groups)

    def policy(self) -> SpPolicy:
        """The policy the access decision reads: who may sign in, with the groups in the stored form an SP policy
        holds (so they are matched by SID, as an SP's are); everything SAML-only stays at its default."""
        return SpPolicy(display_name=self.name, allowed_groups=list(self.allowed_groups), idp_initiated=True)

    def secret_matches(self, secret: str) -> bool:
        return self.secret_hash is not None and hmac.compare_digest(self.secret_hash, _digest(secret))


@dataclass(frozen=True)
class NewClient:
    client: OidcClient
    secret: str | None = field(repr=False)
    """Shown to the admin once; None for a public client."""


def entity_id_of(client_id: str) -> str:
    return ENTITY_PREFIX + client_id


def client_id_of(entity_id: str) -> str | None:
    return entity_id.removeprefix(ENTITY_PREFIX) if entity_id.startswith(ENTITY_PREFIX) else None


class ClientStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, client_id: str) -> OidcClient | None:
        with self._db.session() as s:
            row = s.get(OidcClientRow, client_id)
            return _client(row) if row is not None else None

    def all(self) -> list[OidcClient]:
        with self._db.session() as s:
            return [_client(r) for r in s.scalars(select(OidcClientRow).order_by(OidcClientRow.client_id))]

    def add(
        self,
        client_id: str,
        name: str,
        redirect_uris: list[str],
        *,
        public: bool,
        scopes: list[str] | None = None,
        allowed_groups: list[str] | None = None,
        frontchannel_logout_uri: str | None = None,
        resolve_groups: GroupResolver = unchecked_groups,
    ) -> NewClient:
        """Register a client. ``scopes`` None means every scope; an empty list is refused (openid is required)."""
        if not _CLIENT_ID.match(client_id):
            raise OidcClientError(
                f"client id {client_id!r}: use 1 to 64 letters, digits, '.', '_' or '-'",
                "client_id_invalid",
                field="client_id",
                client_id=client_id,
            )
        values = _validated(name, redirect_uris, scopes, allowed_groups, frontchannel_logout_uri, resolve_groups)
        secret = None if public else secrets.token_urlsafe(32)
        row = OidcClientRow(client_id=client_id, secret_hash=_digest(secret) if secret is not None else None, **values)
        with self._db.session() as s:
            if s.get(OidcClientRow, client_id) is not None:
                raise OidcClientError(
                    f"a client {client_id!r} exists already; remove it first to replace it",
                    "client_exists",
                    field="client_id",
                    client_id=client_id,
                )
            s.add(row)
        return NewClient(_client(row), secret)

    def update(
        self,
        client_id: str,
        name: str,
        redirect_uris: list[str],
        *,
        scopes: list[str] | None = None,
        allowed_groups: list[str] | None = None,
        frontchannel_logout_uri: str | None = None,
        resolve_groups: GroupResolver = unchecked_groups,
    ) -> OidcClient:
        """Replace what an admin may change after registration (everything but the id, the kind and the
        secret), checked as at registration."""
        values = _validated(name, redirect_uris, scopes, allowed_groups, frontchannel_logout_uri, resolve_groups)
        with self._db.session() as s:
            row = s.get(OidcClientRow, client_id)
            if row is None:
                raise unknown_client(client_id)
            for key, value in values.items():
                setattr(row, key, value)
            return _client(row)

    def new_secret(self, client_id: str) -> NewClient:
        """A new secret for a confidential client, the old one refused from now on; shown once."""
        secret = secrets.token_urlsafe(32)
        with self._db.session() as s:
            row = s.get(OidcClientRow, client_id)
            if row is None:
                raise unknown_client(client_id)
            if row.secret_hash is None:
                raise OidcClientError(
                    f"client {client_id!r} is public: it has no secret, PKCE proves its codes",
                    "public_client",
                    client_id=client_id,
                    name=row.name,
                )
            row.secret_hash = _digest(secret)
            return NewClient(_client(row), secret)

    def remove(self, client_id: str) -> bool:
        with self._db.session() as s:
            return rowcount(s.execute(delete(OidcClientRow).where(OidcClientRow.client_id == client_id))) > 0


def _validated(
    name: str,
    redirect_uris: list[str],
    scopes: list[str] | None,
    allowed_groups: list[str] | None,
    frontchannel_logout_uri: str | None,
    resolve_groups: GroupResolver,
) -> dict:
    """The row's editable columns, or OidcClientError naming the value that is wrong."""
    if not name.strip():
        raise OidcClientError(
            "the client needs a name (people read it on the login and error pages)", "name_missing", field="name"
        )
    if not redirect_uris:
        raise OidcClientError(
            "the client needs at least one redirect URI", "redirect_uri_missing", field="redirect_uris"
        )
    for uri in redirect_uris:
        _check_uri("redirect_uris", uri)
    # None is "not said": every scope. An empty list was said, and leaves out openid.
    chosen = list(dict.fromkeys(SCOPES if scopes is None else scopes))
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise OidcClientError(
            f"unknown scope {unknown[0]!r}: the scopes are {' '.join(SCOPES)}",
            "scope_unknown",
            field="scopes",
            scope=unknown[0],
            scopes=" ".join(SCOPES),
        )
    if "openid" not in chosen:
        raise OidcClientError("the scopes must include openid", "scope_openid", field="scopes")
    logout_uri = (frontchannel_logout_uri or "").strip() or None
    if logout_uri is not None:
        _check_uri("frontchannel_logout_uri", logout_uri)
        # Front-Channel Logout 1.0 §2: the client proves the address is its own by serving its redirect URIs there.
        origins = sorted({_origin(uri) for uri in redirect_uris})
        if _origin(logout_uri) not in origins:
            raise OidcClientError(
                f"front-channel logout URI {logout_uri!r}: must have the scheme, host and port of a redirect URI "
                f"({', '.join(origins)})",
                "frontchannel_uri_origin",
                field="frontchannel_logout_uri",
                uri=logout_uri,
                origins=", ".join(origins),
            )
    typed = list(dict.fromkeys(g.strip() for g in allowed_groups or [] if g.strip()))
    return {
        "name": name.strip(),
        "redirect_uris": list(redirect_uris),
        "scopes": chosen,
        "allowed_groups": list(dict.fromkeys(resolve_groups(typed))) if typed else [],
        "frontchannel_logout_uri": logout_uri,
    }


_UriField = Literal["redirect_uris", "frontchannel_logout_uri"]
_URI_RULES: dict[_UriField, tuple[str, OidcErrorCode, OidcErrorCode]] = {
    "redirect_uris": ("redirect URI", "redirect_uri_scheme", "redirect_uri_fragment"),
    "frontchannel_logout_uri": ("front-channel logout URI", "frontchannel_uri_scheme", "frontchannel_uri_fragment"),
}
"""The field -> how the English names it, and the codes of its two refusals."""


def _check_uri(field: _UriField, uri: str) -> None:
    what, not_https, fragment = _URI_RULES[field]
    parts = urlsplit(uri)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme not in ("https", "http") or not parts.netloc or (parts.scheme == "http" and not loopback):
        raise OidcClientError(
            f"{what} {uri!r}: must be https:// (http:// only on this machine's loopback)",
            not_https,
            field=field,
            uri=uri,
        )
    if parts.fragment:
        raise OidcClientError(f"{what} {uri!r}: may not have a #fragment", fragment, field=field, uri=uri)


def _origin(uri: str) -> str:
    """scheme://host[:port], the port left out when it is the scheme's own, so equal origins compare equal."""
    parts = urlsplit(uri)
    host = (parts.hostname or "").casefold()
    port = parts.port if parts.port not in (None, {"https": 443, "http": 80}.get(parts.scheme)) else None
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}{'' if port is None else f':{port}'}"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _client(row: OidcClientRow) -> OidcClient:
    return OidcClient(
        client_id=row.client_id,
        name=row.name,
        redirect_uris=tuple(row.redirect_uris),
        scopes=tuple(row.scopes),
        allowed_groups=tuple(row.allowed_groups),
        frontchannel_logout_uri=row.frontchannel_logout_uri,
        secret_hash=row.secret_hash,
    )


class WithOidcClients:
    """An ``SpSource`` that knows the OIDC clients besides the SAML SPs, for the one access decision."""

    def __init__(self, sps: SpSource, clients: ClientStore) -> None:
        self._sps = sps
        self._clients = clients

    def metadata_files(self) -> list[Path]:
        return self._sps.metadata_files()

    def policy_for(self, entity_id: str) -> SpPolicy:
        client_id = client_id_of(entity_id)
        if client_id is None:
            return self._sps.policy_for(entity_id)
        client = self._clients.get(client_id)
        if client is None:  # removed while a sign-in waited at the password page
            return SpPolicy(display_name=client_id, enabled=False)
        return client.policy()

    def metadata_expired(self, entity_id: str) -> datetime | None:
        return None if entity_id.startswith(ENTITY_PREFIX) else self._sps.metadata_expired(entity_id)

    def version(self) -> str:
        return self._sps.version()
