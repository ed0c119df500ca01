"""Sign a person straight into Alibaba Mail: ask its logon API for a one-time login URL, send the browser there.

What is public, and where it is written (read 2026-12-01):

- The API Open Platform (admin console: Advanced Features > API Open Platform > Add App) manages, among
  other things, "logon and logoff"; an app gets an App ID and a Secret and the permissions ticked for it.
  https://www.alibabacloud.com/help/en/alibaba-mail/latest/open-api-platform
- The permission for signing users in is ``User.Login.All``. The logon ("single sign-on") API must first be
  enabled by Alibaba Mail's customer service; it is offered to enterprise-edition customers (not the
  pay-as-you-go edition) with 500 or more accounts. https://www.volcengine.com/docs/6427/1231585
- Identity products configure three things for it: the server URL, ``https://mailsso.mxhichina.com`` for the
  SaaS edition and the server's own URL for an on-premises one; the App ID, which they call "App Code"; the
  Secret; optionally a redirect URL.
  https://docs.byteplus.com/en/docs/sealsuite/docs-alimail-x-sealsuite-custom-sso
- One of them (Bamboo Cloud IDaaS) also asks customers to mail Alibaba Mail's support with the company's
  domain and the IdP's egress IP address, and names the redirect address "the address to enter after
  logging into Alibaba Mail"; employees enter the mailbox from the IdP's portal, or type their address
  and IdP password on Alibaba Mail's own login page.
  https://open.bccastle.com/en/app_integration/authentication/alimail.html
- Handing the login page's address to a third-party IdP is documented only as "OAuth 2.0 identity
  authentication", in the AI Premium Edition: Alibaba Mail is the OAuth 2.0 client (authorization code
  grant, RFC 6749, with PKCE, RFC 7636) of the enterprise IdP. That is our OIDC front end's job, not this
  module's. https://help.aliyun.com/en/document_detail/2937171.html
- Regional Open API hosts (``alimail-{sg,hk,de,us}.aliyuncs.com``) and the token at ``/oauth2/v2.0/token``:
  https://www.alibabacloud.com/help/tc/alibaba-mail/latest/api-access-server-address
- Login URLs on ``mailsso.mxhichina.com`` seen in public scripts carry ``app_code``, ``redirect_url`` and a
  ``sign`` of 32 hex digits (an MD5's length).

Not public: the logon operation's path and method, the name of the parameter that names the user, the
timestamp's form, how ``sign`` is computed, the answer's fields, the URL's lifetime and the error codes.
Each is a key of ``[alimail_direct]`` (``idp/settings.py``) whose default is our choice, listed in
``idp/connectors/alimail_contract.py``; Alibaba's integration notes for the app fill them in.

What we do, whatever the contract: one POST (form-encoded) per sign-in, with timeouts. Nothing that may have
reached the server is sent again: a second request would issue a second login URL, so only a connection
that could not be made is tried again (``connect_attempts``). With ``auth = "token"`` an access token
refused with 401 is renewed once and the request repeated: a refused request issued nothing. A slow answer
whose URL would already be past ``url_lifetime`` is not used. Every refusal is a ``LoginError`` subclass
whose message says what to do; none carries the Secret, the token or the login URL.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from idp.connectors.alimail_contract import ERROR_CODES, signature
from idp.provisioning.alimail import TokenCache
from idp.settings import AlimailDirectSettings

log = logging.getLogger(__name__)


class LoginError(Exception):
    """Alibaba Mail did not give a login URL; ``reason`` is the audit code, the message says what to do."""

    reason = "alimail_login_failed"

    def __init__(self, message: str, *, code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.status = message, code, status


class AppCredentialsRejected(LoginError):
    reason = "alimail_app_rejected"


class LoginNotPermitted(LoginError):
    reason = "alimail_login_not_permitted"


class MailboxUnknown(LoginError):
    reason = "alimail_mailbox_unknown"


class MailboxFrozen(LoginError):
    reason = "alimail_mailbox_frozen"


class LoginRateLimited(LoginError):
    reason = "alimail_rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, code: str = "") -> None:
        super().__init__(message, code=code, status=429)
        self.retry_after = retry_after


class LoginUnavailable(LoginError):
    reason = "alimail_unavailable"


class LoginRejected(LoginError):
    """Any other refusal, or an answer outside the contract: the configured contract is likely wrong."""

    reason = "alimail_login_rejected"


@dataclass(frozen=True)
class LoginUrl:
    url: str
    expires_at: float
    """On the adapter's clock (monotonic by default)."""


def _error_body(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return "", response.text.strip()[:200] or response.reason_phrase
    code = str(body.get("detailErrorCode") or body.get("code") or body.get("error") or "")
    return code, str(body.get("message") or body.get("error_description") or response.reason_phrase)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class AlimailLogin:
    """One-time login URLs for the mailboxes of one Alibaba Mail organisation."""

    def __init__(self, settings: AlimailDirectSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._http = httpx.Client(
            base_url=settings.host,
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            headers={"User-Agent": "ad-sso-bridge", "Accept": "application/json"},
        )
        self._tokens = TokenCache(self._fetch_token, clock)

    def login_url(self, email: str) -> LoginUrl:
        """A one-time URL that signs ``email`` into webmail; a ``LoginError`` says why there is none."""
        started = self._clock()
        params = self._params(email)
        if self.settings.auth == "sign":
            response = self._post(self.settings.login_path, params, {})
        else:
            token = self._tokens.get()
            response = self._post(self.settings.login_path, params, {"Authorization": f"bearer {token}"})
            if response.status_code == 401:
                log.info("Alibaba Mail logon: access token refused, renewing it")
                self._tokens.invalidate(token)
                token = self._tokens.get()
                response = self._post(self.settings.login_path, params, {"Authorization": f"bearer {token}"})
        self._raise_for_status(response, email)
        return self._login_url(response, started)

    def check(self, mail_domain: str) -> None:
        """Prove the settings with a harmless call: a logon request for an address no mailbox has. "No such
        mailbox" means the app, its Secret, the signature and the permission were all accepted; any other
        refusal raises its ``LoginError``."""
        probe = f"ad-sso-bridge-check-{secrets.token_hex(4)}@{mail_domain}"
        try:
            self.login_url(probe)
        except MailboxUnknown:
            return
        raise LoginRejected(f"Alibaba Mail issued a login URL for {probe}, which should not exist; check email_param")

    def _params(self, email: str) -> dict[str, str]:
        s = self.settings
        params = {s.email_param: email}
        if s.landing_url:
            params[s.redirect_param] = s.landing_url
        if s.auth == "sign":
            params[s.app_code_param] = s.app_code
            params[s.timestamp_param] = str(int(time.time() * 1000))
            params[s.sign_param] = signature(params, s.secret(), s.sign_algorithm)
        return params

    def _post(self, path: str, data: dict[str, str], headers: dict[str, str]) -> httpx.Response:
        host = self.settings.host
        for attempt in range(1, self.settings.connect_attempts + 1):
            try:
                return self._http.post(path, data=data, headers=headers)
            except httpx.ConnectError as exc:
                # The connection was never made, so nothing was asked: safe to try again.
                if attempt == self.settings.connect_attempts:
                    raise LoginUnavailable(f"Alibaba Mail ({host}) cannot be reached ({type(exc).__name__})") from exc
            except httpx.TimeoutException as exc:
                raise LoginUnavailable(
                    f"Alibaba Mail ({host}) did not answer in time; the login was not completed ({type(exc).__name__})"
                ) from exc
            except httpx.TransportError as exc:
                raise LoginUnavailable(
                    f"the connection to Alibaba Mail ({host}) failed ({type(exc).__name__})"
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover - connect_attempts >= 1

    def _fetch_token(self) -> tuple[str, float]:
        s = self.settings
        data = {"grant_type": "client_credentials", "client_id": s.app_code, "client_secret": s.secret()}
        response = self._post(s.token_path, data, {})
        if response.status_code in (400, 401, 403):
            code, _ = _error_body(response)
            raise AppCredentialsRejected(
                "Alibaba Mail refused the app's credentials; check app_code and the Secret in app_secret_file "
                "under [alimail_direct]",
                code=code,
                status=response.status_code,
            )
        self._raise_for_status(response, "")
        body = self._json(response)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise LoginRejected("Alibaba Mail's token answer carries no access_token", status=response.status_code)
        try:
            lifetime = float(body.get("expires_in") or 3600)
        except (TypeError, ValueError):
            lifetime = 3600.0
        return token, lifetime

    def _raise_for_status(self, response: httpx.Response, email: str) -> None:
        status = response.status_code
        if status < 300:
            return
        code, message = _error_body(response)
        meaning = ERROR_CODES.get(code.split(".")[0], "")
        said = f"(Alibaba Mail: {code + ': ' if code else ''}{message}; HTTP {status})"
        if status == 429:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            raise LoginRateLimited(
                f"Alibaba Mail is limiting requests; try again shortly {said}", retry_after=retry_after, code=code
            )
        if status >= 500:
            raise LoginUnavailable(f"Alibaba Mail could not answer {said}", code=code, status=status)
        if meaning == "frozen":
            raise MailboxFrozen(f"the mailbox {email} is frozen {said}", code=code, status=status)
        # A 404 without the code is no proof the person is unknown: a wrong login_path answers 404 too.
        if meaning == "unknown_user":
            raise MailboxUnknown(f"Alibaba Mail has no mailbox {email} {said}", code=code, status=status)
        if meaning == "credentials" or (not meaning and status == 401):
            raise AppCredentialsRejected(
                f"Alibaba Mail refused the app; check app_code, the Secret in app_secret_file and sign_algorithm "
                f"under [alimail_direct] {said}",
                code=code,
                status=status,
            )
        if meaning == "not_permitted" or (not meaning and status == 403):
            raise LoginNotPermitted(
                f"the app may not sign users in: grant it User.Login.All and ask Alibaba Mail to enable the "
                f"logon API {said}",
                code=code,
                status=status,
            )
        raise LoginRejected(
            f"Alibaba Mail refused the logon request; check [alimail_direct] against the app's integration "
            f"notes {said}",
            code=code,
            status=status,
        )

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise LoginRejected("Alibaba Mail's answer is not a JSON object", status=response.status_code)
        return body

    def _login_url(self, response: httpx.Response, started: float) -> LoginUrl:
        body = self._json(response)
        url = body.get(self.settings.url_field)
        if not isinstance(url, str) or urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).netloc:
            raise LoginRejected(
                f"Alibaba Mail's answer carries no login URL in {self.settings.url_field!r}; "
                "check url_field under [alimail_direct]",
                status=response.status_code,
            )
        lifetime = self.settings.url_lifetime
        with contextlib.suppress(TypeError, ValueError):  # a lifetime we cannot read leaves ours
            lifetime = min(lifetime, float(body.get("expiresIn") or lifetime))
        expires_at = started + lifetime
        if self._clock() >= expires_at:
            raise LoginUnavailable(
                f"Alibaba Mail answered after the login URL's {lifetime:g} s lifetime; the login was not used"
            )
        return LoginUrl(url, expires_at)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AlimailLogin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
