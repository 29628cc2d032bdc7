"""Hold SIGINT and SIGTERM back while a step must not be cut in half (a fork, a cleanup)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

INTERRUPTS = frozenset({signal.SIGINT, signal.SIGTERM})


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
