"""The ckpt-audit command: each command parses its options, audits, writes the report and picks
the exit code; what it tells the terminal besides the report is auditor.terminal's."""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import click

from . import __version__, exit_codes, interrupts, terminal
from .choices import DEFAULT_CONFIG_NAME, FORMAT_OF_SUFFIX, SORT_KEYS
from .errors import AuditorError, UsageError
from .render import FILE_FORMATS, RENDERERS
from .streams import hold_standard_descriptors, require_stdout, to_stdout

# The audit itself is imported by the commands that run it: `--help` stays as quick as click.
if TYPE_CHECKING:
    from concurrent.futures import Executor

    from .config import Config
    from .results import AuditResult, DeployJudgement, RunResult
    from .sweep import SweepBest


def _fail(message: str) -> NoReturn:
    terminal.error(message)
    sys.exit(exit_codes.ERROR)


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
            help="Report format (default: the one -o FILE's suffix names, .json .csv .md .xml "
            ".html .sqlite, else table).",
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
    # Display options every command shares reach the report through the context, not each
    # command's signature.
    ctx.meta[f"ckpt-audit.{param.name}"] = value
    return value


def _report_format(fmt: str | None, output: str | None) -> str:
    """Return the format to write: --format, else the one -o FILE's suffix names (audit.json,
    audit.sqlite), else table.

    The output file is checked before anything is audited: a sweep's audit must not be lost
    to a file that cannot take it.
    """
    suffix = os.path.splitext(output)[1].lower() if output else ""
    chosen = fmt or FORMAT_OF_SUFFIX.get(suffix, "table")
    if chosen in FILE_FORMATS:
        from .history import check_history

        if not output:
            raise UsageError(f"--format {chosen} writes a file: add -o FILE, e.g. -o audit.sqlite")
        check_history(output)
    elif output:
        from .report_file import check_writable

        check_writable(output)
    return chosen


def _option(name: str) -> Any:
    """Return the value of a shared display option (--color, --scheduler), None when not given."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(f"ckpt-audit.{name}") if ctx is not None else None


@dataclass(frozen=True)
class _Report:
    """Where a command writes its report and how: format, view, -o FILE (None: stdout)."""

    fmt: str
    view: str = "runs"
    output: str | None = None

    @property
    def color(self) -> bool:
        return terminal.use_color(self.fmt, self.output, _option("color"))

    @property
    def width(self) -> int | None:
        return terminal.terminal_width(self.fmt, self.output)


def _no_run_found(paths: tuple[str, ...]) -> UsageError:
    return UsageError(
        f"no Trainer run found below {', '.join(paths)} (looked for checkpoint-<step>/ "
        "folders and trainer_state.json files)"
    )


@contextmanager
def _executor() -> Iterator[Executor | None]:
    """Yield the executor of --scheduler (a Dask cluster), or None to let the audit choose."""
    address = _option("scheduler")
    if not address:
        yield None
        return
    from .workers import dask_executor

    executor, disconnect = dask_executor(address)
    try:
        yield executor
    finally:
        disconnect()


@contextmanager
def _audited(
    paths: tuple[str, ...],
    config: Config,
    quiet: bool,
    tally: terminal.Tally,
    output: str | None,
    curves: bool = False,
) -> Iterator[Iterable[RunResult]]:
    """Yield the runs below `paths` as they are audited, each seen by `tally`, once it is known
    that their report has somewhere to go: never into an audited run (-o), never to a closed
    stdout. With `curves` False runs carry no train loss curve (only charts need one)."""
    from .api import audit_locations, check_eval_key
    from .discover import discover

    locations = discover(list(paths))
    if not locations:
        raise _no_run_found(paths)
    run_dirs = [location.run_dir for location in locations]
    terminal.warn_empty_paths(paths, run_dirs, quiet)
    if output:
        _refuse_output_inside(output, run_dirs)
    else:
        require_stdout()  # before a sweep is audited for nothing
    with (
        _executor() as executor,
        closing(
            audit_locations(locations, config, terminal.progress(quiet), curves, None, executor)
        ) as audited,
    ):
        runs = tally.watch(audited)
        if config.eval_key is None:
            yield runs
            return
        # A key the user named is checked against every run before a report is made: a typo
        # is an error, not a report of runs with nothing to pick.
        gathered = tuple(runs)
        check_eval_key(gathered, config)
        yield gathered


def _write(
    report: _Report,
    runs: Iterable[RunResult],
    config: Config,
    paths: tuple[str, ...],
    deploy: DeployJudgement | None = None,
    sweep_best: tuple[SweepBest, ...] | None = None,
) -> None:
    """Write the report of `runs` (audited from `paths`) to -o FILE, whole or not at all, or to
    stdout; the sweep's best is computed from `runs` unless given."""
    if report.fmt == "sqlite":
        from datetime import datetime, timezone

        from .history import append_audit
        from .results import AuditResult

        assert report.output is not None
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        result = AuditResult(tuple(runs), config, deploy, sweep_best)
        append_audit(report.output, result, paths, when)
        return
    from .render import write_report

    color, width = report.color, report.width

    def fill(write: Callable[[str], Any]) -> None:
        write_report(runs, config, report.fmt, write, report.view, color, width, deploy, sweep_best)

    if report.output:
        from .report_file import write_atomic_from

        write_atomic_from(report.output, lambda sink: fill(lambda text: sink(text.encode())))
    else:
        fill(lambda text: to_stdout(text, color))


def _refuse_output_inside(output: str, run_dirs: Iterable[str]) -> None:
    from .report_file import refuse_inside_runs

    refuse_inside_runs(output, run_dirs, f"-o {output}", "give -o a path outside it")


def _append_step_summary(result: AuditResult, path: str) -> None:
    from .render import render
    from .report_file import append_text

    try:
        append_text(path, render(result, "markdown"))
    except AuditorError as exc:
        # The job summary is a courtesy: the gate's verdict still decides the exit code.
        terminal.warning("GITHUB_STEP_SUMMARY", str(exc))


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
    terminal.error(f"interrupted by {signal.Signals(received).name}")
    sys.exit(exit_codes.interrupted(received))


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
    view = "checkpoints" if per_checkpoint else "runs"
    report = _Report(_report_format(fmt, output), view, output)
    config = _load_config(config_path, eval_key)
    tally = terminal.Tally()
    # Only the HTML report draws loss curves; a sweep's curves would dominate its memory.
    with _audited(paths, config, quiet, tally, output, curves=report.fmt == "html") as runs:
        if sort or top:
            from .results import AuditResult
            from .sweep import order_runs

            # The sweep's best stays that of every run, whichever runs are shown.
            result = AuditResult(tuple(runs), config)
            shown = order_runs(result.runs, sort, top)
            _write(report, shown, config, paths, sweep_best=result.sweep_best)
        else:
            _write(report, runs, config, paths)
    tally.say_summary(output, quiet)
    tally.say_next_commands(paths, report.width, quiet)


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
    report = _Report(_report_format(fmt, output), "checkpoints", output)
    config = _load_config(config_path, eval_key)
    tally = terminal.Tally()
    with _audited((run,), config, quiet, tally, output, curves=True) as runs:
        trainings = _single_run(tuple(runs), run, "show", trainings=True)
    _write(report, trainings, config, (run,))
    tally.say_summary(output, quiet)
    if trainings[0].error is not None:
        sys.exit(exit_codes.ERROR)


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
    from .results import AuditResult

    report = _Report(_report_format(fmt, output), "runs", output)
    config = _load_config(config_path, eval_key)
    if allow_unreadable is not None:
        config = config.replace(allow_unreadable=allow_unreadable)
    if not paths and deploy is None:
        raise UsageError("check needs at least one PATH, or --deploy CHECKPOINT_DIR")
    tally = terminal.Tally()

    def audit(paths: tuple[str, ...]) -> AuditResult:
        # --deploy judges a checkpoint from its run's eval curves.
        curves = deploy is not None or report.fmt == "html"
        with _audited(paths, config, quiet, tally, output, curves) as runs:
            return AuditResult(tuple(runs), config)

    result = audit(paths) if deploy is None else run_deploy_gate(paths, deploy, config, audit)
    summary = os.environ.get("GITHUB_STEP_SUMMARY") if step_summary else None
    if summary:
        from .report_file import refuse_inside_runs

        refuse_inside_runs(
            summary,
            [run.run_dir for run in result.runs],
            f"GITHUB_STEP_SUMMARY={summary}",
            "point it outside the audited folders, or pass --no-step-summary",
        )
    _write(report, result.runs, config, paths, result.deploy, result.sweep_best)
    tally.say_summary(output, quiet)
    if summary:
        _append_step_summary(result, summary)
    code, reason = gate_exit_code(result)
    terminal.say_gate(result, code, reason, quiet)
    sys.exit(code)


def _single_run(
    runs: tuple[RunResult, ...], run: str, command: str, trainings: bool = False
) -> tuple[RunResult, ...]:
    """Return `runs`, the audit of the one run `command` takes; with `trainings`, every
    training of one folder counts as that run. Raise UsageError naming the runs found
    otherwise."""
    folders = list(dict.fromkeys(r.run_dir for r in runs))
    if len(folders) > 1:
        listed = ", ".join(folders[:3]) + (", ..." if len(folders) > 3 else "")
        raise UsageError(
            f"{run} holds {len(folders)} runs ({listed}); {command} takes one run: "
            "name one of them, or use `ckpt-audit scan`"
        )
    if len(runs) > 1 and not trainings:
        raise UsageError(
            f"{run} holds {len(runs)} trainings; {command} takes one: "
            "use `ckpt-audit show` or `ckpt-audit scan`, which give one row per training"
        )
    return runs


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
    tally = terminal.Tally()
    with _audited(paths, config, quiet, tally, output, curves=True) as runs:
        _write(_Report("html", "runs", output), runs, config, paths)
    tally.say_summary(output, quiet)


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

    require_matplotlib()
    chart_format(output)
    config = _load_config(config_path, eval_key)
    tally = terminal.Tally()
    with _audited((run,), config, quiet, tally, output, curves=True) as runs:
        (found,) = _single_run(tuple(runs), run, "plot")
    if found.error is not None:
        raise UsageError(found.error)
    save_chart(found, output)
    tally.say_runs(quiet)
    terminal.say_chart_written(found, output, quiet)


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
