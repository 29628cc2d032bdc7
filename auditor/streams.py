"""The command's standard streams: closed or full, they never cause a traceback or change the
exit code, and a report that cannot reach stdout is an error, never a silent pass."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import click

from .errors import ReportWriteError


def say(text: str, nl: bool = True) -> None:
    """Write `text` to stderr; a stderr that is closed or full loses it, never the exit code."""
    try:
        click.echo(text, err=True, nl=nl)
    except OSError:
        _discard(sys.stderr)


def require_stdout() -> None:
    """Raise ReportWriteError when stdout was closed (`>&-`): a report there would be lost."""
    if sys.stdout is None:
        raise ReportWriteError("stdout is closed, so the report has nowhere to go: pass -o FILE")


def to_stdout(text: str, color: bool = False) -> None:
    """Write report text to stdout; raise ReportWriteError when stdout is closed or full."""
    require_stdout()
    try:
        click.echo(text, nl=False, color=color)
    except BrokenPipeError:
        raise  # a reader that stopped early (`| head`): click ends quietly
    except OSError as exc:
        _discard(sys.stdout)
        raise ReportWriteError(f"cannot write the report to stdout: {exc.strerror}") from exc


def hold_standard_descriptors() -> None:
    """Put the null device on a standard descriptor the caller closed (`>&-`), so no file the
    command opens takes its number. sys.stdout stays None (Python found it closed): a report
    for stdout is then an error; a closed stderr only loses the messages."""
    for descriptor in (0, 1, 2):
        try:
            os.fstat(descriptor)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != descriptor:
                os.dup2(null, descriptor)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


def _discard(stream: Any) -> None:
    """Point `stream`'s descriptor at the null device: what stays in its buffer could not be
    written, and Python's last flush at exit would otherwise fail again and change the exit
    code."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)
