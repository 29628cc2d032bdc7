"""Shared cell formatting for the human-readable formats (table, markdown)."""

from __future__ import annotations

import math
import re

from ..config import Config
from ..evidence import decision
from ..picks import smoothed_eval
from ..results import AuditResult, CheckpointResult, DeployJudgement, Evidence, Pick, RunResult

# Folder names and file content come from anyone: never let them move the cursor or recolour
# the terminal. Lone surrogates are how Python spells a folder name's bytes that are not UTF-8;
# they cannot be printed or written as UTF-8 at all.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def safe(text: str) -> str:
    """Return `text` with control and bidi characters shown as escapes."""
    return _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


#: From this size on a number is written in scientific notation: a diverged loss's perplexity
#: would otherwise be 30 digits wide.
SCIENTIFIC_FROM = 1e6


def number(value: float | None, digits: int = 4) -> str:
    """Return a fixed-point number (scientific from 1e6 on), "inf"/"nan" for non-finite, "-"
    for missing."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if abs(value) >= SCIENTIFIC_FROM:
        return f"{value:.3e}"
    return f"{value:.{digits}f}"


def pick_label(pick: Pick | None) -> str:
    """Return the folder name of a pick, "-" when there is none."""
    return safe(pick.label) if pick is not None else "-"


def pick_with_numbers(run: RunResult, pick: Pick | None) -> str:
    """Return "checkpoint-N (eval 0.792, overfit 0.73)": a pick with the numbers the flag
    weighs (eval loss, and the one-sided gap `overfit`)."""
    if pick is None:
        return "-"
    row = run.row(pick)
    if row is None or row.eval_loss is None:
        return pick_label(pick)
    return f"{pick_label(pick)} (eval {number(row.eval_loss, 3)}, overfit {number(row.overfit, 2)})"


def smoothed_line(run: RunResult) -> str | None:
    """Return "the smoothed eval minimum is checkpoint-N (lowest 3-point mean eval_loss X)",
    or None when the run has no smoothed pick."""
    pick = run.smoothed_pick
    if pick is None:
        return None
    return _smoothed_text(pick, run.eval_key, smoothed_eval(run.checkpoints).get(pick.step))


def deploy_advice(deploy: DeployJudgement) -> str | None:
    """Return the line naming the smoothed eval minimum when the checkpoint shipped is not it,
    or None (no smoothed pick, or it is the one shipped)."""
    pick = deploy.smoothed_pick
    if pick is None or pick.step == deploy.step:
        return None
    text = _smoothed_text(pick, None, deploy.smoothed_eval_loss)
    return f"{text}; see docs/selection.md"


def _smoothed_text(pick: Pick, eval_key: str | None, mean: float | None) -> str:
    return (
        f"the smoothed eval minimum is {pick_label(pick)} (lowest 3-point mean "
        f"{safe(eval_key or 'eval loss')} {number(mean)})"
    )


def decisions(result: AuditResult) -> list[tuple[RunResult, str]]:
    """Return (run, its one-sentence decision) for every run that has one, in report order."""
    found = []
    for run in result.runs:
        text = decision(run, result.config)
        if text is not None:
            found.append((run, safe(text)))
    return found


def evidence_lines(run: RunResult) -> list[str]:
    """Return "evidence: eval noise ...; outcome: ..." for a run whose picks differ, and the
    same line for its Trainer's best when that is judged too."""
    lines = []
    scorer = pick_label(run.scorer_pick)
    if run.evidence is not None:
        judged = pick_label(run.eval_only_pick)
        lines.append("evidence: " + _evidence_text(run.evidence, judged, scorer))
    if run.trainer_best_evidence is not None:
        judged = pick_label(run.trainer_best)
        lines.append(
            f"evidence on the Trainer's best, {judged}: "
            + _evidence_text(run.trainer_best_evidence, judged, scorer)
        )
    return lines


def _evidence_text(evidence: Evidence, judged: str, scorer: str) -> str:
    favoured = {"eval_only": judged, "scorer": scorer, "neither": "neither"}
    parts = [
        f"eval noise {number(evidence.eval_noise)}",
        f"eval advantage {number(evidence.eval_delta)}",
        f"eval samples {evidence.eval_samples if evidence.eval_samples is not None else '-'}",
    ]
    parts += [
        f"{safe(m.key)} {number(m.eval_only)} vs {number(m.scorer)} ({m.direction} is better, "
        f"noise {number(m.noise)}, favours {favoured[m.favours]})"
        for m in evidence.metrics
    ]
    return f"{'; '.join(parts)}; outcome: {evidence.outcome}"


def marks(run: RunResult, row: CheckpointResult) -> str:
    """Return which picks a checkpoint row is: eval-only, scorer, smoothed, trainer."""
    found = []
    for name, pick in (
        ("eval-only", run.eval_only_pick),
        ("scorer", run.scorer_pick),
        ("smoothed", run.smoothed_pick),
        ("trainer", run.trainer_best),
    ):
        if pick is not None and pick.step == row.step:
            found.append(name)
    return ", ".join(found)


def verdict_label(run: RunResult) -> str:
    """Return the verdict as shown to people: OVERFIT is loud, the rest plain."""
    return "OVERFIT" if run.verdict == "overfit" else run.verdict


def score_cells(run: RunResult, row: CheckpointResult) -> list[str]:
    """Return a checkpoint row's score components, total and pick marks as cells."""
    s = row.score
    return [
        number(s.eval if s else None),
        number(s.gap if s else None),
        number(s.perplexity if s else None),
        number(s.improvement if s else None, 2),
        number(s.total if s else None),
        marks(run, row),
    ]


def config_note(config: Config) -> str | None:
    """Return "config: key value, ..." naming the settings that differ from the defaults, or
    None when the report was made with the defaults."""
    default = Config().to_dict()
    changed = []
    for key, value in config.to_dict().items():
        if key == "weights":
            changed += [
                f"weights.{name} {weight:g}"
                for name, weight in value.items()
                if weight != default["weights"][name]
            ]
        elif value != default[key]:
            shown = ", ".join(value) if isinstance(value, list) else value
            changed.append(f"{key} {shown:g}" if isinstance(value, float) else f"{key} {shown}")
    if not changed:
        return None
    return "config: " + "; ".join(safe(item) for item in changed) + " (the rest as default)"
