"""The Activity page's queries (idp.audit_report) against a real SQLite file and a real PostgreSQL.

PostgreSQL runs with its session time zone set to Asia/Shanghai on purpose: days must still be UTC days."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from idp.audit_report import (
    CSV_BOM,
    DEFAULT_CHART_DAYS,
    MAX_CHART_DAYS,
    AuditFilter,
    AuditFilterError,
    csv_cell,
    csv_lines,
    daily_signins,
    export_rows,
    page,
    parse_filter,
)
from idp.store.db import Database
from idp.store.models import AuditEvent
from tests.support import scratch_database

MAIL = "https://mail.example.test/saml"
WIKI = "https://wiki.example.test/saml"
HEADER = ["id", "time", "event", "result", "reason", "user", "sp", "ip", "detail", "request_id"]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    # Times come back in UTC whatever the server's own time zone says.
    with scratch_database(request.param, tmp_path, pg_options="-ctimezone=Asia/Shanghai") as database:
        yield database


def add(db: Database, at: datetime, event: str = "signin", result: str = "success", **cols: str | None) -> None:
    with db.engine.begin() as conn:
        conn.execute(insert(AuditEvent.__table__), {"at": at, "event": event, "result": result, **cols})


def ids(rows) -> list[int]:  # type: ignore[no-untyped-def]
    return [r.id for r in rows]


T0 = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)


# ---- filters -----------------------------------------------------------------------------------------


def test_each_filter_narrows_the_rows(db: Database) -> None:
    add(db, T0, username="alice", sp_entity_id=MAIL)
    add(db, T0, result="failure", reason="invalid_credentials", username="alice", sp_entity_id=WIKI)
    add(db, T0, username="bob", sp_entity_id=MAIL)
    add(db, T0, event="admin_access", result="refused", username="alice")
    every = page(db, AuditFilter()).rows
    assert len(every) == 4

    def match(**args: str) -> list[tuple]:
        rows = page(db, parse_filter(args)).rows
        return [(r.event, r.result, r.username, r.sp_entity_id) for r in rows]

    assert {r[2] for r in match(user="ALICE ")} == {"alice"} and len(match(user="alice")) == 3
    assert {r[3] for r in match(sp=MAIL)} == {MAIL} and len(match(sp=MAIL)) == 2
    assert match(event="admin_access") == [("admin_access", "refused", "alice", None)]
    assert match(result="failure") == [("signin", "failure", "alice", WIKI)]
    assert match(user="alice", sp=MAIL, result="success") == [("signin", "success", "alice", MAIL)]
    assert match(user="carol") == []


def test_range_takes_whole_utc_days_at_both_ends(db: Database) -> None:
    add(db, datetime(2024, 5, 9, 23, 59, 59, tzinfo=UTC), reason="before")
    add(db, datetime(2024, 5, 10, 0, 0, 0, tzinfo=UTC), reason="first")
    add(db, datetime(2024, 5, 11, 23, 59, 59, 999000, tzinfo=UTC), reason="last")
    add(db, datetime(2024, 5, 12, 0, 0, 0, tzinfo=UTC), reason="after")
    rows = page(db, parse_filter({"from": "2024-05-10", "to": "2024-05-11"})).rows
    assert [r.reason for r in rows] == ["last", "first"]
    assert [r.reason for r in page(db, parse_filter({"from": "2024-05-12"})).rows] == ["after"]
    assert [r.reason for r in page(db, parse_filter({"to": "2024-05-09"})).rows] == ["before"]


def test_times_come_back_as_utc(db: Database) -> None:
    add(db, datetime(2024, 5, 10, 23, 30, tzinfo=UTC))
    (row,) = page(db, AuditFilter()).rows
    assert row.at == datetime(2024, 5, 10, 23, 30, tzinfo=UTC) and row.at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("args", "field", "words"),
    [
        ({"result": "maybe"}, "result", "not one of success"),
        ({"from": "2024-13-01"}, "from", "not a date"),
        ({"to": "yesterday"}, "to", "not a date"),
        ({"from": "2024-05-02", "to": "2024-05-01"}, "from", "after the end"),
        ({"user": "x" * 257}, "user", "longer than 256"),
        ({"event": "sign\nin"}, "event", "control characters"),
    ],
)
def test_a_bad_filter_names_the_parameter(args: dict[str, str], field: str, words: str) -> None:
    with pytest.raises(AuditFilterError) as caught:
        parse_filter(args)
    assert caught.value.field == field and words in str(caught.value)


def test_filter_round_trips_through_query_args() -> None:
    args = {"user": "alice", "sp": MAIL, "event": "signin", "result": "failure"}
    args.update({"from": "2024-05-01", "to": "2024-05-03"})
    assert parse_filter(args).query_args() == args
    assert parse_filter({"user": " ", "from": ""}).query_args() == {}


# ---- paging ------------------------------------------------------------------------------------------


def test_pages_walk_back_and_forth_newest_first(db: Database) -> None:
    for n in range(120):
        add(db, T0 + timedelta(minutes=n), username="alice", reason=str(n))
        if n % 10 == 0:
            add(db, T0 + timedelta(minutes=n), username="bob")  # not matching, between the matching rows
    flt = parse_filter({"user": "alice"})
    first = page(db, flt)
    assert [r.reason for r in first.rows] == [str(n) for n in range(119, 69, -1)]
    assert first.newer is None and first.older == first.rows[-1].id
    second = page(db, flt, before=first.older)
    assert [r.reason for r in second.rows] == [str(n) for n in range(69, 19, -1)]
    assert second.newer == second.rows[0].id and second.older == second.rows[-1].id
    third = page(db, flt, before=second.older)
    assert [r.reason for r in third.rows] == [str(n) for n in range(19, -1, -1)]
    assert third.older is None and third.newer == third.rows[0].id
    back = page(db, flt, after=third.newer)
    assert ids(back.rows) == ids(second.rows) and (back.newer, back.older) == (second.newer, second.older)
    top = page(db, flt, after=back.newer)
    assert ids(top.rows) == ids(first.rows) and top.newer is None and top.older == first.older


@pytest.mark.parametrize(("count", "pages"), [(0, 0), (1, 1), (50, 1), (51, 2), (100, 2), (101, 3)])
def test_page_boundaries(db: Database, count: int, pages: int) -> None:
    for n in range(count):
        add(db, T0 + timedelta(seconds=n))
    seen: list[int] = []
    current = page(db, AuditFilter())
    walked = 0
    while current.rows:
        walked += 1
        seen.extend(ids(current.rows))
        assert len(current.rows) == (50 if current.older is not None else count - 50 * (walked - 1))
        if current.older is None:
            break
        current = page(db, AuditFilter(), before=current.older)
    assert walked == pages
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == count


def test_a_page_stays_put_while_new_rows_arrive(db: Database) -> None:
    for n in range(60):
        add(db, T0 + timedelta(seconds=n))
    first = page(db, AuditFilter())
    add(db, T0 + timedelta(minutes=5))
    second = page(db, AuditFilter(), before=first.older)
    assert len(second.rows) == 10 and second.rows[0].id == first.rows[-1].id - 1
    assert page(db, AuditFilter(), after=second.newer).newer is not None  # the new row is newer still


def test_before_and_after_together_are_refused(db: Database) -> None:
    with pytest.raises(AuditFilterError):
        page(db, AuditFilter(), before=5, after=1)


# ---- CSV ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1+1", "'+1+1"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("alice", "alice"),
        ("a=b", "a=b"),
        (None, ""),
        (42, "42"),
    ],
)
def test_formula_guard(value: object, cell: str) -> None:
    assert csv_cell(value) == cell


def test_export_is_every_filtered_row_and_parses_back(db: Database) -> None:
    tricky = 'He said "hi", then\nleft; 张三 = ok'
    add(db, T0, username="alice", sp_entity_id=MAIL, detail=tricky, client_ip="10.0.0.1")
    add(db, T0, result="failure", username="=cmd|' /C calc'!A0", reason="invalid_credentials")
    for n in range(25):
        add(db, T0 + timedelta(seconds=n + 1), username="alice", reason=f"r{n}")
    add(db, T0, username="bob")
    flt = parse_filter({"user": "alice"})
    exported = list(export_rows(db, flt, batch=7))
    assert ids(exported) == ids(page(db, flt, size=1000).rows) and len(exported) == 26

    text = "".join(csv_lines(export_rows(db, AuditFilter(), batch=4), HEADER))
    assert text.startswith(CSV_BOM) and text.count(CSV_BOM) == 1
    parsed = list(csv.reader(io.StringIO(text.removeprefix(CSV_BOM))))
    assert parsed[0] == HEADER
    body = parsed[1:]
    assert len(body) == 28 and [int(r[0]) for r in body] == ids(page(db, AuditFilter(), size=1000).rows)
    by_detail = {r[8]: r for r in body}
    assert by_detail[tricky][5] == "alice" and by_detail[tricky][7] == "10.0.0.1" and by_detail[tricky][6] == MAIL
    assert "'=cmd|' /C calc'!A0" in [r[5] for r in body]
    assert all(len(r) == 10 for r in body)
    assert body[-1][1] == "2024-05-10 12:00:00"
    # Excel reads it as UTF-8 because of the BOM: the file's bytes start with EF BB BF.
    assert text.encode("utf-8").startswith(b"\xef\xbb\xbf")


# ---- daily counts ------------------------------------------------------------------------------------


def test_daily_counts_per_sp_with_zero_days_in_utc(db: Database) -> None:
    day = date(2024, 5, 10)
    at = datetime(2024, 5, 10, 23, 30, tzinfo=UTC)  # already the 11th in Shanghai: still the 10th in UTC
    add(db, at, username="alice", sp_entity_id=MAIL)
    add(db, at, username="bob", sp_entity_id=MAIL)
    add(db, at, result="failure", reason="invalid_credentials", username="bob", sp_entity_id=MAIL)
    add(db, datetime(2024, 5, 12, 0, 0, tzinfo=UTC), username="alice", sp_entity_id=WIKI)
    add(db, datetime(2024, 5, 12, 1, 0, tzinfo=UTC), result="failure", username="carol", sp_entity_id=WIKI)
    add(db, datetime(2024, 5, 12, 2, 0, tzinfo=UTC), username="alice")  # the IdP's own page, no SP
    add(db, datetime(2024, 5, 12, 3, 0, tzinfo=UTC), event="provision", username="alice", sp_entity_id=MAIL)
    add(db, datetime(2024, 5, 13, 0, 0, tzinfo=UTC), username="alice", sp_entity_id=MAIL)  # after the range
    add(db, datetime(2024, 5, 9, 23, 59, tzinfo=UTC), username="alice", sp_entity_id=MAIL)  # before it

    chart = daily_signins(db, parse_filter({"from": "2024-05-10", "to": "2024-05-12"}))
    assert chart.days == (day, date(2024, 5, 11), date(2024, 5, 12)) and chart.clipped_from is None
    by_sp = {s.sp: [(d.day.day, d.success, d.failure) for d in s.days] for s in chart.series}
    assert by_sp == {
        MAIL: [(10, 2, 1), (11, 0, 0), (12, 0, 0)],
        WIKI: [(10, 0, 0), (11, 0, 0), (12, 1, 1)],
        None: [(10, 0, 0), (11, 0, 0), (12, 1, 0)],
    }
    assert [s.sp for s in chart.series] == [MAIL, WIKI, None]  # busiest first
    assert chart.peak == 3

    alice = daily_signins(db, parse_filter({"from": "2024-05-10", "to": "2024-05-12", "user": "alice"}))
    assert {s.sp: (s.success, s.failure) for s in alice.series} == {MAIL: (1, 0), WIKI: (1, 0), None: (1, 0)}
    wiki = daily_signins(db, parse_filter({"from": "2024-05-10", "to": "2024-05-12", "sp": WIKI, "result": "success"}))
    assert [(s.sp, s.success, s.failure) for s in wiki.series] == [(WIKI, 1, 1)]  # result does not narrow


def test_default_range_is_the_last_fortnight_and_long_ranges_are_cut(db: Database) -> None:
    today = date(2024, 5, 20)
    add(db, datetime(2024, 5, 7, 12, tzinfo=UTC), sp_entity_id=MAIL)  # the first day of the fortnight
    add(db, datetime(2024, 5, 6, 12, tzinfo=UTC), sp_entity_id=MAIL)  # one day too early
    chart = daily_signins(db, AuditFilter(), today=today)
    assert len(chart.days) == DEFAULT_CHART_DAYS and chart.days[0] == date(2024, 5, 7) and chart.end == today
    (mail,) = chart.series
    assert mail.success == 1 and mail.days[0].success == 1

    assert daily_signins(db, AuditFilter(), today=date(2023, 1, 1)).series == ()
    long = daily_signins(db, parse_filter({"from": "2023-01-01", "to": "2024-05-20"}))
    assert len(long.days) == MAX_CHART_DAYS and long.end == today and long.clipped_from == date(2023, 1, 1)
    only_start = daily_signins(db, parse_filter({"from": "2024-05-06"}), today=today)
    assert only_start.start == date(2024, 5, 6) and only_start.end == today and only_start.series[0].success == 2
