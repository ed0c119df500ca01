"""Creates the provider carries out but whose answers never arrive in time: each is made once, whether our
client retries at once or a later call (the sync's next run, the outbox) tries again. Alibaba Mail through
its emulator's fault injection, SCIM through a scim2-server behind a WSGI layer that answers late.
(Mailboxes and departments through the outbox: tests/provisioning/test_outbox.py.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from idp.demo.alimail_emulator import RunningEmulator
from idp.provisioning import Conflict, MailboxSpec, MailGroupSpec, Unavailable, ensure_mailbox
from idp.provisioning.alimail import AlimailProvider, AlimailSettings
from idp.provisioning.scim import ScimProvider, ScimSettings
from tests.provisioning.support import SCIM_TOKEN, ScimServer

TIMEOUT, LATE = 0.3, 1.0
"""The clients' read timeout here, and how late a carried-out create is answered."""

TEAM = MailGroupSpec(email="team@example.com", name="Team", members=("ann@example.com", "bob@example.com"))
ANN = MailboxSpec(email="ann@example.com", display_name="Ann")
BOB = MailboxSpec(email="bob@example.com", display_name="Bob")


def asked(emu: RunningEmulator, method: str, path: str) -> int:
    """How many times the client asked for ``method path``, whatever the answer (or its lateness)."""
    return sum(1 for c in emu.emulator.calls if (c.method, c.path) == (method, path))


@pytest.fixture
def impatient(
    emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]
) -> Iterator[Callable[..., AlimailProvider]]:
    made: list[AlimailProvider] = []

    def make(**overrides: Any) -> AlimailProvider:
        provider = AlimailProvider(settings_for(emulator, read_timeout=TIMEOUT, **overrides))
        made.append(provider)
        return provider

    yield make
    for provider in made:
        provider.close()


def test_a_mail_group_create_that_timed_out_is_found_not_repeated(
    emulator: RunningEmulator, impatient: Callable[..., AlimailProvider]
) -> None:
    emulator.faults.time_out_after_applying(1, "/v2/groups", delay=LATE)
    group = impatient().create_group(TEAM)
    assert group.spec() == TEAM
    (only,) = emulator.emulator.groups()
    assert (only["id"], only["members"]) == (group.id, list(TEAM.members))
    assert asked(emulator, "POST", "/v2/groups") == 1  # the retry looked the address up instead


def test_a_mail_group_create_the_client_gave_up_on_is_adopted_by_the_next_try(
    emulator: RunningEmulator, impatient: Callable[..., AlimailProvider]
) -> None:
    emulator.faults.time_out_after_applying(1, "/v2/groups", delay=LATE)
    provider = impatient(max_attempts=1)
    with pytest.raises(Unavailable, match="did not answer in time"):
        provider.create_group(TEAM)
    group = provider.create_group(TEAM)  # the sync's next run: "exists" is success after reconciling
    (only,) = emulator.emulator.groups()
    assert (only["id"], only["name"], only["members"]) == (group.id, "Team", list(TEAM.members))


def test_a_mailbox_create_that_timed_out_is_found_not_repeated(
    emulator: RunningEmulator, impatient: Callable[..., AlimailProvider]
) -> None:
    emulator.faults.time_out_after_applying(1, "/v2/users", delay=LATE)
    mailbox = impatient().create(ANN)
    assert mailbox.spec() == ANN
    assert [u["id"] for u in emulator.emulator.users()] == [mailbox.id]
    assert asked(emulator, "POST", "/v2/users") == 1


def test_an_alias_add_that_timed_out_is_found_not_repeated(
    emulator: RunningEmulator, impatient: Callable[..., AlimailProvider]
) -> None:
    provider = impatient()
    ann = provider.create(ANN)
    path = f"/v2/users/{ann.id}/emailAliases"
    emulator.faults.time_out_after_applying(1, path, delay=LATE)
    updated = provider.update(ann.id, {"aliases": ("a@example.com",)})
    assert updated.aliases == ("a@example.com",)
    assert emulator.emulator.users()[0]["emailAliases"] == ["a@example.com"]
    assert asked(emulator, "POST", path) == 1


def test_a_second_node_creating_at_the_same_address_still_gets_conflict(
    emulator: RunningEmulator, impatient: Callable[..., AlimailProvider]
) -> None:
    # Only our own timed-out attempt makes "exists" a success: a mailbox that was there before we asked is
    # somebody else's, and the caller decides (ensure_mailbox and the sync reconcile it, and say so).
    provider = impatient()
    provider.create(ANN)
    with pytest.raises(Conflict):
        provider.create(ANN)
    assert ensure_mailbox(provider, ANN).action == "unchanged"


class AnswerLate:
    """WSGI layer: the next ``times`` POSTs to a path ending in ``suffix`` are carried out, answered late."""

    def __init__(self, app: Any, suffix: str, times: int = 1) -> None:
        self.app, self.suffix, self.times = app, suffix, times
        self.posts = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] != "POST" or not environ["PATH_INFO"].endswith(self.suffix):
            return self.app(environ, start_response)
        with self._lock:
            self.posts += 1
            late, self.times = self.times > 0, self.times - 1
        body = list(self.app(environ, start_response))  # carried out here, before anything is sent
        if late:
            time.sleep(LATE)
        return body


@pytest.fixture
def scim_late(scim_server: ScimServer) -> Iterator[tuple[ScimProvider, Callable[[str], AnswerLate]]]:
    def answer_late(suffix: str) -> AnswerLate:
        layer = AnswerLate(scim_server.faults.app, suffix)
        scim_server.faults.app = layer
        return layer

    settings = ScimSettings(
        base_url=scim_server.url,
        bearer_token=SCIM_TOKEN,
        read_timeout=TIMEOUT,
        retry_base_wait=0.01,
        max_retry_wait=0.5,
    )
    with ScimProvider(settings) as scim:
        yield scim, answer_late


def test_scim_user_and_group_creates_that_timed_out_are_made_once(
    scim_late: tuple[ScimProvider, Callable[[str], AnswerLate]],
) -> None:
    scim, answer_late = scim_late
    users = answer_late("/Users")
    ann = scim.create(ANN)
    scim.create(BOB)
    assert users.posts == 2  # one each: the retry after the late answer found Ann
    assert sorted(m.email for m in scim.list_all()) == ["ann@example.com", "bob@example.com"]

    groups = answer_late("/Groups")
    group = scim.create_group(TEAM)
    # A Group's externalId is not unique to the service: only the look-up keeps the retry from a twin.
    assert groups.posts == 1
    assert [g.spec() for g in scim.list_groups()] == [TEAM]
    assert ann.email in group.members
