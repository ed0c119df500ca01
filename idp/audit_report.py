"""Reading the audit trail back for the console's Activity page: filter, page, export, count per day.

Everything here is UTC: the database stores UTC (``models.utcnow``), a day is a UTC day, and the page says
so. A server in Shanghai and one in Frankfurt therefore draw the same chart from the same rows.

Works on SQLite and PostgreSQL. Only the daily count differs per dialect (how a timestamp becomes a day);
everything else is plain SQLAlchemy Core on indexed columns.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import get_args

from sqlalchemy import ColumnElement, Connection, Result, Select, func, literal_column, select

from idp.audit import AuditRecord
from idp.codes import AuditResult
from idp.store.db import Database
from idp.store.models import AuditEvent

RESULTS: tuple[AuditResult, ...] = get_args(AuditResult)
PAGE_SIZE = 50
DEFAULT_CHART_DAYS = 14
MAX_CHART_DAYS = 92
"""A bar per day stays readable up to about a quarter; a longer range shows its last MAX_CHART_DAYS days."""
EXPORT_BATCH = 1000
"""Rows per query while exporting: short queries, so a large export never holds one long read open."""
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
"""Cells a spreadsheet would run as a formula (OWASP "CSV injection"); such cells get a leading '."""
CSV_BOM = "\ufeff"
"""Excel (notably in zh-CN, where it otherwise assumes GBK) reads a CSV as UTF-8 only with this mark."""

_TABLE = AuditEvent.__table__
_MAX_LENGTHS = {"user": 256, "sp": 1024, "event": 40}


class AuditFilterError(ValueError):
    """A filter value cannot be used; ``field`` names the query parameter, the message says why."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class AuditReportError(RuntimeError):
    """The database cannot answer this report (a dialect we do not support)."""


@dataclass(frozen=True)
class AuditFilter:
    """Which rows to show. Empty fields match everything; ``start``/``end`` are inclusive UTC days."""

    username: str | None = None
    sp: str | None = None
    event: str | None = None
    result: str | None = None
    start: date | None = None
    end: date | None = None

    def query_args(self) -> dict[str, str]:
        """The filter as query parameters (the inverse of parse_filter), for links that keep it."""
        args = {
            "user": self.username,
            "sp": self.sp,
            "event": self.event,
            "result": self.result,
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
        }
        return {k: v for k, v in args.items() if v}


def parse_filter(args: Mapping[str, str]) -> AuditFilter:
    """A filter from query parameters ``user``, ``sp``, ``event``, ``result``, ``from``, ``to``
    (dates as YYYY-MM-DD). Raise AuditFilterError naming the parameter that is wrong."""
    text = {name: _text(args, name) for name in ("user", "sp", "event")}
    result = _text(args, "result")
    if result is not None and result not in RESULTS:
        raise AuditFilterError("result", f"{result!r} is not one of {', '.join(RESULTS)}")
    start, end = _day(args, "from"), _day(args, "to")
    if start and end and start > end:
        raise AuditFilterError("from", f"{start.isoformat()} is after the end of the range ({end.isoformat()})")
    # Sign-in usernames are stored case-folded (directory.client.normalize_username): match them that way.
    user = text["user"].casefold() if text["user"] else None
    return AuditFilter(username=user, sp=text["sp"], event=text["event"], result=result, start=start, end=end)


def _text(args: Mapping[str, str], name: str) -> str | None:
    value = (args.get(name) or "").strip()
    if not value:
        return None
    limit = _MAX_LENGTHS.get(name)
    if limit is not None and len(value) > limit:
        raise AuditFilterError(name, f"longer than {limit} characters")
    if not value.isprintable():
        raise AuditFilterError(name, "contains control characters")
    return value


def _day(args: Mapping[str, str], name: str) -> date | None:
    value = (args.get(name) or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise AuditFilterError(name, f"{value[:40]!r} is not a date (YYYY-MM-DD)") from None


@dataclass(frozen=True)
class AuditPage:
    rows: tuple[AuditRecord, ...]
    """Newest first."""
    newer: int | None
    """Pass as ``after`` for the page before this one (newer rows); None when this page is the newest."""
    older: int | None
    """Pass as ``before`` for the next page (older rows); None when nothing older matches."""


def page(
    db: Database, flt: AuditFilter, *, before: int | None = None, after: int | None = None, size: int = PAGE_SIZE
) -> AuditPage:
    """One page of matching rows, newest first, by keyset on the row id: a page stays put while sign-ins keep
    arriving (an offset would shift every page by the rows written meanwhile). ``before`` gives the rows older
    than that id, ``after`` the rows newer than it; neither gives the newest page."""
    if before is not None and after is not None:
        raise AuditFilterError("after", "give either before or after, not both")
    base = _filtered(select(_TABLE), flt)
    with db.engine.connect() as conn:
        if after is None:
            q = base.order_by(AuditEvent.id.desc()).limit(size + 1)
            if before is not None:
                q = q.where(AuditEvent.id < before)
            fetched = _rows(conn.execute(q))
            rows, more_older = fetched[:size], len(fetched) > size
            more_newer = bool(rows) and _exists(conn, base.where(AuditEvent.id > rows[0].id))
        else:
            q = base.where(AuditEvent.id > after).order_by(AuditEvent.id.asc()).limit(size + 1)
            fetched = _rows(conn.execute(q))
            rows, more_newer = list(reversed(fetched[:size])), len(fetched) > size
            more_older = bool(rows) and _exists(conn, base.where(AuditEvent.id < rows[-1].id))
    return AuditPage(
        rows=tuple(rows),
        newer=rows[0].id if rows and more_newer else None,
        older=rows[-1].id if rows and more_older else None,
    )


def export_rows(db: Database, flt: AuditFilter, *, batch: int = EXPORT_BATCH) -> Iterator[AuditRecord]:
    """Every matching row, newest first, read in batches (for a CSV export of any size)."""
    before: int | None = None
    while True:
        current = page(db, flt, before=before, size=batch)
        yield from current.rows
        if current.older is None:
            return
        before = current.older


def csv_cell(value: object) -> str:
    """A value as a CSV cell a spreadsheet shows as text: a leading = + - @ (or tab, CR) would make Excel or
    LibreOffice evaluate it, and usernames and SP error texts come from outside."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def csv_lines(rows: Iterable[AuditRecord], header: Sequence[str]) -> Iterator[str]:
    """The rows as CSV text, one line at a time (for streaming): UTF-8 BOM first, then ``header`` (the
    column titles, in the reader's language: id, time UTC, event, result, reason, user, SP, address, detail,
    request id)."""
    if len(header) != 10:
        raise ValueError("the CSV header has 10 columns")
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: Sequence[object]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([csv_cell(c) for c in cells])
        return buffer.getvalue()

    yield CSV_BOM + line(header)
    for r in rows:
        when = r.at.strftime("%Y-%m-%d %H:%M:%S")
        yield line(
            [r.id, when, r.event, r.result, r.reason, r.username, r.sp_entity_id, r.client_ip, r.detail, r.request_id]
        )


@dataclass(frozen=True)
class DayCount:
    day: date
    success: int = 0
    failure: int = 0
    """Every sign-in that did not succeed (the audit writes "failure"; anything else not "success" counts too)."""


@dataclass(frozen=True)
class SpSeries:
    sp: str | None
    """The SP's entityID; None for sign-ins on our own login page without any SP."""
    days: tuple[DayCount, ...]
    """One per day of the chart's range, in order; days without sign-ins are zeros."""

    @property
    def success(self) -> int:
        return sum(d.success for d in self.days)

    @property
    def failure(self) -> int:
        return sum(d.failure for d in self.days)


@dataclass(frozen=True)
class SigninChart:
    start: date
    end: date
    """Both inclusive, UTC days."""
    series: tuple[SpSeries, ...]
    """Busiest SP first."""
    clipped_from: date | None = None
    """The start the filter asked for, when the range was longer than MAX_CHART_DAYS and was cut."""
    days: tuple[date, ...] = field(init=False)

    def __post_init__(self) -> None:
        count = (self.end - self.start).days + 1
        object.__setattr__(self, "days", tuple(self.start + timedelta(days=n) for n in range(count)))

    @property
    def peak(self) -> int:
        """The largest day's total (success + failure) over every SP: the chart's common scale."""
        return max((d.success + d.failure for s in self.series for d in s.days), default=0)


def chart_range(flt: AuditFilter, today: date) -> tuple[date, date, date | None]:
    """(start, end, clipped_from): the filter's days, else the DEFAULT_CHART_DAYS up to today; at most
    MAX_CHART_DAYS, keeping the most recent."""
    end = flt.end or max(today, flt.start or today)
    start = flt.start or end - timedelta(days=DEFAULT_CHART_DAYS - 1)
    if (end - start).days + 1 > MAX_CHART_DAYS:
        return end - timedelta(days=MAX_CHART_DAYS - 1), end, start
    return start, end, None


def daily_signins(db: Database, flt: AuditFilter, *, today: date | None = None) -> SigninChart:
    """Successful and failed sign-ins per SP and UTC day over the filter's range (default: the last
    DEFAULT_CHART_DAYS days). The user and SP filters apply; event and result do not (this is always
    sign-ins, both outcomes)."""
    start, end, clipped_from = chart_range(flt, today or datetime.now(UTC).date())
    day = _day_expression(db)
    q = (
        select(day, AuditEvent.sp_entity_id, AuditEvent.result, func.count())
        .where(AuditEvent.event == "signin")
        .where(AuditEvent.at >= _midnight(start), AuditEvent.at < _midnight(end + timedelta(days=1)))
        .group_by(day, AuditEvent.sp_entity_id, AuditEvent.result)
    )
    q = _filtered(q, AuditFilter(username=flt.username, sp=flt.sp))
    counts: dict[str | None, dict[date, list[int]]] = {}
    with db.engine.connect() as conn:
        for bucket, sp, result, n in conn.execute(q):
            cell = counts.setdefault(sp, {}).setdefault(date.fromisoformat(str(bucket)[:10]), [0, 0])
            cell[0 if result == "success" else 1] += n
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    series = [
        SpSeries(sp=sp, days=tuple(DayCount(d, *by_day.get(d, (0, 0))) for d in days)) for sp, by_day in counts.items()
    ]
    series.sort(key=lambda s: (-(s.success + s.failure), s.sp or ""))
    return SigninChart(start=start, end=end, series=tuple(series), clipped_from=clipped_from)


def _day_expression(db: Database) -> ColumnElement:
    """The UTC day of ``at`` as text YYYY-MM-DD, in this database's dialect."""
    dialect = db.engine.dialect.name
    if dialect == "sqlite":
        # SQLite keeps DateTime as text in UTC (SQLAlchemy drops the offset of an aware value when storing).
        return func.date(AuditEvent.at)
    if dialect == "postgresql":
        # timestamptz -> the wall-clock time in UTC, whatever the session's TimeZone setting is.
        # Constants as literals, not bound parameters: PostgreSQL sees two differently bound copies of the
        # expression in SELECT and GROUP BY as different expressions and refuses the query.
        return func.to_char(func.timezone(literal_column("'UTC'"), AuditEvent.at), literal_column("'YYYY-MM-DD'"))
    raise AuditReportError(f"daily counts are implemented for SQLite and PostgreSQL, not {dialect}")


def _filtered(q: Select, flt: AuditFilter) -> Select:
    if flt.username:
        q = q.where(AuditEvent.username == flt.username)
    if flt.sp:
        q = q.where(AuditEvent.sp_entity_id == flt.sp)
    if flt.event:
        q = q.where(AuditEvent.event == flt.event)
    if flt.result:
        q = q.where(AuditEvent.result == flt.result)
    if flt.start:
        q = q.where(AuditEvent.at >= _midnight(flt.start))
    if flt.end:
        q = q.where(AuditEvent.at < _midnight(flt.end + timedelta(days=1)))
    return q


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _exists(conn: Connection, q: Select) -> bool:
    return conn.execute(q.with_only_columns(AuditEvent.id).limit(1)).first() is not None


def _rows(result: Result) -> list[AuditRecord]:
    return [AuditRecord.from_row(r) for r in result]
