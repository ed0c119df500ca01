"""The services one Flask app (one gunicorn worker) holds, built once in create_app."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from idp.access import AccessDecision
from idp.audit import AuditTrail
from idp.directory.client import Directory
from idp.mfa.factors import Factors
from idp.mfa.passkeys import Passkeys
from idp.oidc.provider import OidcServer
from idp.saml.requests import SamlRequests
from idp.saml.responses import SamlResponses
from idp.saml.server import SamlServer
from idp.settings import Settings
from idp.signin.password_change import PasswordChange
from idp.signin.pipeline import SignIn
from idp.signin.sessions import SsoSessionIndex
from idp.sps.registry import SpRegistry
from idp.store.db import Database
from idp.web.pending import PendingPosts


@dataclass
class Services:
    settings: Settings
    db: Database
    audit: AuditTrail
    registry: SpRegistry
    saml_server: SamlServer
    saml_requests: SamlRequests
    saml_responses: SamlResponses
    access: AccessDecision
    directory: Directory
    signin: SignIn
    sessions: SsoSessionIndex
    pending: PendingPosts
    password: PasswordChange
    factors: Factors
    passkeys: Passkeys
    oidc: OidcServer
    oidc_signin: SignIn
    """The pipeline an OpenID Connect authorization request runs (its steps: idp.web.oidc.oidc_steps)."""


def services() -> Services:
    services: Services = current_app.extensions["idp"]
    return services
