"""The report formats, one registry: a format is a render function plus one entry here."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import Config
    from ..results import AuditResult, DeployJudgement, RunResult
    from ..sweep import SweepBest

#: A renderer turns a result into the text of a report: `renderer(result, view, **options)`.
#: `view` is "runs" (one row per run, for scan and check) or "checkpoints" (one row per
#: evaluated step, for show); only terminal formats take options.
Renderer = Callable[..., str]


def _on_first_use(module: str) -> Renderer:
    """Return render.<module>'s render function, imported when a report is made: the CLI's
    start-up (and --help) must not pay for every format's imports."""

    def render_with(result: AuditResult, view: str = "runs", **options: Any) -> str:
        function: Callable[..., str] = import_module(f"{__name__}.{module}").render
        return function(result, view, **options)

    return render_with


RENDERERS: dict[str, Renderer] = {
    "table": _on_first_use("table"),
    "json": _on_first_use("json_report"),
    "csv": _on_first_use("csv_report"),
    "markdown": _on_first_use("markdown"),
    "junit": _on_first_use("junit"),
    "html": _on_first_use("html"),
}

#: Formats that are files rather than text: written with -o only (auditor.history).
FILE_FORMATS = ("sqlite",)

#: Formats made for a terminal: they take `color` and `width` (None: no limit).
TERMINAL_FORMATS = ("table",)

#: Formats written as the runs come (the run table once they all have: it holds one line of
#: cells per run), so memory stays flat however large the sweep: format -> module, whose
#: `write_report(runs, config, write, view, deploy=, sweep_best=, **options)` does it.
STREAMED = {"json": "json_report", "csv": "csv_report", "table": "table"}


def collected(
    write_report: Callable[..., None], result: AuditResult, view: str, **options: Any
) -> str:
    """Return the text a STREAMED format's `write_report` writes for `result`: its render."""
    pieces: list[str] = []
    write_report(
        result.runs,
        result.config,
        pieces.append,
        view,
        deploy=result.deploy,
        sweep_best=result.sweep_best,
        **options,
    )
    return "".join(pieces)


def render(
    result: AuditResult, fmt: str, view: str = "runs", color: bool = False, width: int | None = None
) -> str:
    """Return `result` rendered in format `fmt` (a key of RENDERERS); a terminal format is
    coloured when asked and fitted to `width` columns."""
    if fmt in TERMINAL_FORMATS:
        return RENDERERS[fmt](result, view, color=color, width=width)
    return RENDERERS[fmt](result, view)


def write_report(
    runs: Iterable[RunResult],
    config: Config,
    fmt: str,
    write: Callable[[str], Any],
    view: str = "runs",
    color: bool = False,
    width: int | None = None,
    deploy: DeployJudgement | None = None,
    sweep_best: tuple[SweepBest, ...] | None = None,
) -> None:
    """Write the report of `runs` in format `fmt` through `write`: run by run in a STREAMED
    format, else rendered once every run is in. The sweep's best is computed from `runs`
    unless given."""
    options: dict[str, Any] = {"color": color, "width": width} if fmt in TERMINAL_FORMATS else {}
    if fmt in STREAMED:
        stream = import_module(f"{__name__}.{STREAMED[fmt]}").write_report
        stream(runs, config, write, view, deploy=deploy, sweep_best=sweep_best, **options)
        return
    from ..results import AuditResult

    write(RENDERERS[fmt](AuditResult(tuple(runs), config, deploy, sweep_best), view, **options))
