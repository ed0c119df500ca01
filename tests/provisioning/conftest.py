"""Fixtures: the Alibaba Mail emulator and a scim2-server, both over real HTTP on loopback; Redis."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from wsgiref.simple_server import make_server

import pytest
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

from idp.demo.alimail_emulator import RunningEmulator, run_emulator
from idp.provisioning.alimail import AlimailProvider, AlimailSettings
from tests.provisioning.support import SCIM_TOKEN, QuietHandler, ScimFaults, ScimServer, alimail_settings
from tests.support import require_redis


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    # The emulator's own 40/s limit is off here so functional tests run at full speed; the rate
    # limit tests turn it on.
    with run_emulator(rate_limit=None) as emu:
        yield emu


@pytest.fixture
def settings_for() -> Callable[..., AlimailSettings]:
    return alimail_settings


@pytest.fixture
def alimail(emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]) -> Iterator[AlimailProvider]:
    with AlimailProvider(settings_for(emulator)) as provider:
        yield provider


@pytest.fixture
def redis_url() -> str:
    return require_redis()


@pytest.fixture
def redis_key() -> str:
    """A rate-limit key of its own per test, so runs never share a bucket."""
    return f"test:ratelimit:{uuid.uuid4().hex}"


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
    server = make_server("127.0.0.1", 0, faults, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield ScimServer(f"http://127.0.0.1:{server.server_port}/v2", SCIM_TOKEN, faults)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
