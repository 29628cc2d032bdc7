"""The JSON report of SPEC section 6: strict RFC 8259 (non-finite numbers become null)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..config import Config
from ..fastjson import dumps_indented
from ..results import AuditResult, DeployJudgement, RunResult
from ..sweep import SweepBest, SweepBestTracker
from . import collected

# The top-level keys of the report around its runs, dumped with an empty list of runs and
# split there, so a streamed report and a rendered one are the same text.
_RUNS_SLOT = '"runs": []'


def render(result: AuditResult, view: str = "runs") -> str:
    """Return the schema_version 1 JSON report; the same document for every view."""
    return collected(write_report, result, view)


def write_report(
    runs: Iterable[RunResult],
    config: Config,
    write: Callable[[str], Any],
    view: str = "runs",
    deploy: DeployJudgement | None = None,
    sweep_best: tuple[SweepBest, ...] | None = None,
) -> None:
    """Write the JSON report of `runs` piece by piece through `write`, one run at a time; the
    same document for every view.

    Holds no more than one run's text at once; the sweep's best (computed on the way when
    `sweep_best` is None) and the config follow the runs, as in `AuditResult.to_dict`.
    """
    tracker = SweepBestTracker() if sweep_best is None else None
    head, _ = _frame(config, deploy, None)
    write(head)
    first = True
    for run in runs:
        if tracker is not None:
            tracker.add(run)
        text = dumps_indented(run.to_dict()).replace("\n", "\n    ")
        write(("\n    " if first else ",\n    ") + text)
        first = False
    _, tail = _frame(config, deploy, tracker.best() if tracker is not None else sweep_best)
    write(("\n  " if not first else "") + tail + "\n")


def _frame(
    config: Config, deploy: DeployJudgement | None, sweep_best: tuple[SweepBest, ...] | None
) -> tuple[str, str]:
    """Return the report's text before its runs (up to "runs": [) and after them (from ])."""
    data = AuditResult((), config, deploy, sweep_best or ()).to_dict()
    text = dumps_indented(data)
    at = text.index(_RUNS_SLOT) + len(_RUNS_SLOT) - 1
    return text[:at], text[at:]
