"""create_app(settings): extensions, blueprints, error pages. No business logic."""

from __future__ import annotations

import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path

from cachelib import FileSystemCache, RedisCache
from flask import Flask, Response, render_template, request
from flask_session import Session
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from idp.access import AccessDecision
from idp.audit import AuditTrail
from idp.connectors.alimail import AlimailLogin
from idp.connectors.direct_app import WithDirectApp
from idp.directory.client import Directory
from idp.directory.kerberos import KeytabProblem, NegotiateAcceptor
from idp.directory.password import PasswordChanges
from idp.keys.keyring import Keyring
from idp.keys.material import read_persistent_secret
from idp.mfa.factors import Factors
from idp.mfa.guard import CodeGuard
from idp.mfa.passkeys import Passkeys
from idp.mfa.policy import MfaPolicy
from idp.mfa.sealing import Sealer
from idp.oidc.clients import ClientStore, WithOidcClients
from idp.oidc.provider import OidcServer
from idp.oidc.signing import SigningKeys
from idp.oidc.tokens import TokenStore
from idp.provisioning.jit import JitProvisioner
from idp.saml.requests import SamlRequests
from idp.saml.responses import SamlResponses
from idp.saml.server import SamlServer
from idp.settings import Settings, SettingsError
from idp.signin.password_change import PasswordChange
from idp.signin.pipeline import SignIn, build_steps
from idp.signin.sessions import SsoSessionIndex
from idp.signin.steps import SecondFactor
from idp.signin.throttle import LoginThrottle
from idp.sps.registry import SpRegistry
from idp.sps.scheduler import start_refresher
from idp.store.attempts import AttemptCounters
from idp.store.db import Database
from idp.store.seen import SeenRequests
from idp.web import (
    admin,
    alimail_direct,
    branding,
    errors,
    health,
    launcher,
    login,
    mfa,
    passkeys,
    ratelimit,
    request_log,
    sso,
)
from idp.web.csp import PAGE_POLICY
from idp.web.i18n import current_language, translate, translate_code
from idp.web.oidc import answering_clients, oidc_steps, session_alive
from idp.web.oidc import bp as oidc_bp
from idp.web.password import bp as password_bp
from idp.web.pending import PendingPosts
from idp.web.services import Services
from idp.web.session_store import SessionFileCache, SessionRedisCache
from idp.web.sso_session import current_sso

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> Flask:
    app = Flask(__name__, template_folder="web/templates", static_folder="web/static")
    data_dir = settings.server.data_dir
    # Sessions, the secret key and the SQLite database live here: nobody else on the machine may read them.
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    cache = _session_cache(settings)
    app.config.update(
        SECRET_KEY=_secret_key(settings.server.secret_key_file or data_dir / "secret_key"),
        SESSION_TYPE="cachelib",
        SESSION_CACHELIB=cache,
        SESSION_KEY_PREFIX="session:",
        SESSION_PERMANENT=True,
        # Write the session only when it changes: the SSO session has a fixed lifetime of its own, and an
        # SP that re-asks every minute must not cost a session-store write each time.
        SESSION_REFRESH_EACH_REQUEST=False,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.server.session_lifetime),
        SESSION_COOKIE_NAME="idp_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SECURE=settings.server.is_https,
        SESSION_COOKIE_SAMESITE=settings.server.cookie_samesite,
        WTF_CSRF_TIME_LIMIT=3600,
        WTF_CSRF_SSL_STRICT=False,  # the Referer check breaks behind TLS-terminating proxies; the token suffices
        IDP_DEFAULT_LANGUAGE=settings.server.default_language,
        # Base64 adds a third to a POSTed SAMLRequest; the SAML layer enforces the exact limit itself.
        MAX_CONTENT_LENGTH=4 * settings.idp.max_request_bytes,
    )
    Session(app)
    csrf = CSRFProtect(app)
    csrf.exempt(sso.bp)  # SPs post SAML messages; those are protected by their signatures and InResponseTo
    csrf.exempt(login.login)  # its token lives in a cookie, not the session: see idp.web.login_csrf
    csrf.exempt(password_bp)  # the login form's cookie token, too: the form is shown before any session
    csrf.exempt(oidc_bp)  # clients post to the token endpoints with their own credentials, never a form of ours

    if settings.server.trusted_proxy_count:
        n = settings.server.trusted_proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    svc = app.extensions["idp"] = build_services(settings, cache)
    # First: every request, even one the rate limit ends at once, gets its id and its duration measured.
    request_log.install(app, trust_incoming=settings.server.trusted_proxy_count > 0)
    errors.install(app, trust_incoming_request_id=settings.server.trusted_proxy_count > 0)
    ratelimit.install(app, settings.server.rate_limit_per_minute)
    start_refresher(settings, svc.db, svc.registry, svc.audit)  # metadata URLs, one node at a time
    app.register_blueprint(sso.bp)
    app.register_blueprint(login.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(launcher.bp)
    app.register_blueprint(alimail_direct.bp)
    app.register_blueprint(oidc_bp)
    app.register_blueprint(mfa.bp)
    app.register_blueprint(passkeys.bp)
    app.register_blueprint(password_bp)
    branding.install(app, settings.branding)
    admin.register(app)

    @app.context_processor
    def _i18n() -> dict:
        return {"t": translate, "code_words": translate_code, "lang": current_language()}

    @app.after_request
    def _security_headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        if settings.server.is_https:
            resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return resp

    @app.errorhandler(CSRFError)
    def _csrf(_: CSRFError) -> tuple[str, int]:
        return render_template("error.html", message=translate("error.csrf"), reason="csrf", detail=None), 400

    @app.errorhandler(413)
    def _too_large(_: HTTPException) -> tuple[str, int]:
        limit = app.config["MAX_CONTENT_LENGTH"]
        if request.path.startswith("/admin"):
            # An admin's upload, not an SP's message: say so in the audit trail and on the page.
            sso = current_sso()
            services_of(app).audit.record(
                "admin_upload",
                "refused",
                reason="too_large",
                username=sso.person.username if sso else None,
                ip=request.remote_addr,
                detail=f"{request.path}: body over {limit} bytes",
            )
            message = translate("admin.upload_too_large", limit=str(limit // 1024))
            return render_template("error.html", message=message, reason="too_large", detail=None), 400
        services_of(app).audit.record(
            "saml_request",
            "refused",
            reason="too_large",
            ip=request.remote_addr,
            detail=f"request body over {limit} bytes",
        )
        return render_template("error.html", message=translate("too_large"), reason="too_large", detail=None), 400

    @app.errorhandler(404)
    def _not_found(_: HTTPException) -> tuple[str, int]:
        return render_template("error.html", message=translate("error.not_found"), reason="not_found", detail=None), 404

    return app


def services_of(app: Flask) -> Services:
    return app.extensions["idp"]


def build_services(settings: Settings, cache: FileSystemCache | RedisCache) -> Services:
    db = Database(settings.database_url)
    audit = AuditTrail(db)
    registry = SpRegistry(
        settings.metadata.dir, db, settings.sp_defaults, allow_http_loopback=settings.metadata.allow_http_loopback
    )
    saml_server = SamlServer(settings, registry)
    # Read once: a missing secret stops the process here, not a sign-in later.
    responses = SamlResponses(settings, saml_server, read_persistent_secret(settings.idp.persistent_id_secret_file))
    direct = settings.alimail_direct
    oidc_clients = ClientStore(db)
    sp_source = WithOidcClients(WithDirectApp(registry, direct) if direct else registry, oidc_clients)
    access = AccessDecision(sp_source, saml_server.can_encrypt)
    directory = Directory(settings.ldap)
    provisioning = settings.provisioning
    provisioner = JitProvisioner(provisioning, db, audit) if provisioning is not None and provisioning.jit else None
    sessions = SsoSessionIndex(db, audit)
    counters = AttemptCounters(db)
    factors = Factors(db, Sealer(settings.mfa.key_file))
    passkey_factors = Passkeys(db, settings.server.base_url, settings.mfa.issuer or settings.idp.organization)
    second_factor = SecondFactor(
        MfaPolicy(settings.mfa),
        factors,
        CodeGuard(factors, counters, settings.mfa, passkeys=passkey_factors),
        sp_source,
        responses,
        audit,
        enrol_at_signin=settings.mfa.enrol_at_signin,
    )
    steps = build_steps(
        access=access,
        responses=responses,
        sps=registry,
        directory=directory,
        throttle=LoginThrottle(audit, settings.login, counters),
        ldap=settings.ldap,
        provisioner=provisioner,
        sessions=sessions,
        login=settings.login,
        alimail=AlimailLogin(direct) if direct else None,
        provisioning=settings.provisioning,
        second_factor=second_factor,
        negotiate=negotiate_acceptor(settings),
    )
    return Services(
        settings=settings,
        db=db,
        audit=audit,
        registry=registry,
        saml_server=saml_server,
        saml_requests=SamlRequests(settings, saml_server, registry, SeenRequests(db)),
        saml_responses=responses,
        access=access,
        directory=directory,
        # The web pages that sign a person in finish an OIDC client's waiting sign-in too (idp.web.oidc).
        signin=SignIn(answering_clients(steps), access, audit, sessions, settings.server.session_lifetime, db),
        sessions=sessions,
        pending=PendingPosts(cache),
        password=PasswordChange(
            directory, PasswordChanges(settings.ldap), LoginThrottle(audit, settings.login, AttemptCounters(db)), audit
        ),
        factors=factors,
        passkeys=passkey_factors,
        oidc=OidcServer(
            settings,
            oidc_clients,
            TokenStore(db),
            SigningKeys(Keyring.for_settings(settings)),
            audit,
            session_alive(sessions),
        ),
        oidc_signin=SignIn(oidc_steps(steps), access, audit, sessions, settings.server.session_lifetime, db),
    )


def _session_cache(settings: Settings) -> SessionFileCache | SessionRedisCache:
    if settings.server.session_backend == "redis":
        import redis

        return SessionRedisCache(host=redis.Redis.from_url(settings.server.redis_url), key_prefix="idp:")
    path = settings.server.data_dir / "sessions"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return SessionFileCache(str(path), default_timeout=settings.server.session_lifetime)


def _secret_key(path: Path) -> bytes:
    """The key that signs CSRF tokens. Generated once, shared by every worker (and node, if the file is)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # first writer wins when several workers start at once
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip().encode()


def negotiate_acceptor(settings: Settings) -> NegotiateAcceptor | None:
    """The keytab's acceptor for Windows sign-in; a keytab without the service principal's key stops start-up.
    The principal carries its realm, the AD realm Windows sign-in accepts people of (NegotiateSignIn): the
    Kerberos library then needs no ``default_realm`` of a krb5.conf to know whose key to look up."""
    if settings.kerberos is None:
        return None
    principal = f"{settings.kerberos_principal}@{settings.ldap.realm.upper()}"
    try:
        return NegotiateAcceptor(settings.kerberos.keytab, principal)
    except KeytabProblem as exc:
        raise SettingsError(f"Invalid configuration:\n  kerberos.keytab: {exc}") from None
