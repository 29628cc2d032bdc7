"""The library's entry point: audit paths (local, or URLs of object stores) and return results."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import ExitStack
from functools import partial
from typing import TYPE_CHECKING

from .config import Config
from .discover import discover
from .errors import StateFileError, UsageError
from .picks import audit_run, error_result
from .results import AuditResult, RunResult
from .sources import Found, read_found
from .storage import is_url
from .workers import (
    REMOTE_THREADS,
    cpu_workers,
    frozen_heap,
    map_in_order,
    process_executor,
    share_out,
    shut_down,
    thread_executor,
    worker_count,
)

if TYPE_CHECKING:
    from concurrent.futures import Executor

Progress = Callable[[int, int], None]

PathArgument = str | os.PathLike[str]


def audit(
    *paths: PathArgument | list[PathArgument] | tuple[PathArgument, ...],
    config: Config | None = None,
    progress: Progress | None = None,
    curves: bool = True,
    jobs: int | None = None,
    executor: Executor | None = None,
) -> AuditResult:
    """Return the audit of every run found below `paths`: folders, trainer_state.json files, or
    URLs of object stores and the Hub (`s3://...`, `gs://...`, `hf://user/model`, any fsspec URL;
    they need `pip install 'checkpoint-auditor[remote]'`).

    Each path is a str or an os.PathLike (pathlib.Path), or a list or tuple of them; anything
    else (bytes, a generator, a number) raises UsageError naming what is accepted, as does a
    path that does not exist or a `config.eval_key` that no readable run logs. An unreadable run
    becomes a RunResult with verdict "error"; it never stops the others. `progress(done, total)`
    is called per run.
    With `curves` False, runs carry no train loss curve (`RunResult.train_losses` is empty),
    which keeps the memory of a large sweep's audit small. `jobs` worker processes share the
    runs (default: $CKPT_AUDIT_JOBS, else one per CPU once the runs audited here show that the
    runs left are worth sharing out); runs in remote stores are read by up to 16 threads
    instead. `executor` (any concurrent.futures.Executor, a Dask cluster's) runs the per-run
    audits in its place.
    """
    cfg = config or Config()
    locations = discover(_path_list(paths))
    runs = tuple(audit_locations(locations, cfg, progress, curves, jobs, executor))
    check_eval_key(runs, cfg)
    return AuditResult(runs, cfg)


def _path_list(paths: tuple[object, ...]) -> list[str]:
    """Return `paths` (each a path, or a list or tuple of paths) as one list of str paths."""
    found: list[str] = []
    for argument in paths:
        for path in argument if isinstance(argument, (list, tuple)) else (argument,):
            text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
            if not isinstance(text, str):
                raise UsageError(
                    "audit() takes paths as str or os.PathLike (such as pathlib.Path), or a list "
                    f"of them; got {type(path).__name__}"
                    + (" (decode it with os.fsdecode)" if isinstance(text or path, bytes) else "")
                )
            found.append(text)
    return found


def audit_locations(
    locations: list[Found],
    config: Config,
    progress: Progress | None = None,
    curves: bool = True,
    jobs: int | None = None,
    executor: Executor | None = None,
) -> Generator[RunResult, None, None]:
    """Yield the audit of each run location, in order (one result per training a location
    holds), from `jobs` worker processes or on `executor` (see `audit`)."""
    done = 0

    def audited(results: list[RunResult]) -> Iterator[RunResult]:
        nonlocal done
        yield from results
        done += 1
        if progress is not None:
            progress(done, len(locations))

    with ExitStack() as stack:
        ahead, chunk = AHEAD_CHUNKS, CHUNK_RUNS
        if executor is None:
            remote = any(is_url(location.run_dir) for location in locations)
            workers = worker_count(len(locations), jobs)
            if workers is None and remote:
                # Remote reads wait on the network: threads, one run each, overlap the waits.
                workers = min(REMOTE_THREADS, len(locations))
            if workers is None:
                # Nobody said how many: this process audits alone until the time that took
                # says the runs left are worth sharing out (a few large runs are; a few
                # dozen tiny ones are not).
                seconds = 0.0
                while done < len(locations):
                    chunk = share_out(seconds, done, len(locations) - done)
                    if chunk:
                        break
                    start = time.perf_counter()
                    results = audit_location(locations[done], config, curves)
                    seconds += time.perf_counter() - start
                    yield from audited(results)
                workers = cpu_workers(len(locations) - done) if chunk else 1
            if workers > 1:
                if remote:
                    executor, chunk = thread_executor(workers), 1
                else:
                    stack.enter_context(frozen_heap())
                    executor = process_executor(workers)
                # On an early stop, what was not started is dropped, never run to the end.
                stack.callback(shut_down, executor)
                ahead = 3 * workers
        left = locations[done:]
        if executor is not None:
            chunks = [left[i : i + chunk] for i in range(0, len(left), chunk)]
            task = partial(_audit_chunk, config=config, curves=curves)
            # The workers audit; this process writes the report as their results come (auditing
            # here too was slower: it holds back the threads that hand runs to the workers).
            shared = map_in_order(task, chunks, executor, ahead)
            stack.callback(shared.close)
            per_location: Iterator[list[RunResult]] = (
                results for chunk_results in shared for results in chunk_results
            )
        else:
            per_location = (audit_location(location, config, curves) for location in left)
        for results in per_location:
            yield from audited(results)


#: Runs per chunk of work when the workers are asked for (`jobs`, an executor): small enough
#: that the results in flight stay a few MB whatever the sweep's size, large enough that
#: handing chunks to workers costs little.
CHUNK_RUNS = 8
#: Chunks in flight on an executor given by the caller (a cluster may have many workers).
AHEAD_CHUNKS = 64


def _audit_chunk(locations: list[Found], config: Config, curves: bool) -> list[list[RunResult]]:
    return [audit_location(location, config, curves) for location in locations]


def audit_location(location: Found, config: Config, curves: bool = True) -> list[RunResult]:
    """Return the audit of one run location, one result per training it holds (an MLflow
    database: one per run); a read failure becomes one "error" result."""
    try:
        return [audit_run(record, config, curves) for record in read_found(location, config)]
    except StateFileError as exc:
        return [error_result(location.run_dir, str(exc))]
    except (RecursionError, MemoryError) as exc:
        return [error_result(location.run_dir, f"{type(exc).__name__} while reading the run")]


def check_eval_key(runs: Iterable[RunResult], config: Config) -> None:
    """Raise UsageError when the configured eval key is logged by none of the runs that could
    be read: a typo must never turn every run into "no_candidates" (SPEC section 2)."""
    wanted = config.eval_key
    if wanted is None:
        return
    logged: set[str] = set()
    read = False
    for run in runs:
        if run.error is not None:
            continue
        if run.eval_key == wanted:
            return
        read = True
        logged.update(run.eval_keys)
    if read:
        raise UsageError(
            f"eval key '{wanted}' (--eval-key, config eval_key) is logged by no run (they "
            f"log: "
            f"{', '.join(sorted(logged)) or 'no evaluation loss at all'}); "
            "pass one of those, or leave --eval-key out"
        )
