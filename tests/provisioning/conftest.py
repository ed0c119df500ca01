"""Fixtures: the Alibaba Mail emulator and a scim2-server, both over real HTTP on loopback; Redis."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import redis
from scim2_models import ScimProvider as ScimServiceDescription
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.testserver.cli import ThreadingWSGIServer
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)

from idp.provisioning.alimail import AlimailProvider, AlimailSettings
from idp.provisioning.alimail_emulator import RunningEmulator, run_emulator
from tests.conftest import require

REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SCIM_TOKEN = "scim-test-token"


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    # The emulator's own 40/s limit is off here so functional tests run at full speed; the rate
    # limit tests turn it on.
    with run_emulator(rate_limit=None) as emu:
        yield emu


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


@pytest.fixture
def settings_for() -> Callable[..., AlimailSettings]:
    return alimail_settings


@pytest.fixture
def alimail(emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]) -> Iterator[AlimailProvider]:
    with AlimailProvider(settings_for(emulator)) as provider:
        yield provider


@pytest.fixture
def redis_url() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        require(False, f"Redis at {REDIS_URL} not available")
    yield REDIS_URL
    client.close()


@pytest.fixture
def redis_key() -> str:
    """A rate-limit key of its own per test, so runs never share a bucket."""
    return f"test:ratelimit:{uuid.uuid4().hex}"


class _QuietHandler(WSGIRequestHandler):
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


@pytest.fixture
def scim_server() -> Iterator[ScimServer]:
    """A real scim2-server (in-memory storage, bearer token) on a loopback port."""
    config = load_default_service_provider_config()
    config.authentication_schemes = [*(config.authentication_schemes or []), BEARER_TOKEN_SCHEME]
    description = ScimServiceDescription.from_discovery(
        load_default_schemas().values(), load_default_resource_types().values(), config=config
    )
    app = BearerTokenApplication(
        InMemoryStorage(),
        description,
        service=ScimService(description, secret=uuid.uuid4().hex + uuid.uuid4().hex),
        bearer_tokens=[SCIM_TOKEN],
    )
    faults = ScimFaults(app)
    server = make_server("127.0.0.1", 0, faults, server_class=ThreadingWSGIServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ScimServer(f"http://127.0.0.1:{server.server_port}/v2", SCIM_TOKEN, faults)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
