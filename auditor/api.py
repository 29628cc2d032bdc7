"""The library's entry point: audit paths on disk and return the result objects."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from .audit import audit_run, error_result
from .config import Config
from .discover import RunLocation, discover
from .errors import StateFileError
from .read import read_run
from .results import AuditResult, RunResult

Progress = Callable[[int, int], None]


def audit(
    *paths: str | os.PathLike[str],
    config: Config | None = None,
    progress: Progress | None = None,
    curves: bool = True,
) -> AuditResult:
    """Return the audit of every run found below `paths` (folders or trainer_state.json files).

    An unreadable run becomes a RunResult with verdict "error"; it never stops the others.
    Raises UsageError when a path does not exist. `progress(done, total)` is called per run.
    With `curves` False, runs carry no train loss curve (`RunResult.train_losses` is empty),
    which keeps the memory of a large sweep's audit small.
    """
    cfg = config or Config()
    locations = discover([os.fspath(p) for p in paths])
    return AuditResult(tuple(audit_locations(locations, cfg, progress, curves)), cfg)


def audit_locations(
    locations: list[RunLocation],
    config: Config,
    progress: Progress | None = None,
    curves: bool = True,
) -> Iterable[RunResult]:
    """Yield the audit of each run location, in order."""
    for done, location in enumerate(locations, start=1):
        yield audit_location(location, config, curves)
        if progress is not None:
            progress(done, len(locations))


def audit_location(location: RunLocation, config: Config, curves: bool = True) -> RunResult:
    """Return the audit of one run location; a read failure becomes an "error" result."""
    try:
        return audit_run(read_run(location), config, curves)
    except StateFileError as exc:
        return error_result(location.run_dir, str(exc))
    except (RecursionError, MemoryError) as exc:
        return error_result(location.run_dir, f"{type(exc).__name__} while reading the run")
