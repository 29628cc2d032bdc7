"""The report formats, one registry: a format is a render function plus one entry here."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ..results import AuditResult
from . import csv_report, html, json_report, junit, markdown, table

#: A renderer turns a result into the text of a report. `view` is "runs" (one row per run,
#: for scan and check) or "checkpoints" (one row per evaluated step, for show).
Renderer = Callable[[AuditResult, str], str]

RENDERERS: dict[str, Renderer] = {
    "table": table.render,
    "json": json_report.render,
    "csv": csv_report.render,
    "markdown": markdown.render,
    "junit": junit.render,
    "html": html.render,
}

#: Formats that can colour a terminal's text: their coloured renderer.
COLOURED: dict[str, Renderer] = {"table": partial(table.render, color=True)}


def render(result: AuditResult, fmt: str, view: str = "runs", color: bool = False) -> str:
    """Return `result` rendered in format `fmt` (a key of RENDERERS), coloured when asked and
    the format has colours."""
    renderer = COLOURED.get(fmt) if color else None
    return (renderer or RENDERERS[fmt])(result, view)
