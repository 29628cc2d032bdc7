"""The library's entry point: audit paths on disk and return the result objects."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

from .audit import audit_run, error_result
from .config import Config
from .discover import RunLocation, discover
from .errors import StateFileError
from .read import read_run
from .results import AuditResult, RunResult

Progress = Callable[[int, int], None]

#: Below this many runs, starting worker processes costs more than it saves.
PARALLEL_FROM_RUNS = 64
#: Environment variable with the number of worker processes (1: audit in this process).
JOBS_VARIABLE = "CKPT_AUDIT_JOBS"


def audit(
    *paths: str | os.PathLike[str],
    config: Config | None = None,
    progress: Progress | None = None,
    curves: bool = True,
    jobs: int | None = None,
) -> AuditResult:
    """Return the audit of every run found below `paths` (folders or trainer_state.json files).

    An unreadable run becomes a RunResult with verdict "error"; it never stops the others.
    Raises UsageError when a path does not exist. `progress(done, total)` is called per run.
    With `curves` False, runs carry no train loss curve (`RunResult.train_losses` is empty),
    which keeps the memory of a large sweep's audit small. `jobs` worker processes share the
    runs (default: $CKPT_AUDIT_JOBS, else one per CPU once there are 64 runs or more).
    """
    cfg = config or Config()
    locations = discover([os.fspath(p) for p in paths])
    return AuditResult(tuple(audit_locations(locations, cfg, progress, curves, jobs)), cfg)


def audit_locations(
    locations: list[RunLocation],
    config: Config,
    progress: Progress | None = None,
    curves: bool = True,
    jobs: int | None = None,
) -> Iterable[RunResult]:
    """Yield the audit of each run location, in order, from `jobs` worker processes (see
    `audit`)."""
    workers = _workers(len(locations), jobs)
    if workers > 1:
        results = _in_workers(locations, config, curves, workers)
    else:
        results = (audit_location(location, config, curves) for location in locations)
    for done, result in enumerate(results, start=1):
        yield result
        if progress is not None:
            progress(done, len(locations))


def _workers(runs: int, jobs: int | None) -> int:
    if jobs is None:
        wanted = os.environ.get(JOBS_VARIABLE, "").strip()
        if wanted.isdigit():
            jobs = int(wanted)
        elif runs < PARALLEL_FROM_RUNS:
            return 1
    if jobs is None:
        affinity = getattr(os, "sched_getaffinity", None)
        jobs = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    return max(1, min(jobs, runs))


#: Runs per chunk of work: small enough that the results in flight stay a few MB whatever
#: the sweep's size, large enough that handing chunks to workers costs little.
CHUNK_RUNS = 8


def _in_workers(
    locations: list[RunLocation], config: Config, curves: bool, workers: int
) -> Iterator[RunResult]:
    """Yield the audits of `locations`, in order: every `workers`-th chunk audited here, the
    others by `workers - 1` worker processes meanwhile, never more than a few chunks ahead."""
    import multiprocessing
    from collections import deque
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    chunks = [locations[i : i + CHUNK_RUNS] for i in range(0, len(locations), CHUNK_RUNS)]
    # fork starts a worker in a millisecond with everything imported; elsewhere the default.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    ahead = 2 * (workers - 1)
    with ProcessPoolExecutor(workers - 1, mp_context=context) as pool:
        pending: deque[tuple[int, Future[list[RunResult]]]] = deque()
        queued = 0  # chunks looked at for handing out so far
        broken = False
        for index, chunk in enumerate(chunks):
            # Keep the workers `ahead` chunks busy; this process takes every workers-th chunk.
            while not broken and queued < len(chunks) and len(pending) < ahead:
                if queued % workers:
                    try:
                        pending.append(
                            (queued, pool.submit(_audit_chunk, chunks[queued], config, curves))
                        )
                    except BrokenProcessPool:
                        broken = True
                        break
                queued += 1
            if pending and pending[0][0] == index:
                _, future = pending.popleft()
                try:
                    yield from future.result()
                    continue
                except BrokenProcessPool:
                    # A worker died (killed, out of memory): audit the rest here.
                    broken = True
                    pending.clear()
            yield from _audit_chunk(chunk, config, curves)


def _audit_chunk(locations: list[RunLocation], config: Config, curves: bool) -> list[RunResult]:
    return [audit_location(location, config, curves) for location in locations]


def audit_location(location: RunLocation, config: Config, curves: bool = True) -> RunResult:
    """Return the audit of one run location; a read failure becomes an "error" result."""
    try:
        return audit_run(read_run(location), config, curves)
    except StateFileError as exc:
        return error_result(location.run_dir, str(exc))
    except (RecursionError, MemoryError) as exc:
        return error_result(location.run_dir, f"{type(exc).__name__} while reading the run")
