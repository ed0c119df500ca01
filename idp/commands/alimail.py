"""`idp alimail test [--domain DOMAIN]`: can the IdP sign people straight into Alibaba Mail with these settings?"""

from __future__ import annotations

import click

from idp.cli import settings_from
from idp.codes import DirectLoginReason
from idp.connectors.alimail_check import BadMailDomain, check_connection, default_mail_domain, secret_readable
from idp.connectors.direct_app import ENTITY_ID

WORDS: dict[DirectLoginReason, str] = {
    "alimail_app_rejected": "Alibaba Mail refused the app: check app_code, the Secret in app_secret_file and how "
    "requests are signed (auth, sign_algorithm).",
    "alimail_login_not_permitted": "The app may not sign people in: grant it User.Login.All and ask Alibaba Mail "
    "support to switch on the logon API.",
    "alimail_mailbox_unknown": "Alibaba Mail knows no such mailbox, so it accepted the app.",
    "alimail_mailbox_frozen": "Alibaba Mail answered about a frozen mailbox, not about the app: try again.",
    "alimail_rate_limited": "Alibaba Mail is limiting requests: try again in a minute.",
    "alimail_unavailable": "Alibaba Mail could not be reached or did not answer in time: check host and the network.",
    "alimail_login_rejected": "Alibaba Mail refused the request or answered in an unexpected way: check "
    "[alimail_direct] against the app's integration notes from Alibaba.",
}
"""What each refusal means to the admin; the error's own sentence follows it."""


@click.group()
def alimail() -> None:
    """Alibaba Mail (direct): signing people straight into the mailbox through its logon API."""


@alimail.command("test")
@click.option(
    "--domain",
    default=None,
    help="Mail domain of the probe address (default: the provisioning mail domain).",
)
@click.pass_context
def test(ctx: click.Context, domain: str | None) -> None:
    """Ask the logon API for an address no mailbox has: proves the App ID, the Secret, the signature and the
    permission, and signs nobody in. Exit 0 when the connection works, 1 when it does not."""
    settings = settings_from(ctx)
    direct = settings.alimail_direct
    if direct is None:
        raise click.ClickException("Alibaba Mail (direct) is not set up: add [alimail_direct] to the configuration")
    domain = domain or default_mail_domain(settings.provisioning)
    if not domain:
        raise click.UsageError("no mail domain to test with: pass --domain (no [provisioning] mail domain is set)")
    click.echo(f"Alibaba Mail (direct) {ENTITY_ID}")
    click.echo(f"  logon server  {direct.host}")
    click.echo(f"  App ID        {direct.app_code}")
    readable = "readable" if secret_readable(direct) else "CANNOT BE READ"
    click.echo(f"  Secret file   {direct.app_secret_file} ({readable})")
    click.echo(f"  allowed groups {', '.join(direct.allowed_groups) or '(everyone)'} (allowed_groups in the file)")
    try:
        result = check_connection(direct, domain)
    except BadMailDomain as exc:
        raise click.UsageError(str(exc)) from None
    if result.reason is None:
        click.echo(f"The connection works: Alibaba Mail accepted the app for {domain}.")
        return
    click.echo(f"NOT usable: {WORDS[result.reason]}", err=True)
    click.echo(f"  ({result.detail})", err=True)
    ctx.exit(1)
