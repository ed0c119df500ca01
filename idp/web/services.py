"""The services one Flask app (one gunicorn worker) holds, built once in create_app."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from idp.audit import AuditTrail
from idp.directory.client import Directory
from idp.saml.idp import SamlIdp
from idp.settings import Settings
from idp.signin import SignInPipeline
from idp.sps.registry import SpRegistry
from idp.store.db import Database
from idp.web.pending import PendingPosts


@dataclass
class Services:
    settings: Settings
    db: Database
    audit: AuditTrail
    registry: SpRegistry
    saml: SamlIdp
    directory: Directory
    signin: SignInPipeline
    pending: PendingPosts


def services() -> Services:
    return current_app.extensions["idp"]
