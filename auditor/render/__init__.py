"""The report formats, one registry: a format is a render function plus one entry here."""

from __future__ import annotations

from collections.abc import Callable

from ..results import AuditResult
from . import json_report, table

#: A renderer turns a result into the text of a report. `view` is "runs" (one row per run,
#: for scan and check) or "checkpoints" (one row per evaluated step, for show).
Renderer = Callable[[AuditResult, str], str]

RENDERERS: dict[str, Renderer] = {
    "table": table.render,
    "json": json_report.render,
}


def render(result: AuditResult, fmt: str, view: str = "runs") -> str:
    """Return `result` rendered in format `fmt` (a key of RENDERERS)."""
    return RENDERERS[fmt](result, view)
