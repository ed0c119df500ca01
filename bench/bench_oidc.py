"""OpenID Connect sign-ins and token refreshes per second, beside SAML SSO-session responses in the same run.

    .venv/bin/python -m bench.bench_oidc [--seconds 3] [--clients 1,4]

The bench environment of bench_sso.py (its own Samba AD DC, `idp serve`, one SAML SP) plus one confidential
OpenID Connect client registered with `idp oidc client add`. For each concurrency, four closed-loop steps, each
client its own person:

- ``saml_sso_session``: the baseline, a browser with a live SSO session gets a signed SAML response;
- ``oidc_sso_session``: the same browser runs the code flow: authorize (PKCE S256, a nonce) -> 302 to the
  callback with a code -> the client exchanges it at the token endpoint (client secret, code verifier);
- ``oidc_password``: the same code flow in an empty cookie jar: the login page and the password first;
- ``oidc_refresh``: the client refreshes its tokens again and again, each time with the refresh token the last
  refresh returned (rotation).

The relying party is Authlib's OAuth 2.0 client. Outside the timed loop, the kept ID tokens are verified against
the JWKS (signature, issuer, audience, nonce, at_hash) and the kept refreshed access tokens introspected.

Prints a table; exits 1 when a request failed or a kept token did not check out.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from rich.table import Table

from bench.bench_sso import (  # the table's cells and the phase lines exactly as bench_sso.py prints them
    check_step,
    closed_step,
    console,
    phase,
    print_machine,
    samba_session,
    table_cells,
)
from bench.environment import BenchEnvironment
from bench.flows import (
    SIGN_IN_USERS,
    AuthnRequests,
    FlowError,
    SsoSessionClient,
    login_form_fields,  # the login form as bench_sso.py reads it: regular expressions, no HTML parser
)
from bench.load import ClientFactory, StepResult
from bench.machine import CpuWitness, cpu_seconds_of, cpu_seconds_of_session
from idp.demo.samba_dc import DemoUser

CLIENT_ID = "bench-app"
REDIRECT_URI = "http://127.0.0.1:9/oidc/callback"
"""Never connected to: the client reads the code from the Location header the IdP answers with."""
SCOPE = "openid profile email groups"
_TIMEOUT = 30
_MAX_REDIRECTS = 8
_META_REFRESH = re.compile(r'<meta http-equiv="refresh" content="\d+;\s*url=([^"]+)"', re.IGNORECASE)


@dataclass(frozen=True)
class RelyingParty:
    """The registered client as its application knows it: credentials and the provider's discovery document."""

    client_id: str
    secret: str
    config: dict[str, Any]

    def client(self) -> OAuth2Client:
        return OAuth2Client(
            self.client_id, self.secret, scope=SCOPE, redirect_uri=REDIRECT_URI, code_challenge_method="S256"
        )


@dataclass(frozen=True)
class CodeFlowSample:
    """A token response from a code exchange and the nonce its authorization request carried."""

    token: dict[str, Any]
    nonce: str


@dataclass(frozen=True)
class AuthorizationRequest:
    url: str
    verifier: str
    nonce: str


def register(env: BenchEnvironment) -> RelyingParty:
    """`idp oidc client add` for a confidential client; its secret is read from the one time it is printed."""
    added = env.idp("oidc", "client", "add", CLIENT_ID, "--name", "Bench App", "--redirect-uri", REDIRECT_URI)
    secret = re.search(r"client secret: (\S+)", added)
    if secret is None:
        raise FlowError(f"`idp oidc client add` printed no secret:\n{added}")
    config = httpx.get(env.base_url + "/.well-known/openid-configuration", timeout=_TIMEOUT).json()
    return RelyingParty(CLIENT_ID, secret[1], config)


class _CodeFlow:
    """A browser (its own cookie jar) and the client application behind the redirect URI (its own connection)."""

    def __init__(self, rp: RelyingParty, user: DemoUser) -> None:
        self._rp, self._user = rp, user
        self._browser = httpx.Client()
        self._app = rp.client()

    def authorization_request(self) -> AuthorizationRequest:
        verifier, nonce = generate_token(48), generate_token(16)
        url, _ = self._app.create_authorization_url(
            self._rp.config["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        return AuthorizationRequest(url, verifier, nonce)

    def sign_in(self, request: AuthorizationRequest) -> CodeFlowSample:
        callback = self._to_callback(request.url)
        token = self._app.fetch_token(
            self._rp.config["token_endpoint"], authorization_response=callback, code_verifier=request.verifier
        )
        return CodeFlowSample(dict(token), request.nonce)

    def _to_callback(self, url: str) -> str:
        """Follow the IdP as a browser does, typing the password when the login form is shown; the callback
        URL with the code."""
        password = self._user.password
        r = self._browser.get(url, timeout=_TIMEOUT)
        for _ in range(_MAX_REDIRECTS):
            if r.status_code in (302, 303):
                target = urljoin(str(r.url), r.headers["location"])
                if target.startswith(REDIRECT_URI):
                    if "code=" not in target:
                        raise FlowError(f"the IdP sent the client an error: {target}")
                    return target
                r = self._browser.get(target, timeout=_TIMEOUT)
            elif r.status_code == 200 and (refresh := _META_REFRESH.search(r.text)):
                # After the posted password the IdP opens the next address with a page of its own (go_on).
                r = self._browser.get(urljoin(str(r.url), html.unescape(refresh[1])), timeout=_TIMEOUT)
            elif r.status_code == 200 and 'name="password"' in r.text and password:
                action, fields = login_form_fields(str(r.url), r.text, None)
                fields.update(username=self._user.username, password=password)
                password = ""  # once: a second form means the password was refused
                r = self._browser.post(action, data=fields, timeout=_TIMEOUT)
            else:
                break
        raise FlowError(f"no code for the client: HTTP {r.status_code} at {r.url}: {' '.join(r.text.split())[:300]}")

    def forget_session(self) -> None:
        self._browser.cookies.clear()


class OidcSessionClient:
    """A browser that signed in once and runs the code flow again and again from its SSO session."""

    def __init__(self, rp: RelyingParty, user: DemoUser) -> None:
        self._flow = _CodeFlow(rp, user)
        self._flow.sign_in(self._flow.authorization_request())

    def prepare(self) -> AuthorizationRequest:
        return self._flow.authorization_request()

    def call(self, request: AuthorizationRequest) -> CodeFlowSample:
        return self._flow.sign_in(request)


class OidcPasswordClient:
    """One person running the code flow again and again, each time in an empty cookie jar (the password)."""

    def __init__(self, rp: RelyingParty, user: DemoUser) -> None:
        self._flow = _CodeFlow(rp, user)

    def prepare(self) -> AuthorizationRequest:
        self._flow.forget_session()
        return self._flow.authorization_request()

    def call(self, request: AuthorizationRequest) -> CodeFlowSample:
        return self._flow.sign_in(request)


class OidcRefreshClient:
    """A client application that signed its person in once and refreshes its tokens again and again."""

    def __init__(self, rp: RelyingParty, user: DemoUser) -> None:
        flow = _CodeFlow(rp, user)
        self._refresh_token = flow.sign_in(flow.authorization_request()).token["refresh_token"]
        self._app, self._endpoint = rp.client(), rp.config["token_endpoint"]

    def prepare(self) -> None:
        return None

    def call(self, _: None) -> dict[str, Any]:
        token = self._app.refresh_token(self._endpoint, refresh_token=self._refresh_token)
        if not token.get("refresh_token") or token["refresh_token"] == self._refresh_token:
            raise FlowError("the refresh did not rotate the refresh token")
        self._refresh_token = token["refresh_token"]
        return dict(token)


def check_id_token(rp: RelyingParty, keys: KeySet, sample: CodeFlowSample) -> str:
    """The client's check of an ID token (signature against the JWKS, issuer, audience, nonce, at_hash);
    its email claim."""
    decoded = jwt.decode(sample.token["id_token"], keys, algorithms=["RS256"])
    claims = CodeIDToken(
        decoded.claims,
        decoded.header,
        options={"iss": {"value": rp.config["issuer"]}, "aud": {"values": [rp.client_id]}},
        params={"nonce": sample.nonce, "access_token": sample.token["access_token"]},
    )
    claims.validate()
    return str(claims["email"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each step (default 3)")
    parser.add_argument("--clients", default="1,4", help="concurrency levels, comma-separated (default 1,4)")
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.clients.split(",") if n.strip()]
    witness = CpuWitness()
    witness.start()
    with BenchEnvironment(log=lambda line: console.print(f"[dim]{line}[/dim]")) as env:
        rp = register(env)
        samba = samba_session(env)
        witness.exclude_session(samba)
        steps, problems = _measure(env, rp, samba, levels, args.seconds)
        machine = witness.report()
    _print(steps)
    print_machine(machine)
    for problem in problems:
        console.print(f"[red]problem:[/red] {problem}")
    return 1 if problems else 0


def _measure(
    env: BenchEnvironment, rp: RelyingParty, samba: int | None, levels: list[int], seconds: float
) -> tuple[list[StepResult], list[str]]:
    assert env.sp is not None
    pids = env.server_pids()
    watch: dict[str, Callable[[], float]] = {"idp": lambda: cpu_seconds_of(pids)}
    if samba is not None:
        watch["samba"] = lambda: cpu_seconds_of_session(samba)
    requests_ = AuthnRequests(env.sp)
    people = SIGN_IN_USERS
    factories: dict[str, ClientFactory] = {
        "saml_sso_session": lambda i: SsoSessionClient(requests_, people[i % len(people)]),
        "oidc_sso_session": lambda i: OidcSessionClient(rp, people[i % len(people)]),
        "oidc_password": lambda i: OidcPasswordClient(rp, people[i % len(people)]),
        "oidc_refresh": lambda i: OidcRefreshClient(rp, people[i % len(people)]),
    }
    keys = KeySet.import_key_set(httpx.get(rp.config["jwks_uri"], timeout=_TIMEOUT).json())
    steps: list[StepResult] = []
    problems: list[str] = []
    for n in levels:
        for name, factory in factories.items():
            step = closed_step(name, name.replace("_", " "), factory, n, seconds, watch)
            steps.append(step)
            if name.startswith("saml"):
                check_step(requests_, step, problems)  # python3-saml validates the kept responses
                continue
            if step.errors:
                problems.append(f"{name} x{n}: {step.errors} failed requests, first: {step.first_error}")
            if not step.samples:
                problems.append(f"{name} x{n}: no token to check")
            with phase(f"checking {len(step.samples)} kept token responses"):
                problems.extend(f"{name} x{n}: {p}" for p in _check_samples(rp, keys, step.samples))
    return steps, problems


def _check_samples(rp: RelyingParty, keys: KeySet, samples: list[Any]) -> list[str]:
    """Outside the timed loop: ID tokens verified by the client library, refreshed access tokens introspected."""
    mails = {u.mail for u in SIGN_IN_USERS}
    usernames = {u.username for u in SIGN_IN_USERS}
    problems: list[str] = []
    with rp.client() as app:
        for sample in samples:
            if isinstance(sample, CodeFlowSample):
                try:
                    email = check_id_token(rp, keys, sample)
                except JoseError as exc:
                    problems.append(f"the ID token does not check out: {exc}")
                    continue
                if email not in mails:
                    problems.append(f"unexpected email claim {email!r}")
            else:
                answer = app.introspect_token(rp.config["introspection_endpoint"], token=sample["access_token"])
                seen = answer.json()
                if not seen.get("active") or seen.get("username") not in usernames:
                    problems.append(f"a refreshed access token is not active: {seen}")
    return problems


def _print(steps: list[StepResult]) -> None:
    table = Table(title="OpenID Connect beside SAML, closed loop")
    table.add_column("step")
    # The columns of table_cells, as bench_sso.py's table has them.
    for column in ("clients", "CPU ms/op gen/idp/dc", "per s", "p50 ms", "p99 ms", "ops", "err"):
        table.add_column(column, justify="right")
    for level in sorted({s.concurrency for s in steps}):
        table.add_section()
        for s in steps:
            if s.concurrency == level:
                table.add_row(s.name, *table_cells(s.as_dict()))
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
