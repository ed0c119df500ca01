"""Helpers of the provisioning tests (their fixtures are in conftest.py): client settings for the Alibaba Mail
emulator, and the scim2-server those tests run behind a fault injector."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler

from idp.demo.alimail_emulator import RunningEmulator
from idp.provisioning.alimail import AlimailSettings

SCIM_TOKEN = "scim-test-token"


def alimail_settings(emu: RunningEmulator, **overrides: Any) -> AlimailSettings:
    """Client settings for the emulator, with waits short enough for tests."""
    values: dict[str, Any] = {
        "host": emu.url,
        "client_id": emu.emulator.client_id,
        "client_secret": emu.emulator.client_secret,
        "mail_domain": emu.emulator.mail_domain,
        "rate_per_second": 1000,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "retry_base_wait": 0.01,
        "max_retry_wait": 1.0,
    }
    values.update(overrides)
    return AlimailSettings(**values)


class QuietHandler(WSGIRequestHandler):
    """No line per request: they would bury what a failing test printed."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class ScimFaults:
    """WSGI middleware in front of scim2-server: answer the next requests with an error status."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.pending: list[tuple[int, str]] = []
        self.requests = 0

    def fail_next(self, times: int, status: int, retry_after: str = "") -> None:
        self.pending.extend([(status, retry_after)] * times)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.requests += 1
        if not self.pending:
            return self.app(environ, start_response)
        status, retry_after = self.pending.pop(0)
        headers = [("Content-Type", "application/scim+json")]
        if retry_after:
            headers.append(("Retry-After", retry_after))
        start_response(f"{status} Injected", headers)
        body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": str(status)}
        return [json.dumps(body).encode()]


@dataclass
class ScimServer:
    url: str
    token: str
    faults: ScimFaults
