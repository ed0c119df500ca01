"""Text that fits a terminal: the commands' tables stay readable at 80 columns."""

from __future__ import annotations

ELLIPSIS = "…"


def shorten_middle(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters by taking out its middle (and an https:// in front): the host at
    the start and the path's end are what tell two URLs or entityIDs apart."""
    if len(text) <= width:
        return text
    # The scheme is the same on almost every line and the last thing worth the room; plain http stays visible.
    text = text.removeprefix("https://")
    if len(text) <= width:
        return text
    keep = max(width - len(ELLIPSIS), 2)
    head = (keep + 1) // 2
    return text[:head] + ELLIPSIS + text[len(text) - (keep - head) :]


def column_widths(room: int, shares: tuple[int, ...], floors: tuple[int, ...]) -> tuple[int, ...]:
    """Widths for the columns after the first, each its share of the ``room`` the table's text has (``shares``
    counts the first column too, which then takes what is left), never under its floor. Text cut to a
    column's width with shorten_middle then fits it on one line."""
    whole = sum(shares)
    return tuple(max(floor, room * share // whole) for share, floor in zip(shares[1:], floors, strict=True))
