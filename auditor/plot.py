"""The loss-curve chart of one run, drawn with matplotlib (an optional extra, imported lazily)."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from .curves import drawn, overfit_spans, thin, too_large, y_range
from .errors import AuditorError
from .results import CheckpointResult, RunResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'checkpoint-auditor[plot]'"
FORMATS = ("png", "svg", "pdf")

#: A train curve longer than this is thinned to its per-bucket extremes: the eye cannot tell
#: 20,000 points from 400 on a chart this wide.
MAX_TRAIN_POINTS = 400

#: Beyond this many evaluations a dot per evaluation is noise (and bytes): the line alone is drawn.
MAX_EVAL_MARKERS = 150

TRAIN_COLOUR = "#4c72b0"
EVAL_COLOUR = "#dd8452"
EVAL_ONLY_COLOUR = "#c0392b"
SCORER_COLOUR = "#1e8449"
SHADE_COLOUR = "#f5b7b1"

# Text stays text (a few bytes per label instead of a path per glyph); a fixed hash salt keeps
# the SVG identical from one run of the report to the next.
_STYLE: dict[str, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "ckpt-audit",
    # Folder names may hold "$": show them as written, never as math.
    "text.parse_math": False,
    "font.family": "sans-serif",
    # The bundled font first, so the browser lays text out as matplotlib measured it.
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


class ChartError(AuditorError):
    """matplotlib could not draw a run's chart; the message says why."""


class PlotUnavailableError(AuditorError):
    """matplotlib, the optional charting library, is not installed."""


def require_matplotlib() -> None:
    """Return when matplotlib can be imported; raise PlotUnavailableError naming the fix."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise PlotUnavailableError(
            f"charts need matplotlib, which is not installed: {INSTALL_HINT}"
        ) from exc


def chart_bytes(run: RunResult, fmt: str, title: str | None = None) -> bytes:
    """Return the chart of `run` encoded as `fmt` (png, svg or pdf), with an optional title."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    try:
        with _style():
            figure = draw(run, title)
            FigureCanvasAgg(figure)
            metadata = {"Date": None} if fmt == "svg" else None
            dpi = 150 if fmt == "png" else 72
            figure.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata)
    except (ValueError, ArithmeticError) as exc:
        # Losses are kept in a range matplotlib can draw; should another value still defeat
        # it (its numeric errors, numpy's LinAlgError, are ValueErrors), the run loses its
        # chart, never the report.
        raise ChartError(
            f"matplotlib could not draw the chart ({type(exc).__name__}: {exc})"
        ) from exc
    return buffer.getvalue()


def save_chart(run: RunResult, path: str) -> None:
    """Write the chart of `run` to `path` (format from its suffix), whole or not at all."""
    from .render.text import safe
    from .report_file import write_atomic

    fmt = chart_format(path)

    title = f"{safe(run.run_dir)}  [{run.verdict}]"
    write_atomic(path, chart_bytes(run, fmt, title))


def chart_format(path: str) -> str:
    """Return the chart format named by the suffix of `path`; raise UsageError when unknown."""
    from .errors import UsageError

    fmt = os.path.splitext(path)[1].lstrip(".").lower()
    if fmt not in FORMATS:
        raise UsageError(
            f"cannot tell the chart format of {path}: name the file .png, .svg or .pdf"
        )
    return fmt


def draw(run: RunResult, title: str | None = None) -> Figure:
    """Return a matplotlib Figure of the run's train and eval loss against step."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.0, 3.4))
    # Fixed margins instead of a layout engine: it would lay every chart out twice.
    figure.subplots_adjust(left=0.08, right=0.985, top=0.92 if title else 0.95, bottom=0.25)
    ax = figure.add_subplot()
    train = [(s, v) for s, v in run.train_losses if drawn(v)]
    evals = [
        (c.step, c.eval_loss, c.on_disk)
        for c in run.checkpoints
        if c.eval_loss is not None and drawn(c.eval_loss)
    ]
    values = [v for _, v in train] + [v for _, v, _ in evals]
    beyond = too_large(run)

    spans = overfit_spans(run)
    for start, end in spans:
        ax.axvspan(start, end, color=SHADE_COLOUR, alpha=0.45, lw=0, zorder=0)
    if train:
        steps, losses = zip(*thin(train, MAX_TRAIN_POINTS), strict=True)
        ax.plot(steps, losses, color=TRAIN_COLOUR, lw=1.2, label="train loss", zorder=2)
    if evals:
        line = thin([(step, loss) for step, loss, _ in evals], MAX_TRAIN_POINTS)
        ax.plot(
            [step for step, _ in line],
            [loss for _, loss in line],
            color=EVAL_COLOUR,
            lw=1.8,
            marker="o" if len(evals) <= MAX_EVAL_MARKERS else None,
            ms=4,
            mfc="white",
            label=_eval_label(run, evals),
            zorder=3,
        )
        kept = [(step, loss) for step, loss, on_disk in evals if on_disk]
        ax.plot(
            [step for step, _ in kept],
            [loss for _, loss in kept],
            ls="none",
            marker="o",
            ms=4,
            color=EVAL_COLOUR,
            zorder=4,
        )
    broken = [
        c.step for c in run.checkpoints if c.eval_loss is not None and not _finite(c.eval_loss)
    ]
    if broken:
        ax.plot(
            broken,
            [0.96] * len(broken),
            transform=ax.get_xaxis_transform(),
            ls="none",
            marker="x",
            ms=5,
            color=EVAL_COLOUR,
            label="eval loss NaN/inf",
            zorder=4,
        )
    on_disk = [c.step for c in run.checkpoints if c.on_disk]
    if on_disk:
        ax.plot(
            on_disk,
            [0.0] * len(on_disk),
            transform=ax.get_xaxis_transform(),
            ls="none",
            marker="|",
            ms=9,
            mew=1.2,
            color="#555555",
            label="checkpoint on disk",
            zorder=4,
            clip_on=False,
        )
    _mark_picks(ax, run)
    if spans:
        ax.axvspan(0, 0, color=SHADE_COLOUR, alpha=0.45, lw=0, label="train falls, eval rises")
    clipped = _set_limits(ax, run, values)
    off_chart = []
    if clipped is not None or any(v > 0 for v in beyond):
        off_chart.append(f"loss up to {max([v for v in beyond if v > 0] + [clipped or 0]):.3g}")
    if any(v < 0 for v in beyond):
        off_chart.append(f"down to {min(beyond):.3g}")
    if off_chart:
        ax.text(
            1.0,
            1.01,
            f"off the chart: {', '.join(off_chart)}",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=8,
            color="#777777",
        )
    if title:
        ax.set_title(title, loc="left")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(True, color="#e5e5e5", lw=0.6)
    ax.set_axisbelow(True)
    if not values:
        nothing = "no loss small enough to draw" if beyond else "no finite losses logged"
        ax.text(0.5, 0.5, nothing, transform=ax.transAxes, ha="center")
    else:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=6, handlelength=1.6)
    return figure


def _mark_picks(ax: Any, run: RunResult) -> None:
    eval_only = run.row(run.eval_only_pick)
    scorer = run.row(run.scorer_pick)
    if eval_only is not None and scorer is not None and eval_only.step == scorer.step:
        _mark(ax, eval_only, f"both picks: {_name(eval_only)}", SCORER_COLOUR, (0, 26))
        return
    if eval_only is not None:
        _mark(ax, eval_only, f"eval-only pick: {_name(eval_only)}", EVAL_ONLY_COLOUR, (0, 30))
    if scorer is not None:
        _mark(ax, scorer, f"scorer's pick: {_name(scorer)}", SCORER_COLOUR, (0, 52))


def _mark(ax: Any, row: CheckpointResult, label: str, colour: str, offset: tuple[int, int]) -> None:
    if row.eval_loss is None or not drawn(row.eval_loss):
        return
    ax.plot(
        [row.step],
        [row.eval_loss],
        ls="none",
        marker="o",
        ms=11,
        mfc="none",
        mew=2,
        color=colour,
        zorder=5,
    )
    align = _align(ax, row.step)
    # The leader line leaves the label from the corner above the point, so it stays vertical.
    corner = {"left": 0.0, "center": 0.5, "right": 1.0}[align]
    ax.annotate(
        label,
        (row.step, row.eval_loss),
        xytext=offset,
        textcoords="offset points",
        ha=align,
        fontsize=8.5,
        fontweight="bold",
        color=colour,
        arrowprops={
            "arrowstyle": "-",
            "color": colour,
            "lw": 0.8,
            "shrinkB": 6,
            "relpos": (corner, 0.0),
        },
        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
        zorder=6,
    )


def _eval_label(run: RunResult, evals: list[tuple[int, float, bool]]) -> str:
    from .render.text import safe

    # A key with an undecodable byte holds a lone surrogate, which no font can draw.
    name = safe(run.eval_key) if run.eval_key else "eval loss"
    markers = len(evals) <= MAX_EVAL_MARKERS
    if run.history_only or not markers or all(on_disk for _, _, on_disk in evals):
        return name
    return f"{name} (hollow: checkpoint deleted)"


def _align(ax: Any, step: int) -> str:
    """Return how to align a label at `step` so it stays inside the chart near either edge."""
    low, high = ax.get_xlim()
    where = (step - low) / (high - low) if high > low else 0.5
    return "right" if where > 0.8 else "left" if where < 0.2 else "center"


def _set_limits(ax: Any, run: RunResult, values: list[float]) -> float | None:
    """Keep a diverged loss (1e11) from flattening every other curve; return the clipped top."""
    low, high, clipped = y_range(run, values)
    ax.set_ylim(low, high)
    return clipped


def _name(row: CheckpointResult) -> str:
    return row.checkpoint or f"step {row.step}"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(cast(Any, _STYLE)):
        yield
