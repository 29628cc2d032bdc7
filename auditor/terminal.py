"""What a command tells the person at the terminal besides its report: progress, each run's
warnings and errors, the one-line summary, the gate's reason, the next commands, and whether
the report is coloured and fitted to the terminal's width."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import click

from .render import TERMINAL_FORMATS
from .streams import say

# The report's own modules are imported when a message is made: `--help` stays as quick as click.
if TYPE_CHECKING:
    from .results import AuditResult, RunResult


def error(message: str) -> None:
    """Say `message` as an error on stderr."""
    from .render.text import safe

    # Messages embed paths the user gave or found on disk: never let them reach the terminal raw.
    say(_fitted(f"error: {safe(message)}"))


def warning(where: str, message: str) -> None:
    """Say `message` about `where` (a run, a path, a variable) as a warning on stderr."""
    from .render.text import safe

    say(_fitted(f"warning: {safe(where)}: {safe(message)}"))


def _fitted(line: str) -> str:
    """Return `line` wrapped to the terminal's width when stderr is one; a log or a pipe
    keeps each message on one line, for grep."""
    if sys.stderr is None or not sys.stderr.isatty():
        return line
    from shutil import get_terminal_size

    from .render.fit import wrap

    return wrap(line, get_terminal_size().columns)


def use_color(fmt: str, output: str | None, chosen: bool | None = None) -> bool:
    """Return whether to colour the report: `chosen` (--color/--no-color) for a table on stdout,
    else whether stdout is a terminal and NO_COLOR is unset."""
    if fmt not in TERMINAL_FORMATS or output:
        return False
    if chosen is not None:
        return bool(chosen)
    return sys.stdout is not None and sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def terminal_width(fmt: str, output: str | None) -> int | None:
    """Return the columns a table must fit in: None (full width) unless stdout is a terminal,
    whose width is $COLUMNS when set, else what the terminal reports."""
    if fmt not in TERMINAL_FORMATS or output or sys.stdout is None or not sys.stdout.isatty():
        return None
    from shutil import get_terminal_size

    return get_terminal_size().columns


def progress(quiet: bool) -> Callable[[int, int], None] | None:
    """Return a progress callback drawing on stderr, or None when it must stay silent."""
    if quiet or sys.stderr is None or not sys.stderr.isatty():
        return None
    started, shown = time.monotonic(), False

    def draw(done: int, total: int) -> None:
        nonlocal shown
        # Only a scan that takes a moment earns a progress line.
        if shown or time.monotonic() - started >= 0.5:
            shown = True
            end = "\n" if done == total else ""
            say(f"\rauditing runs: {done}/{total}{end}", nl=False)

    return draw


def warn_empty_paths(paths: tuple[str, ...], run_dirs: list[str], quiet: bool) -> None:
    """Say which of the folders given hold no run, when others do (a typo must not pass)."""
    from .discover import without_runs

    for path in () if quiet else without_runs(paths, run_dirs):
        warning(
            path,
            "no Trainer run below it (no checkpoint-<step>/ folder or trainer_state.json): "
            "nothing audited there",
        )


class Tally:
    """What the messages need of the runs, taken as they go by (a streamed report keeps no run
    once it is written): verdicts counted, run folders counted, the runs with a warning or an
    error, and the first run that needs a look."""

    def __init__(self) -> None:
        self.verdicts: dict[str, int] = {}
        self.folders = 0
        self._folder: str | None = None
        self._noted: list[RunResult] = []
        self._look: dict[str, RunResult] = {}

    def watch(self, runs: Iterable[RunResult]) -> Iterator[RunResult]:
        """Yield `runs` unchanged, taking each into account."""
        for run in runs:
            self.verdicts[run.verdict] = self.verdicts.get(run.verdict, 0) + 1
            # The trainings of one folder are audited together, so they come one after another.
            if run.run_dir != self._folder:
                self._folder = run.run_dir
                self.folders += 1
            kind = "flagged" if run.flagged else "differs" if run.verdict == "differs" else None
            kept = run.warnings or run.error is not None
            # Most runs of a large sweep are neither kept nor the first of their kind.
            if kept or (kind is not None and kind not in self._look):
                slim = replace(run, checkpoints=(), train_losses=(), eval_curves={})
                if kept:
                    self._noted.append(slim)
                if kind is not None:
                    self._look.setdefault(kind, slim)
            yield run

    @property
    def runs(self) -> int:
        """Return how many runs (rows: one per training of a folder) went by."""
        return sum(self.verdicts.values())

    def say_runs(self, quiet: bool) -> None:
        """Say each run's warnings (unless `quiet`) and errors on stderr, in the order audited."""
        # The trainings of one folder share its warnings (e.g. that it holds several): say
        # each once.
        folder, said = "", set[str]()
        for run in self._noted:
            if run.run_dir != folder:
                folder, said = run.run_dir, set()
            for text in () if quiet else run.warnings:
                if text not in said:
                    said.add(text)
                    warning(run.label, text)
            if run.error is not None:
                # The table only says "error": the reason (file and fix) must reach the user too.
                where = "" if run.error.startswith(run.run_dir) else f"{run.run_dir}: "
                error(where + run.error)

    def summary(self) -> str:
        """Return the one-line summary: how many runs were audited (and in how many folders,
        when a folder held several trainings), then how many have each verdict, findings
        first."""
        from .results import VERDICT_ORDER

        runs = self.runs
        counted = f"{runs} {'run' if runs == 1 else 'runs'}"
        if self.folders != runs:
            counted += f" in {self.folders} {'folder' if self.folders == 1 else 'folders'}"
        parts = [f"{self.verdicts[v]} {v}" for v in VERDICT_ORDER if v in self.verdicts]
        # Anything else the summary reports about the audit (e.g. what was read from remote
        # storage) is appended to `parts`' line here, the one place it is made.
        return f"audited {counted}: {', '.join(parts)}{_remote_reads()}"

    def say_summary(self, output: str | None, quiet: bool) -> None:
        """Say each run's warnings and errors, then the summary line, on stderr."""
        from .render.text import safe

        self.say_runs(quiet)
        if quiet:
            return
        written = f"; report written to {safe(output)}" if output else ""
        say(_fitted(self.summary() + written))

    def next_commands(self, paths: Sequence[str]) -> str:
        """Return the line that tells a newcomer what to run next: `show` on the first run that
        needs a look (flagged, else picks that differ), and `report` for the charts."""
        from shlex import quote

        from .render.text import safe

        where = " ".join(quote(path) for path in paths)
        report = f"ckpt-audit report {where} -o report.html for the charts"
        look = self._look.get("flagged") or self._look.get("differs")
        if look is None:
            return f"next: {report}"
        why = "it is flagged" if look.flagged else "its picks differ"
        return f"next: ckpt-audit show {quote(safe(look.run_dir))} to see why {why}; {report}"

    def say_next_commands(self, paths: Sequence[str], width: int | None, quiet: bool) -> None:
        """Print the next commands under a table that went to a terminal (`width` given)."""
        if width is None or quiet:
            return
        from .render.fit import wrap

        # On stdout after the summary, so it is the last thing a newcomer reads.
        click.echo("\n" + wrap(self.next_commands(paths), width))


def say_gate(result: AuditResult, code: int, reason: str, quiet: bool) -> None:
    """Say the gate's reason (and, with --deploy, where the smoothed eval minimum is); an error
    is said even when `quiet`."""
    from . import exit_codes
    from .render.text import deploy_advice, safe

    if quiet and code != exit_codes.ERROR:
        return
    advice = deploy_advice(result.deploy) if result.deploy is not None else None
    if advice is not None:
        say(_fitted(advice))
    say(_fitted(f"gate: {safe(reason)}"))


def say_chart_written(run: RunResult, output: str, quiet: bool) -> None:
    """Say, in place of the summary, the run's verdict and where its chart went."""
    from .render.text import safe

    if not quiet:
        say(_fitted(f"{safe(run.run_dir)}: {run.verdict}; chart written to {safe(output)}"))


def _remote_reads() -> str:
    """Return what was read from object stores or the Hub in this process, for the summary
    ("" when nothing was: a local audit never imports fsspec)."""
    from .storage import remote_traffic

    read = remote_traffic()
    if not read.requests:
        return ""
    return f"; read {read.requests} requests, {read.bytes / 1e6:.1f} MB from remote storage"
