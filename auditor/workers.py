"""Share work out to forked worker processes and take the results back in order."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO, NoReturn, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterable

Item = TypeVar("Item")
Result = TypeVar("Result")

#: Environment variable with the number of worker processes (1: work in this process).
JOBS_VARIABLE = "CKPT_AUDIT_JOBS"


def worker_count(items: int, jobs: int | None, parallel_from: int) -> int:
    """Return how many processes should share `items` pieces of work: `jobs` when given, else
    $CKPT_AUDIT_JOBS when set, else one per CPU once there are `parallel_from` items or more;
    never more than the items, and 1 where no worker can be forked safely."""
    if jobs is None:
        wanted = os.environ.get(JOBS_VARIABLE, "").strip()
        if wanted.isdigit():
            jobs = int(wanted)
        elif items < parallel_from:
            return 1
    if jobs is None:
        affinity = getattr(os, "sched_getaffinity", None)
        jobs = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    workers = max(1, min(jobs, items))
    return workers if workers > 1 and can_fork() else 1


def can_fork() -> bool:
    """Return True where worker processes can be forked safely: os.fork exists (not on
    Windows) and no other thread runs, since a lock another thread holds at the fork would stay
    locked in the child for ever."""
    threading = sys.modules.get("threading")
    return hasattr(os, "fork") and (threading is None or threading.active_count() == 1)


def map_in_order(
    function: Callable[[Item], Result], items: Sequence[Item], workers: int
) -> Iterator[Result]:
    """Yield `function(item)` for each of `items`, in order, computed by `workers` processes:
    this one and forked children that send their results through pipes.

    Item i goes to child i % workers, and to this process when that is workers - 1. A full pipe
    holds a child back, so no more than a few results wait, however many items there are. A
    child that dies (killed, out of memory) leaves its items to this process. Call only where
    `can_fork()` is True; with one worker, everything runs here.
    """
    if workers <= 1:
        yield from map(function, items)
        return
    import pickle
    import signal

    mine = workers - 1
    readers: list[BinaryIO | None] = []
    children: list[int] = []
    try:
        for worker in range(mine):
            read_end, write_end = os.pipe()
            child = os.fork()
            if child == 0:  # pragma: no cover - runs in the child, which leaves by os._exit
                try:
                    os.close(read_end)
                    for reader in readers:
                        if reader is not None:
                            reader.close()
                    _serve(function, items[worker::workers], write_end)
                finally:
                    os._exit(1)  # whatever happens, never run the parent's code in the child
            os.close(write_end)
            children.append(child)
            readers.append(os.fdopen(read_end, "rb"))
        # This process also consumes the results (it writes the report): it does its next item
        # before it waits for a child's, so it is not idle while the children are busy.
        ahead: tuple[int, Result] | None = None
        for index, item in enumerate(items):
            worker = index % workers
            if worker == mine:
                if ahead is not None and ahead[0] == index:
                    result, ahead = ahead[1], None
                else:
                    result = function(item)
                yield result
                continue
            following = index - worker + mine
            if ahead is None and following < len(items):
                ahead = following, function(items[following])
            reader = readers[worker]
            if reader is not None:
                try:
                    result = pickle.load(reader)
                except (EOFError, OSError, pickle.UnpicklingError):
                    readers[worker] = None
                else:
                    yield result
                    continue
            yield function(item)
    finally:
        for reader in readers:
            if reader is not None:
                reader.close()
        for child in children:
            os.kill(child, signal.SIGKILL)  # done already, or its results are no longer wanted
            os.waitpid(child, 0)


def _serve(
    function: Callable[[Item], Result], items: Iterable[Item], pipe: int
) -> NoReturn:  # pragma: no cover - runs in a forked child
    """Send `function(item)` for each of `items` through `pipe`, in order, then exit."""
    import pickle

    status = 1
    try:
        with os.fdopen(pipe, "wb") as out:
            for item in items:
                pickle.dump(function(item), out, pickle.HIGHEST_PROTOCOL)
                out.flush()
        status = 0
    finally:
        # Never return into the parent's code, nor flush its inherited output buffers.
        os._exit(status)
