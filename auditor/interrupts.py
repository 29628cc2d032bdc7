"""SIGINT and SIGTERM: an exception that unwinds the command, held back while a step must not
be cut in half (a fork, a cleanup)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import NoReturn

INTERRUPTS = frozenset({signal.SIGINT, signal.SIGTERM})


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwinds the command (temporary files removed, worker processes
    ended) without being taken for an error of the audit, as click takes KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def raise_on_interrupts() -> None:
    """Make SIGINT and SIGTERM raise Interrupted in this process (and in the workers it forks);
    a signal the process was started with ignored (in the background, under nohup) stays so."""
    for signum in INTERRUPTS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _interrupt)


def _interrupt(signum: int, frame: object) -> NoReturn:
    # A second signal must not cut the cleanup that this one starts short.
    for each in INTERRUPTS:
        signal.signal(each, signal.SIG_IGN)
    raise Interrupted(signum)


@contextlib.contextmanager
def held() -> Iterator[set[int] | None]:
    """Hold SIGINT and SIGTERM back for the duration; they are delivered when it ends.

    Yields the signal mask from before, for a forked child to restore (None where signal
    masks do not exist, on Windows, and nothing is held).
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield None
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
    try:
        yield before
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def release(before: set[int] | None) -> None:
    """Restore the signal mask `held()` yielded (in a forked child, which leaves no `with`)."""
    if before is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
