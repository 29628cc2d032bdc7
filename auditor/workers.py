"""Share work out to forked worker processes and take the results back in order."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, BinaryIO, NoReturn, TypeVar

from . import interrupts
from .errors import UsageError

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
        jobs = _jobs_from_environment()
        if jobs is None and items < parallel_from:
            return 1
    if jobs is None:
        affinity = getattr(os, "sched_getaffinity", None)
        jobs = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    workers = max(1, min(jobs, items, _descriptor_budget()))
    return workers if workers > 1 and can_fork() else 1


def _jobs_from_environment() -> int | None:
    """Return $CKPT_AUDIT_JOBS as a number, None when unset; raise UsageError when it is not
    a whole number."""
    wanted = os.environ.get(JOBS_VARIABLE, "").strip()
    if not wanted:
        return None
    # str.isdigit() also accepts "²" and other digits that int() refuses.
    if not (wanted.isascii() and wanted.isdigit()):
        raise UsageError(
            f"{JOBS_VARIABLE}={wanted!r:.40}: not a whole number of worker processes; set it "
            "to 1 (no worker process) or more, or unset it"
        )
    digits = wanted.lstrip("0")
    # More processes than this could never be started; int() of thousands of digits fails.
    return int(digits) if len(digits) <= 9 else 10**9


def _descriptor_budget() -> int:
    """Return how many workers the open-file limit allows: each holds a pipe open here, and a
    quarter of the limit is theirs at most, so reading the runs still finds descriptors."""
    try:
        import resource
    except ImportError:  # Windows: no fork either
        return 1
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1, soft // 4) if soft != resource.RLIM_INFINITY else 1 << 20


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
    child that dies (killed, out of memory) leaves its items to this process, and when the
    children cannot all be started (no process or descriptor left), this process does every
    item. No child outlives the iteration, however it ends (an interrupt included). Call only
    where `can_fork()` is True; with one worker, everything runs here.
    """
    if workers <= 1:
        yield from map(function, items)
        return
    readers: list[BinaryIO | None] = []
    children: list[int] = []
    try:
        try:
            _start(function, items, workers, readers, children)
        except OSError:
            _stop(readers, children)
            yield from map(function, items)
            return
        yield from _collect(function, items, workers, readers)
    finally:
        _stop(readers, children)


def _start(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    workers: int,
    readers: list[BinaryIO | None],
    children: list[int],
) -> None:
    """Fork the `workers - 1` children, appending each one's pid and result pipe."""
    for worker in range(workers - 1):
        read_end, write_end = os.pipe()
        # An interrupt between the fork and the child's `try` would run the parent's code in
        # the child: held back until the child is inside it.
        with interrupts.held() as before:
            try:
                child = os.fork()
            except OSError:
                os.close(read_end)
                os.close(write_end)
                raise
            if child == 0:  # pragma: no cover - runs in the child, which leaves by os._exit
                try:
                    interrupts.release(before)
                    os.close(read_end)
                    for reader in readers:
                        if reader is not None:
                            reader.close()
                    _serve(function, items[worker::workers], write_end)
                finally:
                    os._exit(1)  # whatever happens, never run the parent's code in the child
            children.append(child)
        os.close(write_end)
        readers.append(os.fdopen(read_end, "rb"))


def _collect(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    workers: int,
    readers: list[BinaryIO | None],
) -> Iterator[Result]:
    """Yield the results in order: this process's own, and the children's from their pipes."""
    import pickle

    mine = workers - 1
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
                reader.close()
                readers[worker] = None
            else:
                yield result
                continue
        yield function(item)


def _stop(readers: list[BinaryIO | None], children: list[int]) -> None:
    """Close the pipes and end and reap every child, without an interrupt cutting it short."""
    import signal

    with interrupts.held():
        for reader in readers:
            if reader is not None:
                reader.close()
        readers.clear()
        for child in children:
            os.kill(child, signal.SIGKILL)  # done already, or its results are no longer wanted
            os.waitpid(child, 0)
        children.clear()


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
