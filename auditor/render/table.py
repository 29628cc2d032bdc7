"""The plain-text table people read in a terminal."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ..config import Config
from ..evidence import decision
from ..results import AuditResult, DeployJudgement, RunResult
from ..sweep import SweepBest, SweepBestTracker
from . import collected
from .fit import fit_table, shorten_middle, visible_width, wrap
from .text import (
    config_note,
    evidence_lines,
    number,
    pick_label,
    pick_with_numbers,
    safe,
    score_cells,
    verdict_label,
)

RUN_HEADERS = (
    "run",
    "ckpts",
    "evals",
    "eval-only pick",
    "scorer pick",
    "smoothed pick",
    "trainer best",
    "verdict",
)
#: What a narrow terminal loses first, in order: the smoothed pick (an extra, `show` marks it
#: too), counts, the Trainer's best, then each pick's numbers (eval loss, overfit). The run,
#: both picks and the verdict always stay; run names are shortened in the middle.
RUN_DROP_ORDER = ("smoothed pick", "evals", "ckpts", "trainer best", "numbers")

CHECKPOINT_HEADERS = (
    "step",
    "checkpoint",
    "eval_loss",
    "train_loss",
    "gap",
    "overfit",
    "ppl",
    "k",
    "c.eval",
    "c.gap",
    "c.ppl",
    "c.improv",
    "score",
    "pick",
)
_COMPONENTS = ("c.eval", "c.gap", "c.ppl", "c.improv")
#: What `show` loses first on a narrow terminal: the score's components (the score stays), the
#: pick marks in full words (initials instead), perplexity, the symmetric gap (overfit stays),
#: the checkpoint's folder name.
CHECKPOINT_DROP_ORDER = ("components", "pick words", "ppl", "gap", "checkpoint")
_INITIALS = {"eval-only": "E", "scorer": "S", "smoothed": "M", "trainer": "T"}


def render(
    result: AuditResult, view: str = "runs", color: bool = False, width: int | None = None
) -> str:
    """Return a text table: one row per run, or per evaluated step with view="checkpoints".

    With color=True the verdicts that need attention are coloured (for a terminal). With a
    `width`, every row fits in that many columns (see RUN_DROP_ORDER, CHECKPOINT_DROP_ORDER).
    """
    return collected(write_report, result, view, color=color, width=width)


def write_report(
    runs: Iterable[RunResult],
    config: Config,
    write: Callable[[str], Any],
    view: str = "runs",
    deploy: DeployJudgement | None = None,
    sweep_best: tuple[SweepBest, ...] | None = None,
    color: bool = False,
    width: int | None = None,
) -> None:
    """Write the table of `runs` through `write` (see `render`): with view="checkpoints", one
    table of steps per run as each comes; else the run table once every run is in.

    Its columns are as wide as their widest cell, so every row must be known first: what is
    held is one line of cells per run, never the runs themselves. The sweep's best (computed on
    the way when `sweep_best` is None) and the decisions follow the table.
    """
    if view == "checkpoints":
        for at, run in enumerate(runs):
            write(("\n\n" if at else "") + _checkpoint_table(run, config, width))
        write("\n")
        return
    tracker = SweepBestTracker() if sweep_best is None else None
    rows: list[str] = []
    said: list[str] = []
    for run in runs:
        if tracker is not None:
            tracker.add(run)
        rows.append(_CELL_SEPARATOR.join(_run_row(run, color)))
        text = decision(run, config)
        if text is not None:
            said.append(f"{safe(run.label)}: {safe(text)}")
    if width is None:
        # Full width: nothing is dropped, and the lines go out as they are laid out.
        text = ""
        laid_out = _lines(RUN_HEADERS, lambda: (_split(row)[: len(RUN_HEADERS)] for row in rows))
        for at, line in enumerate(laid_out):
            text += ("\n" if at else "") + line
            if len(text) >= _WRITE_AT:
                write(text)
                text = ""
    else:
        text, _ = fit_table(
            lambda dropped: _run_table(rows, dropped),
            RUN_DROP_ORDER,
            width,
            _layout,
            _layout_width,
            name_column=0,
        )
    if said:
        text += "\n\n" + "\n".join(wrap(line, width) for line in said)
    lines = []
    if deploy is not None:
        status = "FAIL" if deploy.flagged else "pass"
        lines.append(f"deploy {safe(deploy.checkpoint)}: {status}: {safe(deploy.reason)}")
    lines += sweep_lines(tracker.best() if tracker is not None else sweep_best or ())
    if lines:
        text += "\n\n" + "\n".join(wrap(line, width) for line in lines)
    note = config_note(config)
    if note:
        text += "\n" + wrap(note, width)
    write(text + "\n")


def _layout(headers: Sequence[str], rows: list[list[str]]) -> str:
    return "\n".join(_lines(headers, lambda: rows))


def _layout_width(headers: Sequence[str], rows: list[list[str]]) -> int:
    """Return the width of `_layout(headers, rows)`: that of its line of dashes."""
    widths = _column_widths(headers, rows)
    return sum(widths) + len(_SPACE) * (len(widths) - 1)


def _column_widths(headers: Sequence[str], rows: Iterable[list[str]]) -> list[int]:
    widths = [len(header) + _MIN_PADDING for header in headers]
    for cells in rows:
        for column, cell in enumerate(cells):
            widths[column] = max(widths[column], _width(cell.strip()))
    return widths


def _lines(headers: Sequence[str], rows: Callable[[], Iterable[list[str]]]) -> Iterator[str]:
    """Yield the lines of a table of `headers` and the cells `rows()` gives (called twice: the
    widths first), laid out as tabulate's "simple" format: columns two spaces apart, each at
    least two wider than its header, text left-aligned, no trailing spaces."""
    widths = _column_widths(headers, rows())
    yield _SPACE.join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    yield _SPACE.join("-" * w for w in widths)
    for cells in rows():
        padded = []
        for cell, width in zip(cells, widths, strict=True):
            cell = cell.strip()
            padded.append(cell + " " * (width - _width(cell)))
        yield _SPACE.join(padded).rstrip()


def _width(cell: str) -> int:
    """Return the columns `cell` takes on screen (colour codes take none)."""
    return visible_width(cell) if "\x1b" in cell else len(cell)


_MIN_PADDING = 2
_SPACE = "  "
# The streamed table goes out in pieces of about this many characters.
_WRITE_AT = 1 << 16


def sweep_lines(groups: Iterable[SweepBest]) -> list[str]:
    """Return the closing lines naming each group's best checkpoint, by score and by eval loss."""
    lines = []
    for group in groups:
        by_score, by_eval = group.by_score, group.by_eval_loss
        line = (
            f"best of {safe(group.parent)} ({group.runs} runs on {safe(group.eval_key)}) by "
            f"score: {safe(by_score.label_below(group.parent))} "
            f"(score {number(by_score.score)}, eval_loss {number(by_score.eval_loss)})"
        )
        if by_eval == by_score:
            lines.append(line + "; lowest eval_loss: the same checkpoint")
            continue
        lines.append(
            line + f"; lowest eval_loss: {safe(by_eval.label_below(group.parent))} "
            f"(score {number(by_eval.score)}, eval_loss {number(by_eval.eval_loss)})"
        )
    return lines


_COLOURS = {"overfit": "red", "error": "red", "differs": "yellow"}


def _verdict(run: RunResult, color: bool) -> str:
    label = verdict_label(run)
    if color and run.verdict in _COLOURS:
        import click

        return click.style(label, fg=_COLOURS[run.verdict], bold=run.verdict == "overfit" or None)
    return label


# Cells of a held row: a character no cell holds (safe() escapes control characters).
_CELL_SEPARATOR = "\x1f"
# The pick cells with their numbers, and after the table's columns the same picks without them.
_PICKS_WITHOUT_NUMBERS = {3: len(RUN_HEADERS), 4: len(RUN_HEADERS) + 1}


def _run_table(rows: list[str], dropped: frozenset[str]) -> tuple[list[str], list[list[str]]]:
    keep = [i for i, name in enumerate(RUN_HEADERS) if name not in dropped]
    if "numbers" in dropped:
        keep = [_PICKS_WITHOUT_NUMBERS.get(i, i) for i in keep]
    headers = [name for name in RUN_HEADERS if name not in dropped]
    return headers, [[cells[i] for i in keep] for cells in map(_split, rows)]


def _split(row: str) -> list[str]:
    return row.split(_CELL_SEPARATOR)


def _run_row(run: RunResult, color: bool) -> list[str]:
    """Return the run's cells (RUN_HEADERS), then its two picks without their numbers."""
    if run.error is not None:
        return [safe(run.run_dir), *"-" * (len(RUN_HEADERS) - 2), _verdict(run, color), "-", "-"]
    return [
        safe(run.label),
        str(run.checkpoints_on_disk) if not run.history_only else "-",
        str(run.evaluations),
        pick_with_numbers(run, run.eval_only_pick),
        pick_with_numbers(run, run.scorer_pick),
        pick_label(run.smoothed_pick),
        pick_label(run.trainer_best),
        _verdict(run, color),
        pick_label(run.eval_only_pick),
        pick_label(run.scorer_pick),
    ]


def _checkpoint_table(run: RunResult, config: Config, width: int | None) -> str:
    title = f"{safe(run.label)}  [{verdict_label(run)}]"
    if run.error is not None:
        return f"{title}\nerror: {safe(run.error)}"
    suffix = f"  [{verdict_label(run)}]  eval key: {safe(run.eval_key or '-')}"
    name = safe(run.label)
    if width is not None and len(name) + len(suffix) > width:
        name = shorten_middle(name, max(width - len(suffix), 20))
    table, dropped = fit_table(
        lambda dropped: _checkpoint_rows(run, dropped),
        CHECKPOINT_DROP_ORDER,
        width,
        _layout,
        _layout_width,
    )
    lines = [*evidence_lines(run)]
    said = decision(run, config)
    if said:
        lines.append(f"decision: {safe(said)}")
    legend = checkpoint_legend(dropped, width, smoothed=run.smoothed_pick is not None)
    return "\n".join([f"{name}{suffix}", table, legend, *(wrap(line, width) for line in lines)])


def checkpoint_legend(
    dropped: frozenset[str] = frozenset(), width: int | None = None, smoothed: bool = False
) -> str:
    """Return the legend of `show`'s columns (of those not dropped): one line, the least
    needed explanations left out when it would not fit in `width`; the key to the pick
    initials goes on a line of its own rather than be left out. `smoothed`: the run has a
    smoothed pick to mark."""
    initials = None
    if "pick words" in dropped:
        shown = "E eval-only, S scorer, M smoothed, T trainer" if smoothed else None
        initials = f"pick: {shown or 'E eval-only, S scorer, T trainer'}"
    parts = ["k: evals since eval_loss last improved"]
    apart = initials is not None and width is not None and len(parts[0] + initials) + 2 > width
    if initials and not apart:
        parts.append(initials)
    parts.append("overfit: max(0, eval-train)/eval")
    if "components" not in dropped:
        parts.append("c.*: the score's parts, summing to score")
    if "ppl" not in dropped:
        parts.append("ppl: exp(eval_loss)")
    if "gap" not in dropped:
        parts.append("gap: |train-eval|/eval")
    while width is not None and len(parts) > 1 and len("; ".join(parts)) > width:
        parts.pop()
    if apart:
        return "; ".join(parts) + "\n" + str(initials)
    return "; ".join(parts)


def _checkpoint_rows(run: RunResult, dropped: frozenset[str]) -> tuple[list[str], list[list[str]]]:
    names = [
        name
        for name in CHECKPOINT_HEADERS
        if name not in dropped and not ("components" in dropped and name in _COMPONENTS)
    ]
    rows = []
    for row in run.checkpoints:
        cells = dict(
            zip(
                CHECKPOINT_HEADERS,
                (
                    str(row.step),
                    safe(row.checkpoint) if row.checkpoint else "-",
                    number(row.eval_loss),
                    number(row.train_loss),
                    number(row.gap),
                    number(row.overfit),
                    number(row.perplexity, 2),
                    "-"
                    if row.epochs_without_improvement is None
                    else str(row.epochs_without_improvement),
                    *score_cells(run, row),
                ),
                strict=True,
            )
        )
        if "pick words" in dropped:
            cells["pick"] = "".join(_INITIALS[m] for m in cells["pick"].split(", ") if m)
        rows.append([cells[name] for name in names])
    return names, rows
