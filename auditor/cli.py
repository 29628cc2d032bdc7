"""The ckpt-audit command: parse options, call the library, write the report, pick the exit code."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import click

from . import __version__, interrupts
from .choices import DEFAULT_CONFIG_NAME, HISTORY_SUFFIXES, SORT_KEYS
from .errors import AuditorError, UsageError
from .render import FILE_FORMATS, RENDERERS, TERMINAL_FORMATS, render
from .streams import hold_standard_descriptors, require_stdout, say, to_stdout

# The audit itself is imported by the commands that run it: `--help` stays as quick as click.
if TYPE_CHECKING:
    from concurrent.futures import Executor

    from .config import Config
    from .results import AuditResult, RunResult

EXIT_OK, EXIT_GATE_FAILED, EXIT_ERROR = 0, 1, 2


def _fail(message: str) -> NoReturn:
    from .render.text import safe

    # Messages embed paths the user gave or found on disk: never let them reach the terminal raw.
    say(f"error: {safe(message)}")
    sys.exit(EXIT_ERROR)


def _load_config(path: str | None, eval_key: str | None) -> Config:
    from .config import Config, load_config

    if path is None and os.path.isfile(DEFAULT_CONFIG_NAME):
        path = DEFAULT_CONFIG_NAME
    config = load_config(path) if path is not None else Config()
    if eval_key is not None:
        config = config.replace(eval_key=eval_key)
    return config


def _audit_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options every auditing command shares: --eval-key, --config, --quiet."""
    options = [
        click.option(
            "--eval-key",
            metavar="KEY",
            help="Log key of the selection loss (default, per run: eval_loss, else the loss "
            "the Trainer selected on, else the run's only eval_<name>_loss). A key no run "
            "logs is an error.",
        ),
        click.option(
            "--config",
            "config_path",
            type=click.Path(dir_okay=False),
            help=f"YAML config file (default: ./{DEFAULT_CONFIG_NAME} when present).",
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            help="Print no warnings, progress or summary on stderr, only errors.",
        ),
        click.option(
            "--scheduler",
            metavar="tcp://HOST:PORT",
            expose_value=False,
            callback=_remember,
            help="Audit the runs on the Dask cluster of this scheduler (needs the dask extra).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _report_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options of the commands that print a report: --format, -o, --color, and the rest."""
    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
        click.option(
            "--format",
            "fmt",
            type=click.Choice(sorted([*RENDERERS, *FILE_FORMATS])),
            help="Report format (default: table; sqlite for -o FILE.sqlite).",
        ),
        click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False, writable=False),
            help="Write the report to FILE (whole or not at all) instead of stdout; a "
            "FILE.sqlite gets the audit appended.",
        ),
        _audit_options,
        click.option(
            "--color/--no-color",
            default=None,
            expose_value=False,
            callback=_remember,
            help="Colour the table's verdicts (default: only on a terminal, never with NO_COLOR).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    # Display options every command shares reach _emit through the context, not each signature.
    ctx.meta[f"ckpt-audit.{param.name}"] = value
    return value


def _report_format(fmt: str | None, output: str | None) -> str:
    """Return the format to write: --format, else sqlite for -o FILE.sqlite, else table.

    The output file is checked before anything is audited: a sweep's audit must not be lost
    to a file that cannot take it.
    """
    history = output is not None and output.lower().endswith(HISTORY_SUFFIXES)
    chosen = fmt or ("sqlite" if history else "table")
    if chosen in FILE_FORMATS:
        from .history import check_history

        if not output:
            raise UsageError(f"--format {chosen} writes a file: add -o FILE, e.g. -o audit.sqlite")
        check_history(output)
    elif output:
        from .report_file import check_writable

        check_writable(output)
    return chosen


def _use_color(fmt: str, output: str | None) -> bool:
    """Return whether to colour the report: --color/--no-color, else a terminal without NO_COLOR."""
    ctx = click.get_current_context(silent=True)
    chosen = ctx.meta.get("ckpt-audit.color") if ctx is not None else None
    if fmt != "table" or output:
        return False
    if chosen is not None:
        return bool(chosen)
    return sys.stdout is not None and sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _terminal_width(fmt: str, output: str | None) -> int | None:
    """Return the columns a table must fit in: None (full width) unless stdout is a terminal,
    whose width is $COLUMNS when set, else what the terminal reports."""
    if fmt not in TERMINAL_FORMATS or output or sys.stdout is None or not sys.stdout.isatty():
        return None
    from shutil import get_terminal_size

    return get_terminal_size().columns


def _progress(quiet: bool) -> Callable[[int, int], None] | None:
    """Return a progress callback drawing on stderr, or None when it must stay silent."""
    if quiet or sys.stderr is None or not sys.stderr.isatty():
        return None
    started, shown = time.monotonic(), False

    def progress(done: int, total: int) -> None:
        nonlocal shown
        # Only a scan that takes a moment earns a progress line.
        if shown or time.monotonic() - started >= 0.5:
            shown = True
            end = "\n" if done == total else ""
            say(f"\rauditing runs: {done}/{total}{end}", nl=False)

    return progress


def _no_run_found(paths: tuple[str, ...]) -> UsageError:
    return UsageError(
        f"no Trainer run found below {', '.join(paths)} (looked for checkpoint-<step>/ "
        "folders and trainer_state.json files)"
    )


@contextmanager
def _executor() -> Iterator[Executor | None]:
    """Yield the executor of --scheduler (a Dask cluster), or None to let the audit choose."""
    ctx = click.get_current_context(silent=True)
    address = ctx.meta.get("ckpt-audit.scheduler") if ctx is not None else None
    if not address:
        yield None
        return
    from .workers import dask_executor

    executor, disconnect = dask_executor(address)
    try:
        yield executor
    finally:
        disconnect()


def _audit(paths: tuple[str, ...], config: Config, quiet: bool, curves: bool = True) -> AuditResult:
    from .api import audit

    with _executor() as executor:
        result = audit(
            *paths, config=config, progress=_progress(quiet), curves=curves, executor=executor
        )
    if not result.runs:
        raise _no_run_found(paths)
    _warn_empty_paths(paths, [r.run_dir for r in result.runs], quiet)
    return result


def _warn_empty_paths(paths: tuple[str, ...], run_dirs: list[str], quiet: bool) -> None:
    """Say which of the folders given hold no run, when others do (a typo must not pass)."""
    from .discover import without_runs
    from .render.text import safe

    for path in () if quiet else without_runs(paths, run_dirs):
        say(
            f"warning: {safe(path)}: no Trainer run below it (no checkpoint-<step>/ folder or "
            "trainer_state.json): nothing audited there"
        )


#: Formats written as the runs are audited (the table once they all are: it holds one line
#: of cells per run), so memory stays flat however large the sweep.
_STREAMED = ("json", "csv", "table")


def _stream_report(
    paths: tuple[str, ...], config: Config, quiet: bool, output: str | None, fmt: str, view: str
) -> None:
    """Audit `paths` and write the report in `fmt` (one of _STREAMED) run by run."""
    from dataclasses import replace

    from .api import audit_locations
    from .discover import discover
    from .report_file import write_atomic_from
    from .results import AuditResult

    locations = discover(list(paths))
    if not locations:
        raise _no_run_found(paths)
    _warn_empty_paths(paths, [location.run_dir for location in locations], quiet)
    if output:
        _refuse_output_inside(output, [location.run_dir for location in locations])
    else:
        require_stdout()  # before a sweep is audited for nothing
    # What stays of the runs once written: their verdicts counted, the runs that have a
    # warning or an error to print after the report, and the first that needs a look.
    counts: dict[str, int] = {}
    noted: list[RunResult] = []
    look: dict[str, RunResult] = {}

    def runs(executor: Executor | None) -> Iterator[RunResult]:
        audited = audit_locations(locations, config, _progress(quiet), False, None, executor)
        for run in audited:
            counts[run.verdict] = counts.get(run.verdict, 0) + 1
            slim = replace(run, checkpoints=(), train_losses=())
            if run.warnings or run.error is not None:
                noted.append(slim)
            if run.flagged or run.verdict == "differs":
                look.setdefault("flagged" if run.flagged else "differs", slim)
            yield run

    color = _use_color(fmt, output)
    width = _terminal_width(fmt, output)

    # Each format's module is imported only when it writes: a JSON scan needs neither the csv
    # module nor the table's.
    def write(executor: Executor | None, write: Callable[[str], Any]) -> None:
        if fmt == "json":
            from .render import json_report

            json_report.write_report(runs(executor), config, write)
        elif fmt == "csv":
            from .render import csv_report

            csv_report.write_report(runs(executor), config, write, view)
        else:
            from .render import table

            table.write_report(runs(executor), config, write, color, width)

    with _executor() as executor:
        if output:
            write_atomic_from(output, lambda sink: write(executor, lambda t: sink(t.encode())))
        else:
            write(executor, lambda text: to_stdout(text, color))
    _print_messages(noted, counts, output, quiet)
    if fmt == "table" and width is not None and not quiet:
        from .render import table
        from .render.fit import wrap

        shown = tuple(look[kind] for kind in ("flagged", "differs") if kind in look)
        found = AuditResult(shown, config, sweep_best=())
        # After the summary, so it is the last thing a newcomer reads.
        click.echo("\n" + wrap(table.next_commands(found, paths), width))


def _emit(
    result: AuditResult,
    fmt: str,
    view: str,
    output: str | None,
    quiet: bool,
    paths: tuple[str, ...],
    shown: tuple[RunResult, ...] | None = None,
    next_steps: bool = False,
) -> None:
    """Write the report of `paths` (of the `shown` runs, all by default), then warnings and a
    summary; with `next_steps`, the next commands to run when the report went to a terminal."""
    from dataclasses import replace

    report = result if shown is None else replace(result, runs=shown)
    width = _terminal_width(fmt, output)
    if output:
        _refuse_output_inside(output, [run.run_dir for run in result.runs])
    if fmt == "sqlite":
        from datetime import datetime, timezone

        from .history import append_audit

        assert output is not None
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        append_audit(output, report, paths, when)
    else:
        from .report_file import write_atomic

        color = _use_color(fmt, output)
        text = render(report, fmt, view, color=color, width=width)
        if output:
            write_atomic(output, text)
        else:
            to_stdout(text, color)
    _messages(result, output, quiet)
    if next_steps and width is not None and not quiet:
        from .render.fit import wrap
        from .render.table import next_commands

        # After the summary, so it is the last thing a newcomer reads.
        click.echo("\n" + wrap(next_commands(result, paths), width))


def _refuse_output_inside(output: str, run_dirs: Iterable[str]) -> None:
    from .report_file import refuse_inside_runs

    refuse_inside_runs(output, run_dirs, f"-o {output}", "give -o a path outside it")


def _messages(result: AuditResult, output: str | None, quiet: bool) -> None:
    """Print each run's warnings and errors, then the one-line summary, on stderr."""
    counts: dict[str, int] = {}
    for run in result.runs:
        counts[run.verdict] = counts.get(run.verdict, 0) + 1
    _print_messages(result.runs, counts, output, quiet)


def _print_messages(
    runs: Iterable[RunResult], counts: dict[str, int], output: str | None, quiet: bool
) -> None:
    """Print the warnings and errors of `runs`, then the summary of `counts` (verdict -> how
    many runs), on stderr."""
    from .render.text import safe

    # The trainings of one folder share its warnings (e.g. that it holds several): say each once.
    folder, said = "", set[str]()
    for run in runs:
        if run.run_dir != folder:
            folder, said = run.run_dir, set()
        for warning in () if quiet else run.warnings:
            if warning not in said:
                said.add(warning)
                say(f"warning: {safe(run.label)}: {safe(warning)}")
        if run.error is not None:
            # The table only says "error": the reason (file and fix) must reach the user too.
            where = "" if run.error.startswith(run.run_dir) else f"{run.run_dir}: "
            say(f"error: {safe(where + run.error)}")
    if quiet:
        return
    written = f"; report written to {safe(output)}" if output else ""
    say(_summary(counts) + written)


def _summary(counts: dict[str, int]) -> str:
    parts = [
        f"{counts[v]} {v}"
        for v in ("overfit", "differs", "agree", "no_candidates", "error")
        if v in counts
    ]
    total = sum(counts.values())
    noun = "run" if total == 1 else "runs"
    return f"audited {total} {noun}: {', '.join(parts)}"


def _append_step_summary(result: AuditResult, path: str) -> None:
    from .render.text import safe
    from .report_file import append_text

    try:
        append_text(path, render(result, "markdown"))
    except AuditorError as exc:
        # The job summary is a courtesy: the gate's verdict still decides the exit code.
        say(f"warning: GITHUB_STEP_SUMMARY: {safe(str(exc))}")


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AuditorError as exc:
            _fail(str(exc))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ckpt-audit")
def main() -> None:
    """Audit Hugging Face Trainer output folders: find runs where picking the checkpoint
    with the lowest eval loss would ship an overfit model.

    \b
    Examples:
      ckpt-audit scan outputs/            one row per run found below outputs/
      ckpt-audit show outputs/run-3       every evaluated step, with score components
      ckpt-audit check outputs/           CI gate: exit 1 when a run is flagged
      ckpt-audit report outputs/          an HTML page with a loss chart per run
    """


def run() -> None:
    """The `ckpt-audit` command as a process: `main` with its streams and signals set up for it
    (interrupted: exit 128 + the signal's number). Only the command's own process is changed,
    not a program that calls `main`."""
    hold_standard_descriptors()
    interrupts.raise_on_interrupts()
    try:
        main()
    except interrupts.Interrupted as exc:
        received = exc.signum
    else:
        return
    # The unwound frames are gone now, and with them any worker processes (their pool's cleanup
    # runs when it is collected) and temporary files.
    gc.collect()
    say(f"error: interrupted by {signal.Signals(received).name}")
    sys.exit(128 + received)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--per-checkpoint",
    is_flag=True,
    help="One row per evaluated step of every run (with the run as a column), not per run.",
)
@click.option(
    "--sort",
    type=click.Choice(SORT_KEYS),
    help="Order runs: by run folder, verdict (findings first), score or eval_loss (best "
    "first), or gap (widest first).",
)
@click.option(
    "--top", type=click.IntRange(min=1), metavar="N", help="Report only the first N runs."
)
@_report_options
def scan(
    paths: tuple[str, ...],
    per_checkpoint: bool,
    sort: str | None,
    top: int | None,
    fmt: str | None,
    output: str | None,
    eval_key: str | None,
    config_path: str | None,
    quiet: bool,
) -> None:
    """One row per run found below PATHS: the eval-only pick, the scorer's pick, the
    Trainer's best and the verdict.

    PATHS are training output folders (searched recursively), checkpoint folders or
    trainer_state.json files. Exit 0 when a report was made, 2 on an error or when no
    run is found.

    \b
    Examples:
      ckpt-audit scan outputs/ --format json -o audit.json
      ckpt-audit scan outputs/ --per-checkpoint --format csv -o steps.csv
      ckpt-audit scan outputs/ --sort score --top 5
    """
    fmt = _report_format(fmt, output)
    config = _load_config(config_path, eval_key)
    # A named eval key is checked against every run before a report is made, so a typo is an
    # error rather than a report of runs with nothing to pick.
    view = "checkpoints" if per_checkpoint else "runs"
    # `--per-checkpoint` tables are one table per run, made from all the run's steps.
    streamed = fmt in _STREAMED and (fmt != "table" or view == "runs")
    if streamed and not (sort or top or config.eval_key):
        _stream_report(paths, config, quiet, output, fmt, view)
        return
    # Only the HTML report draws loss curves; a sweep's curves would dominate its memory.
    result = _audit(paths, config, quiet, curves=fmt == "html")
    from .sweep import order_runs

    shown = order_runs(result.runs, sort, top) if sort or top else None
    _emit(result, fmt, view, output, quiet, paths, shown, next_steps=True)


@main.command()
@click.argument("run", type=click.Path())
@_report_options
def show(
    run: str,
    fmt: str | None,
    output: str | None,
    eval_key: str | None,
    config_path: str | None,
    quiet: bool,
) -> None:
    """Every evaluated step of one RUN with each score component, so you see why a
    checkpoint won. Marks the eval-only pick, the scorer's pick and the Trainer's best.

    \b
    Example:
      ckpt-audit show outputs/run-3
      ckpt-audit show outputs/run-3/checkpoint-400/trainer_state.json
    """
    fmt = _report_format(fmt, output)
    config = _load_config(config_path, eval_key)
    result = _audit((run,), config, quiet)
    _single_run(result, run, "show", trainings=True)
    _emit(result, fmt, "checkpoints", output, quiet, (run,))
    if result.runs[0].error is not None:
        sys.exit(EXIT_ERROR)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--deploy",
    "deploy",
    type=click.Path(file_okay=False),
    metavar="CHECKPOINT_DIR",
    help="Judge this checkpoint (the one you intend to ship) instead of the eval-only pick.",
)
@click.option(
    "--allow-unreadable",
    is_flag=True,
    default=None,
    help="Do not fail when a run cannot be read (the gate fails closed by default).",
)
@click.option(
    "--no-step-summary",
    "step_summary",
    is_flag=True,
    flag_value=False,
    default=True,
    help="Inside GitHub Actions, do not append the Markdown summary to $GITHUB_STEP_SUMMARY.",
)
@_report_options
def check(
    paths: tuple[str, ...],
    deploy: str | None,
    allow_unreadable: bool | None,
    step_summary: bool,
    fmt: str | None,
    output: str | None,
    eval_key: str | None,
    config_path: str | None,
    quiet: bool,
) -> None:
    """CI gate: exit 0 when no run fails, 1 when one does, 2 on an error, including a
    run that cannot be read. A run fails when its verdict is in fail_on (default: overfit,
    an eval-only pick that overfits without evidence that it is better, and no_candidates,
    a run that could not be judged) or when the Trainer's best is an overfit pick.

    \b
    Examples:
      ckpt-audit check outputs/
      ckpt-audit check --deploy outputs/run-3/checkpoint-400
    """
    from .gate import gate_exit_code, run_deploy_gate

    fmt = _report_format(fmt, output)
    config = _load_config(config_path, eval_key)
    if allow_unreadable is not None:
        config = config.replace(allow_unreadable=allow_unreadable)
    if not paths and deploy is None:
        raise UsageError("check needs at least one PATH, or --deploy CHECKPOINT_DIR")
    if deploy is not None:
        result = run_deploy_gate(paths, deploy, config, lambda p: _audit(p, config, quiet))
    else:
        result = _audit(paths, config, quiet, curves=fmt == "html")
    summary = os.environ.get("GITHUB_STEP_SUMMARY") if step_summary else None
    if summary:
        from .report_file import refuse_inside_runs

        refuse_inside_runs(
            summary,
            [run.run_dir for run in result.runs],
            f"GITHUB_STEP_SUMMARY={summary}",
            "point it outside the audited folders, or pass --no-step-summary",
        )
    _emit(result, fmt, "runs", output, quiet, paths)
    if summary:
        _append_step_summary(result, summary)
    code, reason = gate_exit_code(result)
    if not quiet or code == EXIT_ERROR:
        from .render.text import deploy_advice, safe

        advice = deploy_advice(result.deploy) if result.deploy is not None else None
        if advice is not None:
            say(advice)
        say(f"gate: {safe(reason)}")
    sys.exit(code)


def _single_run(result: AuditResult, run: str, command: str, trainings: bool = False) -> RunResult:
    """Return the one run `command` takes; with `trainings`, every training of one folder
    counts as that run. Raise UsageError naming the runs found otherwise."""
    folders = list(dict.fromkeys(r.run_dir for r in result.runs))
    if len(folders) > 1:
        listed = ", ".join(folders[:3]) + (", ..." if len(folders) > 3 else "")
        raise UsageError(
            f"{run} holds {len(folders)} runs ({listed}); {command} takes one run: "
            "name one of them, or use `ckpt-audit scan`"
        )
    if len(result.runs) > 1 and not trainings:
        raise UsageError(
            f"{run} holds {len(result.runs)} trainings; {command} takes one: "
            "use `ckpt-audit show` or `ckpt-audit scan`, which give one row per training"
        )
    return result.runs[0]


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default="report.html",
    show_default=True,
    help="Write the HTML report to FILE (whole or not at all).",
)
@_audit_options
def report(
    paths: tuple[str, ...], output: str, eval_key: str | None, config_path: str | None, quiet: bool
) -> None:
    """One self-contained HTML page for the runs below PATHS: the best checkpoint of each
    sweep, a sortable overview with flagged runs first, then each run's interactive train
    and eval loss chart with both picks marked, and its score components.

    \b
    Example:
      ckpt-audit report outputs/ -o report.html
    """
    from .report_file import check_writable

    check_writable(output)
    config = _load_config(config_path, eval_key)
    result = _audit(paths, config, quiet)
    _emit(result, "html", "runs", output, quiet, paths)


@main.command()
@click.argument("run", type=click.Path())
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    required=True,
    help="Write the chart to FILE: .png, .svg or .pdf (whole or not at all).",
)
@_audit_options
def plot(run: str, output: str, eval_key: str | None, config_path: str | None, quiet: bool) -> None:
    """The train and eval loss chart of one RUN, with both picks marked, as an image for
    a paper or a chat message. Needs matplotlib: pip install 'checkpoint-auditor[plot]'.

    \b
    Example:
      ckpt-audit plot outputs/run-3 -o run-3.png
    """
    from .plot import chart_format, require_matplotlib, save_chart
    from .render.text import safe

    require_matplotlib()
    chart_format(output)
    config = _load_config(config_path, eval_key)
    found = _single_run(_audit((run,), config, quiet), run, "plot")
    if found.error is not None:
        raise UsageError(found.error)
    _refuse_output_inside(output, [found.run_dir])
    save_chart(found, output)
    if not quiet:
        for warning in found.warnings:
            say(f"warning: {safe(found.run_dir)}: {safe(warning)}")
        say(f"{safe(found.run_dir)}: {found.verdict}; chart written to {safe(output)}")


@main.command("config")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help=f"YAML config file (default: ./{DEFAULT_CONFIG_NAME} when present).",
)
def config_command(config_path: str | None) -> None:
    """Print the effective config as YAML, a complete file to start from.

    \b
    Example:
      ckpt-audit config > .ckpt-audit.yaml
    """
    from .config import to_yaml

    to_stdout(to_yaml(_load_config(config_path, None)))
