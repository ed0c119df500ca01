"""The OpenID Connect provider: Authlib's authorization server with our clients, codes, tokens and keys.

Only the authorization code flow, and only with PKCE S256 (``plain`` and a missing challenge are refused;
the implicit and hybrid flows are not registered, so ``response_type=token`` is unsupported). ID tokens are
RS256, signed by the SAML keyring's active key. Refresh tokens rotate: each refresh returns a new one, and a
refresh token presented twice revokes its whole family. Authlib does every check and all token crypto; this
module says where things are kept and what is audited.

ID tokens carry ``sid`` (OpenID Connect Front-Channel Logout): the SSO session's SessionIndex, the one value
that already names the session everywhere (SAML SPs get it as SessionIndex, the live session index and the
console list it, every token stores it). It is random, opaque, shared by every client of the session (each
gets the same ``sub`` already, so it links nothing new) and no credential: holding it signs nobody in. The
logout page hands it back to each client with ``iss``, so a client finds the session to end even when the
browser sends its frame no cookie.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Request, TokenMixin
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant, RefreshTokenGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import AuthorizationCodeMixin, OpenIDCode, UserInfo, UserInfoEndpoint
from flask import request as http_request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from idp.audit import AuditTrail
from idp.oidc.claims import released
from idp.oidc.clients import SCOPES, ClientStore, OidcClient
from idp.oidc.signing import SigningKeys
from idp.oidc.tokens import StoredCode, StoredToken, Subject, TokenStore
from idp.settings import Settings

# Authlib's debug lines print whole token responses (access, refresh and ID tokens): never, at any [log] level.
logging.getLogger("authlib").setLevel(logging.INFO)

_SECRET_AUTH = ["client_secret_basic", "client_secret_post"]
_ANY_AUTH = [*_SECRET_AUTH, "none"]


class InvalidHint(Exception):
    """An end-session request's id_token_hint is not an ID token we issued."""


class Client(ClientMixin):
    def __init__(self, client: OidcClient) -> None:
        self.client = client
        self.client_id = client.client_id
        self.client_metadata: dict = {}

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None  # every request names its redirect_uri, which must match one registered exactly

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in self.client.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.client.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client.secret_matches(client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none" if self.client.public else method in _SECRET_AUTH

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


class Code(AuthorizationCodeMixin):
    def __init__(self, stored: StoredCode) -> None:
        self.stored = stored
        self.code_challenge = stored.code_challenge
        self.code_challenge_method = stored.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.stored.redirect_uri

    def get_scope(self) -> str:
        return self.stored.scope

    def get_nonce(self) -> str | None:
        return self.stored.nonce

    def get_auth_time(self) -> int:
        return self.stored.subject.auth_time


class Token(TokenMixin):
    """A stored token as Authlib sees it, looked up by its access or its refresh token (``kind``)."""

    def __init__(self, stored: StoredToken, kind: str, client: OidcClient | None) -> None:
        self.stored = stored
        self.kind = kind
        self.scope = stored.scope
        self._client = client

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.stored.client_id

    def get_scope(self) -> str:
        return self.stored.scope

    def get_expires_in(self) -> int:
        end = self.stored.access_expires_at if self.kind == "access" else self.stored.refresh_expires_at
        return int(end.timestamp() - self.stored.issued_at.timestamp()) if end else 0

    def is_expired(self) -> bool:
        return self.stored.access_expired() if self.kind == "access" else self.stored.refresh_expired()

    def is_revoked(self) -> bool:
        return self.stored.revoked or (self.kind == "refresh" and self.stored.refresh_used)

    def get_user(self) -> Subject:
        return self.stored.subject

    def get_client(self) -> Client | None:
        return Client(self._client) if self._client is not None else None


class S256Only(CodeChallenge):
    """PKCE on every authorization request, and only S256: ``plain`` sends the verifier itself."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: AuthorizationCodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("only code_challenge_method=S256 is accepted")
        super().validate_code_challenge(grant, redirect_uri)


class CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = _ANY_AUTH
    server: OidcServer

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        payload = request.payload
        subject: Subject = request.user
        client: Client = request.client
        stored = StoredCode(
            client_id=client.client_id,
            redirect_uri=payload.redirect_uri,
            scope=client.get_allowed_scope(payload.scope or ""),
            nonce=payload.data.get("nonce"),
            code_challenge=payload.data["code_challenge"],
            code_challenge_method=payload.data["code_challenge_method"],
            subject=subject,
        )
        self.server.tokens.save_code(code, stored, self.server.settings.oidc.code_lifetime)
        self.server.audit.record(
            "oidc_code_issued",
            "success",
            username=subject.username,
            sp=client.client.entity_id,
            ip=http_request.remote_addr,
            detail=stored.scope,
        )

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        stored = self.server.tokens.take_code(code, client.client_id)
        return Code(stored) if stored is not None else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        """Nothing left to do: query_authorization_code took the code."""

    def authenticate_user(self, authorization_code: Code) -> Subject:
        return authorization_code.stored.subject


class RefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = _ANY_AUTH
    INCLUDE_NEW_REFRESH_TOKEN = True
    server: OidcServer

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        tokens = self.server.tokens
        stored = tokens.by_refresh_token(refresh_token)
        client: Client = self.request.client
        if stored is None or stored.client_id != client.client_id:
            return None
        if not self.server.session_alive(stored.subject):
            tokens.revoke_family(stored.family)  # signed out or revoked: the grant ends with the session
            return None
        asked = set((self.request.payload.scope or "").split())
        if not asked <= set(stored.scope.split()):
            return Token(stored, "refresh", client.client)  # not taken: Authlib answers invalid_scope
        taken = tokens.take_refresh(stored)
        if taken == "reused":
            self.server.audit.record(
                "oidc_refresh_reused",
                "refused",
                username=stored.subject.username,
                sp=client.client.entity_id,
                ip=http_request.remote_addr,
                detail="a refresh token was used twice; every token of its family is revoked",
            )
        return Token(stored, "refresh", client.client) if taken == "ok" else None

    def authenticate_user(self, refresh_token: Token) -> Subject:
        return refresh_token.stored.subject

    def revoke_old_credential(self, refresh_token: Token) -> None:
        """Nothing left to do: authenticate_refresh_token took the token."""


class IdToken(OpenIDCode):
    def __init__(self, server: OidcServer) -> None:
        super().__init__(require_nonce=False)
        self._server = server

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return False  # a nonce protects the client from a replayed ID token: the client compares it

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self._server.keys.active()

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict:
        return {"alg": "RS256", "kid": self._server.keys.active().kid}

    def get_authorization_code_claims(self, authorization_code: Code) -> dict:
        claims: dict = super().get_authorization_code_claims(authorization_code)
        claims["sid"] = authorization_code.stored.subject.session_index
        return claims

    def get_client_claims(self, client: Client) -> dict:
        lifetime = self._server.settings.oidc.id_token_lifetime
        return {"iss": self._server.issuer, "aud": [client.client_id], "exp": int(time.time()) + lifetime}

    def generate_user_info(self, user: Subject, scope: str) -> UserInfo:
        return UserInfo(released(user.claims, scope))


class UserInfoAnswer(UserInfoEndpoint):
    server: OidcServer

    def get_issuer(self) -> str:
        return self.server.issuer

    def generate_user_info(self, user: Subject, scope: str) -> UserInfo:
        return UserInfo(released(user.claims, scope))

    def resolve_private_key(self) -> RSAKey:
        return self.server.keys.active()


class _TokenLookup:
    server: OidcServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        refresh_first = (token_type_hint or "").startswith("refresh")
        kinds = ["refresh", "access"] if refresh_first else ["access", "refresh"]
        for kind in kinds:
            token = self.server.token(token_string, kind)
            if token is not None:
                return token
        return None


class Revocation(_TokenLookup, RevocationEndpoint):
    CLIENT_AUTH_METHODS = _ANY_AUTH

    def revoke_token(self, token: Token, request: OAuth2Request) -> None:
        # A refresh token stands for the whole grant (RFC 7009 §2.1): every token refreshed from it goes too.
        if token.kind == "refresh":
            self.server.tokens.revoke_family(token.stored.family)
        else:
            self.server.tokens.revoke(token.stored)


class Introspection(_TokenLookup, IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = _SECRET_AUTH

    def check_permission(self, token: Token, client: Client, request: OAuth2Request) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: Token) -> dict:
        stored = token.stored
        end = stored.access_expires_at if token.kind == "access" else stored.refresh_expires_at
        return {
            "active": True,
            "client_id": stored.client_id,
            "token_type": "Bearer" if token.kind == "access" else "refresh_token",
            "scope": stored.scope,
            "sub": stored.subject.claims.get("sub"),
            "username": stored.subject.username,
            "iss": self.server.issuer,
            "iat": int(stored.issued_at.timestamp()),
            "exp": int(end.timestamp()) if end else None,
        }


class Bearer(BearerTokenValidator):
    def __init__(self, server: OidcServer) -> None:
        super().__init__()
        self._server = server

    def authenticate_token(self, token_string: str) -> Token | None:
        token = self._server.token(token_string, "access")
        if token is None or not self._server.session_alive(token.stored.subject):
            return None
        return token


@dataclass(frozen=True)
class Endpoints:
    """Where the web layer serves each endpoint, for the discovery document."""

    authorization: str
    token: str
    userinfo: str
    jwks: str
    revocation: str
    introspection: str
    end_session: str


class OidcServer(AuthorizationServer):
    def __init__(
        self,
        settings: Settings,
        clients: ClientStore,
        tokens: TokenStore,
        keys: SigningKeys,
        audit: AuditTrail,
        session_alive: Callable[[Subject], bool],
    ) -> None:
        """``session_alive``: whether the SSO session a token was issued in is still live (not signed out,
        revoked or expired); a token is worth no more than the session it came from."""
        super().__init__(query_client=self._query_client, save_token=self._save_token)
        self.session_alive = session_alive
        self.settings = settings
        self.issuer = settings.oidc_issuer
        self.clients = clients
        self.tokens = tokens
        self.keys = keys
        self.audit = audit
        self.scopes_supported = list(SCOPES)
        self.register_token_generator(
            "default",
            BearerTokenGenerator(
                access_token_generator=_random_token,
                refresh_token_generator=_random_token,
                expires_generator=lambda client, grant_type: settings.oidc.access_token_lifetime,
            ),
        )
        self.register_grant(CodeGrant, [S256Only(required=True), IdToken(self)])
        self.register_grant(RefreshGrant)
        self.register_endpoint(Revocation)
        self.register_endpoint(Introspection)
        protector = ResourceProtector()
        protector.register_token_validator(Bearer(self))
        self.register_endpoint(UserInfoAnswer(resource_protector=protector))

    def token(self, token_string: str, kind: str) -> Token | None:
        lookup = self.tokens.by_access_token if kind == "access" else self.tokens.by_refresh_token
        stored = lookup(token_string)
        client = self.clients.get(stored.client_id) if stored is not None else None
        if stored is None or client is None:  # a removed client's tokens are worth nothing
            return None
        return Token(stored, kind, client)

    def discovery(self, endpoints: Endpoints) -> dict:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": endpoints.authorization,
            "token_endpoint": endpoints.token,
            "userinfo_endpoint": endpoints.userinfo,
            "jwks_uri": endpoints.jwks,
            "revocation_endpoint": endpoints.revocation,
            "introspection_endpoint": endpoints.introspection,
            "end_session_endpoint": endpoints.end_session,
            "scopes_supported": list(SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": _ANY_AUTH,
            "revocation_endpoint_auth_methods_supported": _ANY_AUTH,
            "introspection_endpoint_auth_methods_supported": _SECRET_AUTH,
            "code_challenge_methods_supported": ["S256"],
            "frontchannel_logout_supported": True,
            "frontchannel_logout_session_supported": True,
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "sid",
                "name",
                "given_name",
                "family_name",
                "preferred_username",
                "email",
                "email_verified",
                "groups",
            ],
            "prompt_values_supported": ["none"],
        }

    def id_token_hint(self, id_token: str) -> dict:
        """The claims of an ID token we issued (its signature checked against our JWKS; it may have expired,
        as a logout's hint often has). Raises InvalidHint for anything else."""
        try:
            claims = jwt.decode(id_token, self.keys.verifying_keys(), algorithms=["RS256"]).claims
        except (JoseError, ValueError) as exc:
            raise InvalidHint(f"id_token_hint is not an ID token of ours: {type(exc).__name__}") from None
        if claims.get("iss") != self.issuer:
            raise InvalidHint("id_token_hint was issued by another provider")
        return claims

    def _query_client(self, client_id: str) -> Client | None:
        client = self.clients.get(client_id)
        return Client(client) if client is not None else None

    def _save_token(self, token: dict, request: OAuth2Request) -> None:
        subject: Subject = request.user
        client: Client = request.client
        refreshed = request.payload.grant_type == "refresh_token"
        family = request.refresh_token.stored.family if refreshed else None
        self.tokens.save_token(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            client_id=client.client_id,
            scope=token.get("scope", ""),
            subject=subject,
            access_lifetime=self.settings.oidc.access_token_lifetime,
            refresh_lifetime=self.settings.oidc.refresh_token_lifetime,
            family=family,
        )
        self.audit.record(
            "oidc_token_issued",
            "success",
            username=subject.username,
            sp=client.client.entity_id,
            ip=http_request.remote_addr,
            detail=request.payload.grant_type,
        )


def _random_token(*_: object, **__: object) -> str:
    return secrets.token_urlsafe(32)
