"""The CSV report: one row per run or per evaluated step, for pandas or a spreadsheet."""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

from ..config import Config
from ..frame import columns, run_checkpoint_records, run_record
from ..results import AuditResult, DeployJudgement, RunResult
from ..sweep import SweepBest
from . import collected
from .text import safe

# A spreadsheet runs a cell starting with one of these as a formula (CSV injection); a
# folder name is anyone's text, so such cells get a leading quote, shown but never run.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Rows go out in pieces of about this many characters: few writes, little held.
_FLUSH_AT = 1 << 16
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def render(result: AuditResult, view: str = "runs") -> str:
    """Return CSV text: a header, then one row per run (view="runs") or per step ("checkpoints").

    Numbers are written in full precision (non-finite as nan/inf), missing values as empty
    cells, flags as true/false: `pandas.read_csv` gives back the columns of `to_frame`.
    """
    return collected(write_report, result, view)


def write_report(
    runs: Iterable[RunResult],
    config: Config,
    write: Callable[[str], Any],
    view: str = "runs",
    deploy: DeployJudgement | None = None,
    sweep_best: tuple[SweepBest, ...] | None = None,
) -> None:
    """Write the CSV report of `runs` through `write`, one run's rows at a time (see `render`):
    its memory stays flat however many runs there are. A CSV is rows only: the deploy
    judgement and the sweep's best are not in it."""
    level = "checkpoints" if view == "checkpoints" else "runs"
    names = list(columns(level))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def flush() -> None:
        write(buffer.getvalue())
        buffer.seek(0)
        buffer.truncate()

    writer.writerow(names)
    for run in runs:
        records = [run_record(run, config)] if level == "runs" else run_checkpoint_records(run)
        for record in records:
            writer.writerow([cell(record[name]) for name in names])
        if buffer.tell() >= _FLUSH_AT:
            flush()
    flush()


def cell(value: Any) -> str:
    """Return the CSV text of one value, with formula-like text neutralised."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    # Names are written as the table shows them: an undecodable byte or a control character in
    # a folder name becomes an escape instead of breaking the file's encoding or its rows.
    return neutralise(safe(str(value)))


def neutralise(text: str) -> str:
    """Return `text` with a leading quote when a spreadsheet would run it as a formula.

    Stricter than "a minus followed by a non-digit": "-1+2" is a formula too, so only text
    that is a plain number keeps a leading sign.
    """
    if text.startswith(_FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text
