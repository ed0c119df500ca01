"""ScimProvider against a real scim2-server on a loopback port."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from idp.provisioning import Conflict, MailboxSpec, NotFound, Rejected, Unavailable, ensure_mailbox
from idp.provisioning.scim import ScimProvider, ScimSettings
from tests.provisioning.support import ScimServer

ALICE = MailboxSpec(
    email="alice@example.com",
    display_name="Alice Liddell",
    given_name="Alice",
    surname="Liddell",
    department=("Engineering", "Platform"),
    title="Engineer",
    phone="+86 10 1234 5678",
    employee_number="E1001",
)


def _settings(base_url: str, token: str = "", **overrides: object) -> ScimSettings:
    values: dict[str, object] = {
        "base_url": base_url,
        "bearer_token": token,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "retry_base_wait": 0.01,
        "max_retry_wait": 0.5,
    }
    values.update(overrides)
    return ScimSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def scim(scim_server: ScimServer) -> Iterator[ScimProvider]:
    with ScimProvider(_settings(scim_server.url, scim_server.token)) as provider:
        yield provider


def test_mailbox_lifecycle(scim: ScimProvider) -> None:
    created = scim.create(ALICE)
    assert created.spec() == ALICE
    assert scim.find("alice@example.com") == created

    updated = scim.update("alice@example.com", {"title": None, "department": ("Sales",), "phone": "+1 555 0100"})
    assert (updated.title, updated.department, updated.phone) == (None, ("Sales",), "+1 555 0100")
    assert updated.employee_number == "E1001"  # untouched fields stay

    assert scim.freeze(created.id).frozen
    assert scim.find("alice@example.com").frozen  # type: ignore[union-attr]
    assert not scim.unfreeze("alice@example.com").frozen

    scim.delete("alice@example.com")
    assert scim.find("alice@example.com") is None
    with pytest.raises(NotFound):
        scim.delete(created.id)


def test_duplicate_create_is_conflict(scim: ScimProvider) -> None:
    scim.create(ALICE)
    with pytest.raises(Conflict):
        scim.create(ALICE)


def test_list_all_pages(scim: ScimProvider) -> None:
    for i in range(7):
        scim.create(MailboxSpec(email=f"u{i}@example.com", display_name=f"U{i}"))
    assert sorted(m.email for m in scim.list_all(page_size=3)) == [f"u{i}@example.com" for i in range(7)]


def test_ensure_mailbox_reconciles_through_scim(scim: ScimProvider) -> None:
    assert ensure_mailbox(scim, ALICE).action == "created"
    renamed = MailboxSpec(**{**ALICE.__dict__, "display_name": "Alice Pleasance Liddell"})
    result = ensure_mailbox(scim, renamed)
    assert (result.action, result.changes) == ("updated", {"display_name": "Alice Pleasance Liddell"})
    assert scim.find(ALICE.email).display_name == "Alice Pleasance Liddell"  # type: ignore[union-attr]


def test_wrong_token_is_rejected(scim_server: ScimServer) -> None:
    with ScimProvider(_settings(scim_server.url, "wrong")) as provider, pytest.raises(Rejected) as caught:
        provider.find("alice@example.com")
    assert caught.value.status == 401


def test_unreachable_service_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        settings = _settings(f"http://127.0.0.1:{port}/v2", max_attempts=2)
        with ScimProvider(settings) as provider, pytest.raises(Unavailable):
            provider.find("alice@example.com")


def test_429_and_5xx_are_retried_honouring_retry_after(scim: ScimProvider, scim_server: ScimServer) -> None:
    scim.create(ALICE)
    scim_server.faults.fail_next(2, 429, retry_after="0.2")
    scim_server.faults.fail_next(1, 503)
    before = scim_server.faults.requests
    started = time.monotonic()
    assert scim.find(ALICE.email) is not None
    assert time.monotonic() - started >= 0.4
    assert scim_server.faults.requests - before == 4


def test_5xx_that_persists_becomes_unavailable(scim_server: ScimServer) -> None:
    scim_server.faults.fail_next(5, 500)
    settings = _settings(scim_server.url, scim_server.token, max_attempts=3)
    with ScimProvider(settings) as provider, pytest.raises(Unavailable, match="500"):
        provider.find(ALICE.email)
    assert scim_server.faults.requests == 3
