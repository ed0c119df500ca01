"""AlimailProvider against the emulator over real HTTP, with faults switched on where it matters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from idp.demo.alimail_emulator import RunningEmulator, run_emulator
from idp.provisioning import Conflict, MailboxSpec, MailGroupSpec, RateLimited, Rejected, Unavailable, ensure_mailbox
from idp.provisioning.alimail import AlimailProvider, AlimailSettings
from tests.support import FakeClock

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


def _statuses(emu: RunningEmulator, path_prefix: str = "/v2/") -> list[int]:
    return [c.status for c in emu.emulator.calls if c.path.startswith(path_prefix)]


def test_mailbox_lifecycle(alimail: AlimailProvider, emulator: RunningEmulator) -> None:
    created = alimail.create(ALICE)
    assert created.spec() == ALICE
    assert not created.frozen
    assert alimail.find("ALICE@example.com") == created

    updated = alimail.update(created.id, {"title": "Staff Engineer", "phone": None})
    assert (updated.title, updated.phone) == ("Staff Engineer", None)

    assert alimail.freeze("alice@example.com").frozen
    assert emulator.emulator.users()[0]["status"] == "FREEZE"
    assert not alimail.unfreeze(created.id).frozen
    assert emulator.emulator.users()[0]["status"] == "NORMAL"

    alimail.delete(created.id)
    assert alimail.find("alice@example.com") is None


def test_departments_are_created_once_and_reused(
    emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]
) -> None:
    with AlimailProvider(settings_for(emulator)) as first:
        first.create(ALICE)
    bob = MailboxSpec(email="bob@example.com", display_name="Bob", department=("Engineering", "Data"))
    # A second process starts with empty caches: it must find "Engineering", not create a twin.
    with AlimailProvider(settings_for(emulator)) as second:
        assert second.create(bob).department == ("Engineering", "Data")
    dept_creates = [c for c in emulator.emulator.calls if c.method == "POST" and c.path == "/v2/departments"]
    assert [c.status for c in dept_creates] == [201, 201, 201]
    dept_ids = [u["departmentIds"][0] for u in emulator.emulator.users()]
    assert [emulator.emulator.department_path(d) for d in dept_ids] == [
        ("Engineering", "Platform"),
        ("Engineering", "Data"),
    ]


def test_update_rejects_unknown_fields(alimail: AlimailProvider) -> None:
    alimail.create(ALICE)
    with pytest.raises(ValueError, match="titel"):
        alimail.update("alice@example.com", {"titel": "typo"})


def test_paging_walks_every_page(alimail: AlimailProvider, emulator: RunningEmulator) -> None:
    for i in range(23):
        alimail.create(MailboxSpec(email=f"user{i:02d}@example.com", display_name=f"User {i}"))
    listed = list(alimail.list_all(page_size=10))
    assert sorted(m.email for m in listed) == [f"user{i:02d}@example.com" for i in range(23)]
    pages = [c for c in emulator.emulator.calls if c.method == "GET" and c.path == "/v2/users"]
    assert len(pages) == 3


def test_token_is_reused_across_calls(alimail: AlimailProvider, emulator: RunningEmulator) -> None:
    for _ in range(5):
        alimail.find("nobody@example.com")
    assert emulator.emulator.tokens_issued == 1


def test_token_renewed_once_when_api_answers_401(alimail: AlimailProvider, emulator: RunningEmulator) -> None:
    alimail.create(ALICE)
    emulator.expire_tokens()
    assert alimail.find("alice@example.com") is not None
    assert emulator.emulator.tokens_issued == 2
    assert _statuses(emulator, "/v2/users/")[-2:] == [401, 200]


def test_token_renewed_before_it_expires(settings_for: Callable[..., AlimailSettings]) -> None:
    clock = FakeClock()
    with (
        run_emulator(token_ttl=100, rate_limit=None) as emu,
        AlimailProvider(settings_for(emu), clock=clock) as provider,
    ):
        provider.find("nobody@example.com")
        clock.advance(89)  # a tenth of its life early is when it is renewed
        provider.find("nobody@example.com")
        assert emu.emulator.tokens_issued == 1
        clock.advance(1)
        provider.find("nobody@example.com")
        assert emu.emulator.tokens_issued == 2
        assert 401 not in _statuses(emu)


def test_wrong_client_secret_is_rejected_without_leaking_it(
    emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]
) -> None:
    with (
        AlimailProvider(settings_for(emulator, client_secret="not-the-secret")) as provider,
        pytest.raises(Rejected) as caught,
    ):
        provider.find("alice@example.com")
    assert caught.value.code == "InvalidClient"
    assert "not-the-secret" not in str(caught.value)
    assert emulator.emulator.tokens_issued == 0


def test_duplicate_create_is_conflict(alimail: AlimailProvider) -> None:
    alimail.create(ALICE)
    with pytest.raises(Conflict, match="UserAlreadyExists"):
        alimail.create(ALICE)


def test_error_json_is_surfaced_in_rejected(alimail: AlimailProvider, emulator: RunningEmulator) -> None:
    outsider = MailboxSpec(email="eve@elsewhere.org", display_name="Eve")
    with pytest.raises(Rejected) as caught:
        alimail.create(outsider)
    error = caught.value
    assert (error.code, error.status) == ("InvalidParameter.Email", 400)
    assert error.message == "email address is not valid for this organization"
    assert "example.com" in error.developer_message
    assert _statuses(emulator, "/v2/users") == [400]  # an answer, not a failure: never retried


def test_burst_of_429_is_retried_honouring_retry_after(alimail: AlimailProvider, emulator: RunningEmulator) -> None:
    alimail.create(ALICE)
    emulator.faults.fail_next(3, status=429, retry_after=0.3)
    started = time.monotonic()
    assert alimail.find("alice@example.com") is not None
    elapsed = time.monotonic() - started
    assert _statuses(emulator, "/v2/users/") == [429, 429, 429, 200]
    # Our own backoff here is ~0.01 s; only the server's Retry-After explains the wait.
    assert 0.85 <= elapsed < 5


def test_persistent_429_surfaces_rate_limited(
    emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]
) -> None:
    emulator.faults.fail_next(10, status=429, retry_after=0.05)
    with (
        AlimailProvider(settings_for(emulator, max_attempts=3)) as provider,
        pytest.raises(RateLimited) as caught,
    ):
        provider.find("alice@example.com")
    assert caught.value.retry_after == pytest.approx(0.05)
    assert _statuses(emulator) == [429, 429, 429]


def test_5xx_is_retried_then_succeeds(alimail: AlimailProvider, emulator: RunningEmulator) -> None:
    emulator.faults.fail_next(2, status=503, path_prefix="/v2/users", method="POST")
    assert alimail.create(ALICE).email == ALICE.email
    # A 5xx may come after the create was carried out: each retry looks the address up first.
    calls = [(c.method, c.status) for c in emulator.emulator.calls if c.path.startswith("/v2/users")]
    assert calls == [("POST", 503), ("GET", 404), ("POST", 503), ("GET", 404), ("POST", 201)]


def test_5xx_that_persists_becomes_unavailable(
    emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]
) -> None:
    emulator.faults.fail_next(10, status=502)
    with (
        AlimailProvider(settings_for(emulator, max_attempts=3)) as provider,
        pytest.raises(Unavailable, match="502"),
    ):
        provider.find("alice@example.com")
    assert _statuses(emulator) == [502, 502, 502]


def test_dropped_connection_is_retried(alimail: AlimailProvider, emulator: RunningEmulator) -> None:
    alimail.create(ALICE)
    emulator.faults.drop_next(2)
    assert alimail.find("alice@example.com") is not None


def test_connections_that_keep_dropping_become_unavailable(
    emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]
) -> None:
    emulator.faults.drop_next(10, path_prefix="/")
    with (
        AlimailProvider(settings_for(emulator, max_attempts=2)) as provider,
        pytest.raises(Unavailable, match="connection"),
    ):
        provider.find("alice@example.com")


def test_slow_answers_time_out(emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]) -> None:
    emulator.faults.latency = 1.0
    started = time.monotonic()
    with (
        AlimailProvider(settings_for(emulator, read_timeout=0.3, max_attempts=2)) as provider,
        pytest.raises(Unavailable, match="did not answer in time"),
    ):
        provider.find("alice@example.com")
    assert time.monotonic() - started < 2.5


def test_ensure_mailbox_creates_then_updates_only_what_changed(
    alimail: AlimailProvider, emulator: RunningEmulator
) -> None:
    first = ensure_mailbox(alimail, ALICE)
    assert first.action == "created"
    again = ensure_mailbox(alimail, ALICE)
    assert again.action == "unchanged"
    promoted = MailboxSpec(**{**ALICE.__dict__, "title": "Lead", "department": ("Engineering",)})
    result = ensure_mailbox(alimail, promoted)
    assert result.action == "updated"
    assert result.changes == {"title": "Lead", "department": ("Engineering",)}
    assert result.mailbox.spec() == promoted
    assert [c.method for c in emulator.emulator.calls if c.path == "/v2/users/" + result.mailbox.id] == ["PATCH"]


def test_two_nodes_provisioning_the_same_person_at_once_reconcile_on_409(
    emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]
) -> None:
    # Every answer takes 0.3 s, so both nodes' "find" see no mailbox before either creates one.
    emulator.faults.latency = 0.3
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    ids: list[str] = []

    def node() -> None:
        with AlimailProvider(settings_for(emulator)) as provider:
            barrier.wait()
            result = ensure_mailbox(provider, MailboxSpec(email="new@example.com", display_name="New Hire"))
            outcomes.append(result.action)
            ids.append(result.mailbox.id)

    threads = [threading.Thread(target=node) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert sorted(outcomes) == ["created", "unchanged"]
    assert len(set(ids)) == 1
    assert _statuses(emulator, "/v2/users").count(409) == 1
    assert len(emulator.emulator.users()) == 1


def test_departments_and_mail_groups_are_found_past_the_first_page(
    alimail: AlimailProvider, emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]
) -> None:
    ids = [alimail.ensure_department(("Stores", f"Store {i:03d}")) for i in range(105)]  # 100 children a page
    for i in range(35):  # 30 mail groups a page
        alimail.create_group(MailGroupSpec(email=f"list{i:02d}@example.com", name=f"List {i}", members=()))
    with AlimailProvider(settings_for(emulator)) as fresh:  # empty caches: it has to look
        assert fresh.ensure_department(("Stores", "Store 104")) == ids[-1]
        assert len(list(fresh.list_groups())) == 35
    assert len(emulator.emulator.departments()) == 106
    pages = [c.fields for c in emulator.emulator.calls if c.operation == "list_groups"]
    assert len(pages) == 2


def test_an_outage_during_a_create_costs_no_more_attempts_than_any_call(
    emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]
) -> None:
    emulator.faults.fail_next(100, status=503, path_prefix="/v2/users")
    with (
        AlimailProvider(settings_for(emulator, max_attempts=3)) as provider,
        pytest.raises(Unavailable, match="503"),
    ):
        provider.create(MailboxSpec(email="new@example.com", display_name="New Hire"))
    # The look-ups before each retry are part of the create's three attempts, not three more each.
    calls = [(c.method, c.status) for c in emulator.emulator.calls if c.path.startswith("/v2/users")]
    assert calls == [("POST", 503), ("GET", 503), ("GET", 503)]
