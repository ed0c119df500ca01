"""/admin/activity: the audit trail (filtered, paged, exported as CSV) and a chart of sign-ins per SP and day.

The queries live in idp.audit_report; this module turns query parameters into a filter, the chart's numbers
into SVG geometry, and rows into a page or a CSV download. Times are UTC everywhere, and the page says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import get_args

from flask import Response, render_template, request

from idp.audit_report import (
    PAGE_SIZE,
    RESULTS,
    AuditFilter,
    AuditFilterError,
    AuditPage,
    SigninChart,
    SpSeries,
    csv_lines,
    daily_signins,
    export_rows,
    page,
    parse_filter,
)
from idp.codes import AuditEvent
from idp.web.admin.blueprint import bp
from idp.web.admin.guard import current_admin
from idp.web.admin.sp_names import sp_names
from idp.web.i18n import translate, translate_code
from idp.web.services import services

# SVG geometry of one SP's chart, in viewBox units (the stylesheet scales the SVG to the panel's width).
CHART_WIDTH = 900
CHART_HEIGHT = 120
_LEFT, _RIGHT, _TOP, _BOTTOM = 40, 6, 10, 20
SUCCESS_FILL = "#2f9e44"
FAILURE_FILL = "#c92a2a"
EVENTS: tuple[str, ...] = get_args(AuditEvent)


@dataclass(frozen=True)
class Bar:
    """One day's stacked bar: successes from the baseline up, failures on top."""

    day: str
    success: int
    failure: int
    x: float
    width: float
    success_y: float
    success_height: float
    failure_y: float
    failure_height: float


@dataclass(frozen=True)
class SpChart:
    sp: str | None
    label: str
    series: SpSeries
    bars: tuple[Bar, ...]


@bp.get("/activity")
def activity() -> tuple[str, int] | str:
    svc = services()
    try:
        flt = parse_filter(request.args)
        before, after = _cursor("before"), _cursor("after")
        current = page(svc.db, flt, before=before, after=after)
        chart = daily_signins(svc.db, flt)
    except AuditFilterError as exc:
        return _render(error=_filter_error(exc), error_field=exc.field), 400
    return _render(flt=flt, current=current, chart=chart)


@bp.get("/activity.csv")
def activity_csv() -> Response | tuple[str, int]:
    svc = services()
    admin = current_admin()
    try:
        flt = parse_filter(request.args)
    except AuditFilterError as exc:
        svc.audit.record_change(
            "admin_activity_export", actor=admin.username, result="refused", reason="bad_filter",
            note=str(exc), ip=request.remote_addr,
        )  # fmt: skip
        return _render(error=_filter_error(exc), error_field=exc.field), 400
    # Recorded before the first byte: who took a copy of the trail, and of which part of it.
    svc.audit.record_change(
        "admin_activity_export", actor=admin.username, after=flt.query_args(), ip=request.remote_addr
    )
    header = [translate(f"admin.activity.csv.{name}") for name in _CSV_COLUMNS]
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return Response(
        _encoded(csv_lines(export_rows(svc.db, flt), header)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="activity-{stamp}.csv"'},
    )


_CSV_COLUMNS = ("id", "time", "event", "result", "reason", "user", "sp", "ip", "detail", "request_id")


def _encoded(lines: Iterator[str]) -> Iterator[bytes]:
    for line in lines:
        yield line.encode("utf-8")


def _cursor(name: str) -> int | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit() or len(value) > 18:
        raise AuditFilterError(name, f"{value[:20]!r} is not a row number")
    return int(value)


def _filter_error(exc: AuditFilterError) -> str:
    return translate("admin.activity.bad_filter", field=exc.field, problem=str(exc).split(": ", 1)[-1])


def _render(
    *,
    flt: AuditFilter | None = None,
    current: AuditPage | None = None,
    chart: SigninChart | None = None,
    error: str | None = None,
    error_field: str | None = None,
) -> str:
    names = sp_names()
    args = flt.query_args() if flt else {}
    return render_template(
        "admin/activity.html",
        form=request.args,
        args=args,
        error=error,
        error_field=error_field,
        current=current,
        page_size=PAGE_SIZE,
        chart=chart,
        charts=_charts(chart, names) if chart else (),
        sp_names=names,
        sp_choices=_sp_choices(names, request.args.get("sp", "").strip()),
        event_choices=_event_choices(request.args.get("event", "").strip()),
        results=RESULTS,
        chart_width=CHART_WIDTH,
        chart_height=CHART_HEIGHT,
        success_fill=SUCCESS_FILL,
        failure_fill=FAILURE_FILL,
        plot=(_LEFT, _TOP, CHART_WIDTH - _RIGHT, CHART_HEIGHT - _BOTTOM),
    )


def _event_choices(chosen: str) -> list[tuple[str, str]]:
    """Every audit event in the admin's words, in their alphabetical order; the code is the value sent."""
    choices = sorted(((code, translate_code("event", code)) for code in EVENTS), key=lambda c: c[1].casefold())
    if chosen and chosen not in EVENTS:
        # A link (or a bookmark) with an event an older version wrote: its rows may still be asked for.
        choices.append((chosen, translate_code("event", chosen)))
    return choices


def _sp_choices(names: dict[str, str], chosen: str) -> list[tuple[str, str]]:
    choices = sorted(names.items(), key=lambda item: item[1].casefold())
    if chosen and chosen not in names:
        # An SP removed since: its rows are still in the trail and may still be filtered on.
        choices.append((chosen, chosen))
    return choices


def _charts(chart: SigninChart, names: dict[str, str]) -> list[SpChart]:
    label_none = translate("admin.activity.no_sp")
    return [
        SpChart(
            sp=s.sp,
            label=label_none if s.sp is None else names.get(s.sp, s.sp),
            series=s,
            bars=_bars(s, chart.peak),
        )
        for s in chart.series
    ]


def _bars(series: SpSeries, peak: int) -> tuple[Bar, ...]:
    """Stacked bars on a scale shared by every SP of the page (so a busy SP looks busier than a quiet one)."""
    plot_width = CHART_WIDTH - _LEFT - _RIGHT
    plot_height = CHART_HEIGHT - _TOP - _BOTTOM
    baseline = CHART_HEIGHT - _BOTTOM
    slot = plot_width / len(series.days)
    width = max(slot * 0.7, 1.0)
    bars = []
    for n, day in enumerate(series.days):
        success_height = plot_height * day.success / peak if peak else 0.0
        failure_height = plot_height * day.failure / peak if peak else 0.0
        bars.append(
            Bar(
                day=day.day.isoformat(),
                success=day.success,
                failure=day.failure,
                x=round(_LEFT + n * slot + (slot - width) / 2, 1),
                width=round(width, 1),
                success_y=round(baseline - success_height, 1),
                success_height=round(success_height, 1),
                failure_y=round(baseline - success_height - failure_height, 1),
                failure_height=round(failure_height, 1),
            )
        )
    return tuple(bars)
