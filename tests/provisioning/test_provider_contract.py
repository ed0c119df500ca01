"""The Alibaba Mail client keeps to the contract table (idp/provisioning/alimail_contract.py): what it sends is
captured by the emulator's real HTTP server and checked field by field against the table; the emulator refuses
what the table does not list; answers with unknown or missing fields are read tolerantly; the README names
every field no public page documents."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from idp.demo.alimail_emulator import RunningEmulator
from idp.provisioning import MailboxSpec, MailGroupSpec, Rejected
from idp.provisioning.alimail import AlimailProvider, AlimailSettings
from idp.provisioning.alimail_contract import OPERATIONS, undocumented

README = Path(__file__).resolve().parents[2] / "README.md"

EVERYTHING = MailboxSpec(
    email="alice@example.com",
    display_name="Alice Liddell",
    given_name="Alice",
    surname="Liddell",
    department=("Engineering", "Platform"),
    title="Engineer",
    phone="+86 10 1234 5678",
    employee_number="E1001",
    aliases=("al@example.com",),
)


def exercise_every_operation(provider: AlimailProvider, second: AlimailProvider) -> None:
    """Every call the client makes, with every field it can send."""
    alice = provider.create(EVERYTHING)
    assert second.find(alice.email) == alice  # a fresh client reads the department path back by id
    provider.update(
        alice.id,
        {"display_name": "Alice L.", "given_name": None, "surname": None, "title": None, "phone": None}
        | {"employee_number": None, "department": (), "aliases": ("liddell@example.com",)},
    )
    provider.update(alice.id, {"email": "alice.liddell@example.com"})
    provider.freeze(alice.id)
    provider.unfreeze(alice.id)
    bob = provider.create(MailboxSpec(email="bob@example.com", display_name="Bob"))
    assert len(list(provider.list_all(page_size=1))) == 2

    team = provider.create_group(MailGroupSpec(email="team@example.com", name="Team", members=(bob.email,)))
    provider.create_group(MailGroupSpec(email="team@example.com", name="Team", members=(bob.email,)))
    provider.update_group(
        team.id, MailGroupSpec(email=team.email, name="The Team", members=("alice.liddell@example.com",))
    )
    assert [g.name for g in provider.list_groups()] == ["The Team"]
    provider.delete_group(team.id)
    provider.delete(bob.id)


def test_the_client_sends_only_what_the_table_lists_and_uses_all_of_it(
    emulator: RunningEmulator, settings_for: Callable[..., AlimailSettings]
) -> None:
    with AlimailProvider(settings_for(emulator)) as provider, AlimailProvider(settings_for(emulator)) as second:
        exercise_every_operation(provider, second)
    calls = list(emulator.emulator.calls)
    for call in calls:
        assert call.operation in OPERATIONS, f"{call.method} {call.path} is not in the contract table"
        allowed = OPERATIONS[call.operation].request_fields()
        assert set(call.fields) <= allowed, f"{call.operation} sent {sorted(set(call.fields) - allowed)}"
    assert {c.operation for c in calls} == set(OPERATIONS), "the table lists an operation the client never uses"
    sent = {name for c in calls for name in c.fields}
    listed = {f for op in OPERATIONS.values() for f in op.request_fields()}
    assert sent == listed, f"the table lists request fields the client never sends: {sorted(listed - sent)}"
    refused = [(c.operation, c.status) for c in calls if c.status == 400]
    assert refused == []


def test_the_emulator_refuses_a_field_the_table_does_not_list(emulator: RunningEmulator) -> None:
    with httpx.Client(base_url=emulator.url) as http:
        token = http.post(
            "/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": emulator.emulator.client_id,
                "client_secret": emulator.emulator.client_secret,
            },
        ).json()["access_token"]
        body = {"email": "carol@example.com", "name": "Carol", "nickname": "Caz"}
        answer = http.post("/v2/users", json=body, headers={"Authorization": f"bearer {token}"})
    assert answer.status_code == 400
    assert answer.json()["detailErrorCode"] == "InvalidParameter" and "nickname" in answer.json()["message"]
    assert emulator.emulator.users() == []


def test_unknown_answer_fields_are_ignored_and_missing_optional_ones_defaulted(
    alimail: AlimailProvider, emulator: RunningEmulator
) -> None:
    alimail.create(EVERYTHING)
    alimail.create_group(MailGroupSpec(email="team@example.com", name="Team", members=(EVERYTHING.email,)))
    emulator.emulator.quirks.extra = {"createdTime": "2026-01-01T00:00:00Z", "avatar": {"url": ""}, "isHidden": False}
    emulator.emulator.quirks.omit = frozenset(
        {"firstName", "lastName", "jobTitle", "phone", "employeeNo", "status", "emailAliases", "departmentIds"}
    )
    (found,) = alimail.list_all()
    assert found == alimail.find(EVERYTHING.email)
    assert (found.email, found.display_name) == (EVERYTHING.email, EVERYTHING.display_name)
    assert (found.given_name, found.department, found.aliases, found.frozen) == (None, (), (), False)
    (group,) = alimail.list_groups()
    assert group.spec() == MailGroupSpec(email="team@example.com", name="Team", members=(EVERYTHING.email,))


def test_an_answer_without_an_address_is_a_clear_rejection(alimail: AlimailProvider, emulator: RunningEmulator) -> None:
    alimail.create(EVERYTHING)
    emulator.emulator.quirks.omit = frozenset({"email"})
    with pytest.raises(Rejected, match="carries no 'email'") as caught:
        alimail.find(EVERYTHING.email)
    assert caught.value.code == "InvalidResponse"


def test_the_readme_names_every_field_no_public_page_documents() -> None:
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^### Mailbox provisioning.*?(?=^### )", text, re.S | re.M)
    assert section is not None
    named = set(re.findall(r"`([A-Za-z_$]+)`", section.group(0)))
    missing = sorted({name for _, name, _ in undocumented()} - named)
    assert missing == [], f"the README's provisioning section does not name {missing}"
