"""Write a report file whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable

from .errors import ReportWriteError


def check_writable(path: str) -> None:
    """Return when a report can be written to `path`: its folder exists and takes new files,
    and the path is not a folder. Raises ReportWriteError naming the path otherwise.

    Called before an audit, so a long one is not lost to a typo in -o.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ReportWriteError(f"cannot write {path}: it is a folder")
    if not os.path.isdir(folder):
        raise ReportWriteError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ReportWriteError(f"cannot write {path}: the folder {folder} is not writable")


def write_atomic(path: str, text: str | bytes) -> None:
    """Write `text` (str or bytes) to `path` through a temporary file beside it and a rename.

    A reader sees the old file or the complete new one, never a partial report.
    Raises ReportWriteError naming the path when it cannot be written.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    write_atomic_from(path, lambda write: write(data))


def write_atomic_from(path: str, fill: Callable[[Callable[[bytes], object]], object]) -> None:
    """Write what `fill(write)` writes to `path`, whole or not at all (see `write_atomic`).

    A report streamed piece by piece this way never has to be held in memory whole.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder
        )
    except OSError as exc:
        raise ReportWriteError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(descriptor, "wb") as handle:
            fill(handle.write)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ReportWriteError(f"cannot write {path}: {exc.strerror}") from exc


def append_text(path: str, text: str) -> None:
    """Append `text` to the file at `path` (created when missing), as CI job summaries expect.

    Raises ReportWriteError naming the path when it cannot be written.
    """
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise ReportWriteError(f"cannot append to {path}: {exc.strerror}") from exc
