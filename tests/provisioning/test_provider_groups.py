"""Mail groups and aliases through the Provider protocol, the same tests for Alibaba Mail (its emulator) and
SCIM (a real scim2-server), both over HTTP; and a SCIM service without Groups, which says so."""

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
from scim2_server.utils import load_default_resource_types, load_default_schemas, load_default_service_provider_config

from idp.demo.alimail_emulator import RunningEmulator
from idp.provisioning import MailboxSpec, MailGroupSpec, NotSupported, Provider, changed_fields
from idp.provisioning.alimail import AlimailProvider, AlimailSettings
from idp.provisioning.scim import ScimProvider, ScimSettings
from tests.provisioning.support import SCIM_TOKEN, QuietHandler, ScimServer


def scim_settings(url: str, **overrides: object) -> ScimSettings:
    values: dict[str, object] = {
        "base_url": url,
        "bearer_token": SCIM_TOKEN,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "retry_base_wait": 0.01,
        "max_retry_wait": 0.5,
    }
    return ScimSettings(**{**values, **overrides})  # type: ignore[arg-type]


@pytest.fixture(params=["alimail", "scim"])
def provider(
    request: pytest.FixtureRequest, settings_for: Callable[..., AlimailSettings]
) -> Iterator[AlimailProvider | ScimProvider]:
    if request.param == "alimail":
        emulator: RunningEmulator = request.getfixturevalue("emulator")
        with AlimailProvider(settings_for(emulator)) as alimail:
            yield alimail
    else:
        server: ScimServer = request.getfixturevalue("scim_server")
        with ScimProvider(scim_settings(server.url)) as scim:
            yield scim


def mailboxes(provider: Provider, *names: str) -> list[str]:
    return [provider.create(MailboxSpec(email=f"{n}@example.com", display_name=n.title())).email for n in names]


def test_provider_objects_keep_to_the_protocol(provider: Provider) -> None:
    assert isinstance(provider, Provider) and provider.supports_groups


def test_mail_group_lifecycle(provider: Provider) -> None:
    ann, bob, cid = mailboxes(provider, "ann", "bob", "cid")
    spec = MailGroupSpec(email="team@example.com", name="Team", members=(bob.upper(), ann))
    assert spec.members == (ann, bob)  # kept sorted and lower-case whoever builds it

    created = provider.create_group(spec)
    assert created.spec() == spec
    assert list(provider.list_groups()) == [created]

    renamed = MailGroupSpec(email=spec.email, name="The Team", members=(bob, cid))
    updated = provider.update_group(created.id, renamed)
    assert (updated.id, updated.spec()) == (created.id, renamed)
    assert [g.spec() for g in provider.list_groups()] == [renamed]

    provider.delete_group(created.id)
    provider.delete_group(created.id)  # a repeated delete (its first answer lost) is not an error
    assert list(provider.list_groups()) == []


def test_creating_a_group_that_exists_reconciles_it(provider: Provider) -> None:
    ann, bob = mailboxes(provider, "ann", "bob")
    first = provider.create_group(MailGroupSpec(email="team@example.com", name="Team", members=(ann,)))
    wanted = MailGroupSpec(email="team@example.com", name="Team A+B", members=(ann, bob))
    again = provider.create_group(wanted)
    assert (again.id, again.spec()) == (first.id, wanted)
    assert [g.spec() for g in provider.list_groups()] == [wanted]


def test_aliases_are_sent_on_create_and_update_and_compared(provider: Provider) -> None:
    spec = MailboxSpec(email="ann@example.com", display_name="Ann", aliases=("Ann.Lee@example.com", "al@example.com"))
    assert spec.aliases == ("al@example.com", "ann.lee@example.com")
    created = provider.create(spec)
    assert created.spec() == spec
    assert changed_fields(created.spec(), spec) == {}

    wanted = MailboxSpec(email=spec.email, display_name="Ann", aliases=("ann.lee@example.com", "lee@example.com"))
    assert changed_fields(created.spec(), wanted) == {"aliases": wanted.aliases}
    updated = provider.update(created.id, {"aliases": wanted.aliases})
    assert updated.spec() == wanted
    assert provider.find(spec.email) == updated

    renamed = provider.update(created.id, {"email": "ann.lee2@example.com"})  # the aliases stay
    assert (renamed.email, renamed.aliases) == ("ann.lee2@example.com", wanted.aliases)


@pytest.fixture
def scim_without_groups() -> Iterator[str]:
    """A scim2-server that offers Users only, as many SCIM services do."""
    config = load_default_service_provider_config()
    config.authentication_schemes = [*(config.authentication_schemes or []), BEARER_TOKEN_SCHEME]
    users_only = [t for t in load_default_resource_types().values() if t.id == "User"]
    description = ScimServiceDescription.from_discovery(load_default_schemas().values(), users_only, config=config)
    app = BearerTokenApplication(
        InMemoryStorage(),
        description,
        service=ScimService(description, secret=uuid.uuid4().hex + uuid.uuid4().hex),
        bearer_tokens=[SCIM_TOKEN],
    )
    server = make_server("127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/v2"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_a_scim_service_without_groups_says_so(scim_without_groups: str) -> None:
    with ScimProvider(scim_settings(scim_without_groups)) as scim:
        with pytest.raises(NotSupported, match="offers no SCIM Groups") as caught:
            list(scim.list_groups())
        assert caught.value.reason == "provider_unsupported"
        with pytest.raises(NotSupported):
            scim.create_group(MailGroupSpec(email="team@example.com", name="Team", members=()))
