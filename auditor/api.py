"""The library's entry point: audit paths on disk and return the result objects."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, NoReturn

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
    if workers > 1 and _can_fork():
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


def _can_fork() -> bool:
    """Return True where worker processes can be forked safely: os.fork exists (not on
    Windows) and no other thread runs, since a lock another thread holds at the fork would stay
    locked in the child for ever."""
    threading = sys.modules.get("threading")
    return hasattr(os, "fork") and (threading is None or threading.active_count() == 1)


#: Runs per chunk of work: small enough that the results in flight stay a few MB whatever
#: the sweep's size, large enough that handing chunks to workers costs little.
CHUNK_RUNS = 8


def _in_workers(
    locations: list[RunLocation], config: Config, curves: bool, workers: int
) -> Iterator[RunResult]:
    """Yield the audits of `locations`, in order, from `workers` processes: this one and
    forked children that send their results through pipes. Chunk i goes to child i % workers,
    and to this process when that is workers - 1; a full pipe holds a child back, so no more
    than a few chunks wait, whatever the sweep's size.
    """
    import pickle
    import signal

    chunks = [locations[i : i + CHUNK_RUNS] for i in range(0, len(locations), CHUNK_RUNS)]
    mine = workers - 1
    readers: list[BinaryIO | None] = []
    children: list[int] = []
    try:
        for worker in range(mine):
            read_end, write_end = os.pipe()
            child = os.fork()
            if child == 0:  # pragma: no cover - runs in the child, which leaves by os._exit
                os.close(read_end)
                for reader in readers:
                    assert reader is not None
                    reader.close()
                _serve(chunks[worker::workers], config, curves, write_end)
            os.close(write_end)
            children.append(child)
            readers.append(os.fdopen(read_end, "rb"))
        # This process also writes the report: it audits its next chunk before it waits for
        # a child's, so it is not idle while the children are busy.
        ahead: tuple[int, list[RunResult]] | None = None
        for index, chunk in enumerate(chunks):
            worker = index % workers
            done: list[RunResult] | None = None
            if worker == mine:
                if ahead is not None and ahead[0] == index:
                    done, ahead = ahead[1], None
            else:
                following = index - worker + mine
                if ahead is None and following < len(chunks):
                    ahead = following, _audit_chunk(chunks[following], config, curves)
                reader = readers[worker]
                if reader is not None:
                    try:
                        done = pickle.load(reader)
                    except (EOFError, OSError, pickle.UnpicklingError):
                        # The child died (killed, out of memory): its chunks are audited here.
                        readers[worker] = None
            yield from done if done is not None else _audit_chunk(chunk, config, curves)
    finally:
        for reader in readers:
            if reader is not None:
                reader.close()
        for child in children:
            os.kill(child, signal.SIGKILL)  # done already, or its results are no longer wanted
            os.waitpid(child, 0)


def _serve(
    chunks: list[list[RunLocation]], config: Config, curves: bool, pipe: int
) -> NoReturn:  # pragma: no cover - runs in a forked child
    """Audit `chunks` in order, sending each one's results through `pipe`, then exit."""
    import pickle

    status = 1
    try:
        with os.fdopen(pipe, "wb") as out:
            for chunk in chunks:
                pickle.dump(_audit_chunk(chunk, config, curves), out, pickle.HIGHEST_PROTOCOL)
                out.flush()
        status = 0
    finally:
        # Never return into the parent's code, nor flush its inherited output buffers.
        os._exit(status)


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
