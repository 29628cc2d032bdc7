"""The plain-text table people read in a terminal."""

from __future__ import annotations

from ..evidence import decision
from ..results import AuditResult, RunResult
from .text import (
    config_note,
    decisions,
    evidence_lines,
    number,
    pick_label,
    pick_with_numbers,
    safe,
    score_cells,
    verdict_label,
)

RUN_HEADERS = ("run", "ckpts", "evals", "eval-only pick", "scorer pick", "trainer best", "verdict")
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


def render(result: AuditResult, view: str = "runs", color: bool = False) -> str:
    """Return a text table: one row per run, or per evaluated step with view="checkpoints".

    With color=True the verdicts that need attention are coloured (for a terminal).
    """
    from tabulate import tabulate

    if view == "checkpoints":
        return "\n\n".join(_checkpoint_table(run, result) for run in result.runs) + "\n"
    rows = [_run_row(run, color) for run in result.runs]
    text = tabulate(rows, headers=RUN_HEADERS, tablefmt="simple", disable_numparse=True)
    found = decisions(result)
    if found:
        text += "\n\n" + "\n".join(f"{safe(run.run_dir)}: {line}" for run, line in found)
    if result.deploy is not None:
        status = "FAIL" if result.deploy.flagged else "pass"
        text += (
            f"\n\ndeploy {safe(result.deploy.checkpoint)}: {status}: {safe(result.deploy.reason)}"
        )
    if result.sweep_best is not None and len(result.runs) > 1:
        text += "\n\n" + sweep_line(result)
    note = config_note(result.config)
    if note:
        text += "\n" + note
    return text + "\n"


def sweep_line(result: AuditResult) -> str:
    """Return the closing line naming the sweep's best checkpoint, by score and by eval loss."""
    best = result.sweep_best
    if best is None:
        return ""
    by_score, by_eval = best.by_score, best.by_eval_loss
    line = (
        f"best of the sweep by score: {safe(by_score.label)} "
        f"(score {number(by_score.score)}, eval_loss {number(by_score.eval_loss)})"
    )
    if by_eval == by_score:
        return line + "; lowest eval_loss: the same checkpoint"
    return line + (
        f"; lowest eval_loss: {safe(by_eval.label)} "
        f"(score {number(by_eval.score)}, eval_loss {number(by_eval.eval_loss)})"
    )


_COLOURS = {"overfit": "red", "error": "red", "differs": "yellow"}


def _verdict(run: RunResult, color: bool) -> str:
    label = verdict_label(run)
    if color and run.verdict in _COLOURS:
        import click

        return click.style(label, fg=_COLOURS[run.verdict], bold=run.verdict == "overfit" or None)
    return label


def _run_row(run: RunResult, color: bool = False) -> tuple[str, ...]:
    if run.error is not None:
        return (safe(run.run_dir), "-", "-", "-", "-", "-", _verdict(run, color))
    return (
        safe(run.run_dir),
        str(run.checkpoints_on_disk) if not run.history_only else "-",
        str(run.evaluations),
        pick_with_numbers(run, run.eval_only_pick),
        pick_with_numbers(run, run.scorer_pick),
        pick_label(run.trainer_best),
        _verdict(run, color),
    )


def _checkpoint_table(run: RunResult, result: AuditResult) -> str:
    from tabulate import tabulate

    title = f"{safe(run.run_dir)}  [{verdict_label(run)}]"
    if run.error is not None:
        return f"{title}\nerror: {safe(run.error)}"
    title += f"  eval key: {safe(run.eval_key or '-')}"
    rows = []
    for row in run.checkpoints:
        rows.append(
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
            )
        )
    table = tabulate(rows, headers=CHECKPOINT_HEADERS, tablefmt="simple", disable_numparse=True)
    text = f"{title}\n{table}"
    for evidence in evidence_lines(run):
        text += "\n" + evidence
    said = decision(run, result.config)
    return text + (f"\ndecision: {safe(said)}" if said else "")
