"""Direct sign-ins to Alibaba Mail per second, beside SAML sign-ins measured in the same run.

    .venv/bin/python -m bench.bench_alimail [--seconds 3] [--clients 1,4]

The bench environment of bench_sso.py (its own Samba AD DC, `idp serve`, one SAML SP) plus the Alibaba
Mail emulator in this process, and ``[alimail_direct]`` pointing at it. Each mailbox is made once by
`idp sync` before the timed steps, and JIT is off, so a direct sign-in costs what the connector costs:
the pipeline and one signed logon request. For each concurrency, four closed-loop steps: with a live SSO
session, a SAML response and a direct sign-in (``GET /apps/alimail`` -> 303 to the one-time login URL);
with a password in an empty cookie jar, the same two. The kept login URLs are then opened in webmail.

Prints a table; exits 1 when a request failed or a kept login URL did not open the mailbox.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.environment import BenchEnvironment
from bench.flows import (
    SIGN_IN_USERS,
    AuthnRequests,
    FlowError,
    PasswordLoginClient,
    SsoSessionClient,
    login_form_fields,  # the login form as bench_sso.py reads it: regular expressions, no HTML parser
)
from bench.load import ClientFactory, StepResult, run_step
from bench.machine import cpu_seconds_of
from idp.demo.alimail_emulator import RunningEmulator, run_emulator
from idp.settings import render_toml

MAIL_DOMAIN = "corp.example.com"
"""The benchmark DC's realm: every sign-in person's AD mail address is in it."""
_MAX_OPS_PER_CLIENT = 3000
_TIMEOUT = 30

console = Console(width=max(150, Console().width))


class DirectAppEnvironment(BenchEnvironment):
    """The bench environment with ``[alimail_direct]`` and ``[provisioning]`` pointing at the emulator."""

    def __init__(self, emulator: RunningEmulator, **options: Any) -> None:
        super().__init__(**options)
        self._emulator = emulator

    def idp(self, *args: str) -> str:
        # `keys init` is the first command after the environment wrote its configuration and before
        # gunicorn reads it: the one moment the sections can be added without restarting the IdP.
        if args == ("keys", "init"):
            self._add_direct_app()
        return super().idp(*args)

    def _add_direct_app(self) -> None:
        emu, secret = self._emulator.emulator, self.root / "alimail-login.secret"
        secret.write_text(emu.login_app_secret + "\n")
        sections = {
            "provisioning": {"provider": "alimail", "jit": False},
            "provisioning.alimail": {
                "host": self._emulator.url,
                "client_id": emu.client_id,
                "client_secret": emu.client_secret,
                "mail_domain": emu.mail_domain,
                "rate_per_second": 1000,
            },
            "alimail_direct": {"host": self._emulator.url, "app_code": emu.login_app_code, "app_secret_file": secret},
        }
        with self.config_file.open("a") as config:
            config.write("\n" + render_toml(sections))


class DirectSessionClient:
    """A browser that signed in once at /apps/alimail and opens it again and again: no password, no LDAP."""

    def __init__(self, base_url: str, webmail: str, user: Any) -> None:
        self._url, self._webmail = base_url + "/apps/alimail", webmail
        self._http = httpx.Client()
        password_sign_in(self._http, self._url, self._webmail, user)

    def prepare(self) -> None:
        return None

    def call(self, _: None) -> str:
        return login_url(self._http.get(self._url, timeout=_TIMEOUT), self._webmail)


class DirectPasswordClient:
    """One person signing in at /apps/alimail again and again, each time with an empty cookie jar."""

    def __init__(self, base_url: str, webmail: str, user: Any) -> None:
        self._url, self._webmail, self._user = base_url + "/apps/alimail", webmail, user
        self._http = httpx.Client()

    def prepare(self) -> None:
        self._http.cookies.clear()

    def call(self, _: None) -> str:
        return password_sign_in(self._http, self._url, self._webmail, self._user)


def password_sign_in(http: httpx.Client, url: str, webmail: str, user: Any) -> str:
    """/apps/alimail -> login page -> password -> 303 to the one-time login URL (not followed)."""
    page = http.get(url, follow_redirects=True, timeout=_TIMEOUT)
    if page.status_code != 200:
        raise FlowError(f"login page: HTTP {page.status_code} at {page.url}")
    action, fields = login_form_fields(str(page.url), page.text, None)
    fields.update(username=user.username, password=user.password)
    answer = http.post(action, data=fields, timeout=_TIMEOUT)
    return login_url(answer, webmail)


def login_url(r: httpx.Response, webmail: str) -> str:
    location = r.headers.get("Location", "")
    if r.status_code != 303 or not location.startswith(webmail):
        raise FlowError(f"expected a 303 to {webmail}, got HTTP {r.status_code} to {location or '-'}")
    return location


def opens_webmail(url: str) -> bool:
    """The login URL, used once, as the browser would: the emulator's webmail must show the inbox."""
    with httpx.Client(follow_redirects=True) as browser:
        page = browser.get(url, timeout=_TIMEOUT)
    return page.status_code == 200 and page.url.path == "/webmail/"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each step (default 3)")
    parser.add_argument("--clients", default="1,4", help="concurrency levels, comma-separated (default 1,4)")
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.clients.split(",")]
    with (
        run_emulator(mail_domain=MAIL_DOMAIN, rate_limit=None) as emulator,
        DirectAppEnvironment(emulator, log=lambda line: console.print(f"[dim]{line}[/dim]")) as env,
    ):
        env.idp("sync", "--force")  # every person's mailbox, before anything is timed
        steps, problems = _measure(env, emulator.url + "/webmail/sso", levels, args.seconds)
    _print(steps)
    for problem in problems:
        console.print(f"[red]{problem}[/red]")
    return 1 if problems else 0


def _measure(
    env: BenchEnvironment, webmail: str, levels: list[int], seconds: float
) -> tuple[list[StepResult], list[str]]:
    assert env.sp is not None
    pids = env.server_pids()
    watch: dict[str, Callable[[], float]] = {"idp": lambda: cpu_seconds_of(pids)}
    requests_ = AuthnRequests(env.sp)
    people = SIGN_IN_USERS

    def factories() -> dict[str, ClientFactory]:
        return {
            "saml_sso_session": lambda i: SsoSessionClient(requests_, people[i % len(people)]),
            "direct_sso_session": lambda i: DirectSessionClient(env.base_url, webmail, people[i % len(people)]),
            "saml_password": lambda i: PasswordLoginClient(requests_, people[i % len(people)]),
            "direct_password": lambda i: DirectPasswordClient(env.base_url, webmail, people[i % len(people)]),
        }

    steps: list[StepResult] = []
    problems: list[str] = []
    for n in levels:
        for name, factory in factories().items():
            console.print(f"[dim]{name}, {n} client(s) ...[/dim]")
            step = run_step(name, factory, n, seconds=seconds, max_ops_per_client=_MAX_OPS_PER_CLIENT, watch_cpu=watch)
            steps.append(step)
            if step.errors:
                problems.append(f"{name} x{n}: {step.errors} errors, first: {step.first_error}")
            if name.startswith("direct") and not (step.samples and all(opens_webmail(u) for u in step.samples)):
                problems.append(f"{name} x{n}: a login URL did not open the mailbox")
    return steps, problems


def _print(steps: list[StepResult]) -> None:
    table = Table(title="Alibaba Mail (direct) beside SAML, closed loop")
    for column in ("step", "clients", "IdP CPU ms/op", "per second", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for s in steps:
        p50, p99 = s.percentile_ms(0.5), s.percentile_ms(0.99)
        table.add_row(
            s.name,
            str(s.concurrency),
            f"{s.cpu_ms('idp'):.2f}",
            f"{s.per_second:.1f}",
            f"{p50:.1f}" if p50 is not None else "-",
            f"{p99:.1f}" if p99 is not None else "-",
            str(s.errors),
        )
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
