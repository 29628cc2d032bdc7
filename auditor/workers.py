"""Share the per-run audits out to an executor: processes, threads, or a Dask cluster's."""

from __future__ import annotations

import gc
import os
import sys
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from .errors import UsageError
from .interrupts import held

if TYPE_CHECKING:
    # concurrent.futures imports multiprocessing and pickle: only when there are workers.
    from concurrent.futures import Executor, Future

Item = TypeVar("Item")
Result = TypeVar("Result")

#: Environment variable with the number of workers (1: work in this process).
JOBS_VARIABLE = "CKPT_AUDIT_JOBS"
DASK_INSTALL = "pip install 'checkpoint-auditor[dask]'"
#: Remote reads wait on the network, not the CPU: this many threads read runs at once.
REMOTE_THREADS = 16


def worker_count(items: int, jobs: int | None) -> int | None:
    """Return how many workers were asked to share `items` pieces of work: `jobs` when given,
    else $CKPT_AUDIT_JOBS when set, never more than the items; None when neither says, for the
    caller to decide from the work (`share_out`)."""
    if jobs is None:
        jobs = _jobs_from_environment()
        if jobs is None:
            return None
    return _at_most(jobs, items)


def cpu_workers(items: int) -> int:
    """Return one worker per CPU this process may run on, never more than the items."""
    affinity = getattr(os, "sched_getaffinity", None)
    return _at_most(len(affinity(0)) if affinity else (os.cpu_count() or 1), items)


def _at_most(jobs: int, items: int) -> int:
    return max(1, min(jobs, items, _descriptor_budget()))


#: Work done here before the work left is judged: enough runs that their time says what a run
#: costs (the first run also pays for what it imports first).
LOOK_SECONDS = 0.005
#: The work left that is worth sharing out: two workers halve it, and starting them and handing
#: runs over costs about 40 ms (measured on 2 CPUs), so less than this is done sooner here.
SHARE_FROM_SECONDS = 0.1
#: The work handed to a worker at once: long enough that handing it over costs little, short
#: enough that the results in flight stay few.
CHUNK_SECONDS = 0.02
CHUNK_MOST = 256


def share_out(seconds: float, done: int, left: int) -> int:
    """Return how many of the `left` items to hand a worker at a time, judged from `done` items
    that took `seconds` here; 0 while sharing would not pay (too little work seen to judge, or
    too little left)."""
    if not done or seconds < LOOK_SECONDS or seconds / done * left < SHARE_FROM_SECONDS:
        return 0
    return max(1, min(CHUNK_MOST, int(CHUNK_SECONDS * done / seconds)))


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
    """Return how many workers the open-file limit allows: each holds pipes open here, and a
    quarter of the limit is theirs at most, so reading the runs still finds descriptors."""
    try:
        import resource
    except ImportError:  # Windows
        return 1 << 20
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1, soft // 4) if soft != resource.RLIM_INFINITY else 1 << 20


def process_executor(workers: int) -> Executor:
    """Return a pool of `workers` processes started safely on every platform. On Linux they
    are forked, at once, while no other thread runs; beside other threads (fsspec's event
    loop) they are forked from a clean server process instead, since a fork copies the locks
    other threads hold, locked for ever in the child. Elsewhere (macOS, Windows) they are
    spawned: fork is unsafe on macOS whatever runs."""
    import multiprocessing
    import threading
    from concurrent.futures import ProcessPoolExecutor

    if not sys.platform.startswith("linux"):
        method = "spawn"
    elif threading.active_count() == 1:
        method = "fork"
    else:
        method = "forkserver"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # The server imports the audit once; each worker forked from it starts ready.
        context.set_forkserver_preload(["auditor.api"])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Keep the objects alive now out of the garbage collector's walks (`gc.freeze`) while
    forked workers run. A worker's collections would otherwise walk every object it inherits,
    and copy each page it shares with this process by marking them (measured: about 8 ms of a
    0.35 s sweep). Left as it is when objects are frozen already (by the program calling us)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def shut_down(executor: Executor) -> None:
    """Stop `executor`'s processes once the items they have started are done, dropping the
    others; an interrupt is delivered after, never in the middle (which leaves processes)."""
    with held():
        executor.shutdown(wait=True, cancel_futures=True)


def thread_executor(workers: int) -> Executor:
    """Return a pool of `workers` threads (for reads that wait on a remote store)."""
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ckpt-audit-read")


def dask_executor(address: str) -> tuple[Executor, Callable[[], None]]:
    """Return an executor running on the Dask scheduler at `address` (tcp://HOST:8786) and the
    function that disconnects from it. Raises UsageError when distributed is not installed or
    the scheduler cannot be reached."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise UsageError(
            f"--scheduler {address}: running on a Dask cluster needs the dask extra; "
            f"run: {DASK_INSTALL}"
        ) from exc
    try:
        client = Client(address, timeout="5s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise UsageError(
            f"--scheduler {address}: cannot reach the Dask scheduler ({exc}); check the address "
            "and that the scheduler runs"
        ) from exc
    return client.get_executor(), client.close


def map_in_order(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    executor: Executor,
    ahead: int,
) -> Generator[Result, None, None]:
    """Yield `function(item)` for each of `items`, in order, computed on `executor`, with at
    most `ahead` items in flight: the results waiting to be consumed stay few, however many
    items there are. An error in `function` is raised here, at its item. Items not yet started
    when the consumer stops are cancelled. When the executor breaks (a worker process killed,
    out of memory), the items left are computed here, as they would be without workers."""
    from concurrent.futures import BrokenExecutor, Future

    pending: deque[tuple[Item, Future[Result]]] = deque()
    following = iter(items)
    broken = False

    def submit(item: Item) -> None:
        nonlocal broken
        try:
            # A process pool starts its workers and its thread on a first submit: an interrupt
            # in the middle would leave a pool that can neither work nor be shut down (a hang
            # at exit, or "cannot join thread before it is started"). It is delivered after.
            with held():
                future: Future[Result] = executor.submit(function, item)
        except BrokenExecutor:  # a worker died before this item went out: it is computed here
            broken, future = True, Future()
        pending.append((item, future))

    try:
        for item in following:
            submit(item)
            if len(pending) >= ahead:
                break
        while pending:
            item, future = pending.popleft()
            try:
                result = function(item) if broken else future.result()
            except BrokenExecutor:
                broken = True
                result = function(item)
            if not broken:
                for item in following:
                    submit(item)
                    break
            yield result
        yield from map(function, following)
    finally:
        for _, future in pending:
            future.cancel()
