""" "Test connection" for Alibaba Mail (direct), shared by the console and `idp alimail test`.

The check is ``AlimailLogin.check``: a logon request for an address no mailbox has, which issues nothing.
Its outcome is one reason code (the ``LoginError``'s, or ``usable``) that both front ends turn into words,
and the error's own sentence, which never carries the Secret or a login URL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import cast, get_args

from idp.codes import DirectLoginReason
from idp.connectors.alimail import AlimailLogin, LoginError
from idp.mail_address import mail_domains
from idp.settings import AlimailDirectSettings, ProvisioningSettings

_REASONS = frozenset(get_args(DirectLoginReason))
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class BadMailDomain(ValueError):
    """The mail domain to probe is missing or is not a domain name."""


@dataclass(frozen=True)
class CheckResult:
    reason: DirectLoginReason | None
    """None when Alibaba Mail accepted the app, its Secret, the signature and the permission."""
    detail: str | None
    """The error's sentence (English, for the audit row and the admin who reads on)."""

    @property
    def ok(self) -> bool:
        return self.reason is None


def default_mail_domain(provisioning: ProvisioningSettings | None) -> str:
    """The provider's own mail domain, when ``[provisioning]`` names one; empty otherwise."""
    domains = mail_domains(provisioning)
    return domains[0] if domains else ""


def secret_readable(settings: AlimailDirectSettings) -> bool:
    """Whether the Secret's file can be read by this process (its content is never shown)."""
    path = settings.app_secret_file
    return path.is_file() and os.access(path, os.R_OK)


def check_connection(settings: AlimailDirectSettings, mail_domain: str) -> CheckResult:
    """Ask Alibaba Mail's logon API about an address of ``mail_domain`` that no mailbox has."""
    domain = mail_domain.strip().lower()
    if not _DOMAIN.match(domain):
        raise BadMailDomain(f"{mail_domain!r} is not a mail domain (e.g. company.com)")
    try:
        with AlimailLogin(settings) as login:
            login.check(domain)
    except LoginError as exc:
        known = exc.reason in _REASONS
        return CheckResult(cast(DirectLoginReason, exc.reason) if known else "alimail_login_rejected", exc.message)
    except OSError as exc:
        return CheckResult("alimail_app_rejected", f"the Secret cannot be read from {settings.app_secret_file} ({exc})")
    return CheckResult(None, None)
