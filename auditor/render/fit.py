"""Fitting a text table to a terminal's width: columns dropped in a set order, names shortened."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Sequence

#: Terminal colour codes take no room on screen.
_ESCAPES = re.compile(r"\x1b\[[0-9;]*m")
ELLIPSIS = "\u2026"

Rows = list[list[str]]
#: Builds a table's headers and rows with the named columns (or column variants) left out.
Build = Callable[[frozenset[str]], tuple[Sequence[str], Rows]]


def visible_width(text: str) -> int:
    """Return the widest line of `text` as a terminal shows it (colour codes take no room)."""
    return max((len(_ESCAPES.sub("", line)) for line in text.splitlines()), default=0)


def shorten_middle(name: str, limit: int) -> str:
    """Return `name` cut to `limit` characters in its middle, keeping both ends.

    A path keeps its first and last parts whole when they fit (`fixtures/…/run-0003`): the end
    tells runs of a sweep apart, the start says where they are.
    """
    if len(name) <= limit:
        return name
    parts = name.split("/")
    # As many trailing parts as fit after the first one.
    for kept in range(len(parts) - 2, 0, -1):
        candidate = "/".join([parts[0], ELLIPSIS, *parts[-kept:]])
        if len(candidate) <= limit:
            return candidate
    if limit <= 1:
        return ELLIPSIS[:limit]
    # The end of a name usually tells runs apart: give it two thirds of the room.
    keep = limit - 1
    left = keep // 3
    return name[:left] + ELLIPSIS + name[len(name) - (keep - left) :]


def fit_table(
    build: Build,
    drop_order: Sequence[str],
    width: int | None,
    layout: Callable[[Sequence[str], Rows], str],
    measure: Callable[[Sequence[str], Rows], int],
    name_column: int | None = None,
    min_name: int = 24,
) -> tuple[str, frozenset[str]]:
    """Return the table laid out by `layout`, narrowed to `width` columns (None: full width),
    and the columns it left out; `measure` returns the width `layout` would give the same
    headers and rows.

    Columns named in `drop_order` go one at a time, first to last, until the table fits; before
    each drop, names in `name_column` may be shortened in the middle down to `min_name`
    characters. After the last drop, names are shortened as far as needed.
    """
    if width is None:
        return layout(*build(frozenset())), frozenset()
    for count in range(len(drop_order) + 1):
        dropped = frozenset(drop_order[:count])
        headers, rows = build(dropped)
        # Measured, not laid out: a sweep's table may be thousands of rows, tried in several
        # widths before one fits.
        over = measure(headers, rows) - width
        if over <= 0:
            return layout(headers, rows), dropped
        if name_column is None:
            continue
        widest = max(len(cells[name_column]) for cells in [list(headers), *rows])
        if widest - over >= min_name or count == len(drop_order):
            limit = max(widest - over, len(headers[name_column]), 4)
            for cells in rows:
                cells[name_column] = shorten_middle(cells[name_column], limit)
            return layout(headers, rows), dropped
    return layout(headers, rows), dropped


def wrap(line: str, width: int | None) -> str:
    """Return a line of prose wrapped to `width` (None: as it is), later lines indented."""
    if width is None or len(line) <= width:
        return line
    return textwrap.fill(
        line,
        width=width,
        subsequent_indent="  ",
        break_long_words=False,
        break_on_hyphens=False,
    )
