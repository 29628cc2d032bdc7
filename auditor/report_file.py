"""Write a report file whole or not at all, never into an audited run and never over a device."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator

from . import interrupts
from .errors import ReportWriteError, UsageError

# A name that stands for an open file descriptor (/dev/stdout is a link to /proc/self/fd/1): the
# file behind it is the caller's, already opened (and maybe truncated or appended to) by a shell.
_DESCRIPTOR_LINK = re.compile(r"^/(?:proc/[^/]+|dev)/fd/\d+$")
# Symlink hops followed before giving up, as the kernel does (ELOOP after 40).
_MAX_LINKS = 40
# Opening a pipe nobody reads fails at once instead of waiting for ever (no such flag on Windows,
# which has no named pipes in the file system either).
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)

Fill = Callable[[Callable[[bytes], object]], object]


def check_writable(path: str) -> None:
    """Return when a report can be written to `path`: its folder exists and takes new files,
    and the path is not a folder. Raises ReportWriteError naming the path otherwise.

    Called before an audit, so a long one is not lost to a typo in -o.
    """
    if os.path.isdir(path):
        raise ReportWriteError(f"cannot write {path}: it is a folder")
    if _in_place_mode(path) is not None:
        # A pipe, a device or /dev/stdout is written where it is: its folder does not matter.
        if not os.access(path, os.W_OK):
            raise ReportWriteError(f"cannot write {path}: permission denied")
        return
    folder = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(folder):
        raise ReportWriteError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ReportWriteError(f"cannot write {path}: the folder {folder} is not writable")


def write_atomic(path: str, text: str | bytes) -> None:
    """Write `text` (str or bytes) to `path`, whole or not at all (see `write_atomic_from`).

    Raises ReportWriteError naming the path when it cannot be written.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    write_atomic_from(path, lambda write: write(data))


def write_atomic_from(path: str, fill: Fill) -> None:
    """Write what `fill(write)` writes to `path`, whole or not at all.

    A regular file (or a symlink to one: the link stays, its target is replaced) is written to
    a temporary file beside it and renamed over it, so a reader sees the old file or the whole
    new one; the temporary file is removed whatever stops the write, an interrupt included.
    A pipe, a character device or a descriptor name (/dev/stdout) is written in place: a
    rename would replace the device node, not write to it. A report streamed piece by piece
    through `fill` never has to be held in memory whole.
    Raises ReportWriteError naming the path when it cannot be written.
    """
    in_place = _in_place_mode(path)
    if in_place is not None:
        _write_in_place(path, fill, in_place)
        return
    target = os.path.realpath(path)
    folder = os.path.dirname(target)
    # An interrupt between creating the temporary file and the `try` below would leave it.
    with interrupts.held():
        try:
            # Beside the target, so the rename stays on one file system; a short fixed prefix,
            # so a name already near the 255-byte limit still has room for it.
            descriptor, temporary = tempfile.mkstemp(
                prefix=".ckpt-audit-", suffix=".tmp", dir=folder
            )
        except OSError as exc:
            raise _write_error(path, exc) from exc
    try:
        with os.fdopen(descriptor, "wb") as handle:
            fill(handle.write)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise


def append_text(path: str, text: str) -> None:
    """Append `text` to the file at `path` (created when missing), as CI job summaries expect.

    Never waits for a pipe that nothing reads. Raises ReportWriteError naming the path when it
    cannot be written.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NONBLOCK, 0o644)
    except OSError as exc:
        raise _append_error(path, exc) from exc
    try:
        if _NONBLOCK:
            os.set_blocking(descriptor, True)
        with os.fdopen(descriptor, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(text)
    except OSError as exc:
        raise _append_error(path, exc) from exc


def refuse_inside_runs(path: str, runs: Iterable[str], named: str, fix: str) -> None:
    """Raise UsageError when writing `path` would land in one of `runs` (run folders, or bare
    trainer_state.json files): the auditor never writes into what it audits. `named` is how the
    user gave the path (`-o out.json`), `fix` says what to do instead."""
    from .storage import is_url

    landing = os.path.realpath(path)
    for run in runs:
        if is_url(run):
            continue  # a report is written here, never into a store
        audited = os.path.realpath(run)
        # Also a file that holds the run (an MLflow database, mlflow.db/<run id>).
        inside = landing.startswith(audited.rstrip(os.sep) + os.sep)
        holds = audited.startswith(landing + os.sep)
        if landing == audited or inside or holds:
            raise UsageError(
                f"{named}: that is inside the audited run {run}, and the auditor "
                f"never writes into the folders it audits; {fix}"
            )


def _in_place_mode(path: str) -> int | None:
    """Return the open flags for writing `path` in place, or None when it takes a rename.

    Raises ReportWriteError for a block device: a report written over a disk destroys it.
    """
    try:
        info = os.stat(path)
    except OSError:
        return None  # missing (or a dangling link): created by the rename
    if stat.S_ISBLK(info.st_mode):
        raise ReportWriteError(
            f"cannot write {path}: it is a block device (a disk), not a report file"
        )
    if not stat.S_ISREG(info.st_mode):
        return os.O_WRONLY | _NONBLOCK  # no O_CREAT: it exists
    if any(_DESCRIPTOR_LINK.match(hop) for hop in _links(path)):
        # The shell opened this file for us (`> file` truncated it, `>> file` appends).
        return os.O_WRONLY | os.O_APPEND
    return None


def _links(path: str) -> Iterator[str]:
    """Yield the absolute paths a chain of symlinks at `path` passes through."""
    hop = os.path.abspath(path)
    for _ in range(_MAX_LINKS):
        yield hop
        try:
            link = os.readlink(hop)
        except OSError:
            return
        hop = os.path.normpath(os.path.join(os.path.dirname(hop), link))


def _write_in_place(path: str, fill: Fill, flags: int) -> None:
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        if _NONBLOCK:
            os.set_blocking(descriptor, True)
        with os.fdopen(descriptor, "wb") as handle:
            fill(handle.write)
            handle.flush()
    except OSError as exc:
        raise _write_error(path, exc) from exc


def _write_error(path: str, exc: OSError) -> ReportWriteError:
    return ReportWriteError(f"cannot write {path}: {_reason(exc)}")


def _append_error(path: str, exc: OSError) -> ReportWriteError:
    return ReportWriteError(f"cannot append to {path}: {_reason(exc)}")


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENXIO:
        # What opening a pipe without blocking says when no program reads it.
        return "it is a pipe that no program is reading"
    return exc.strerror or str(exc)
