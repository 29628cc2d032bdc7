"""pandas DataFrames of an audit: one row per run, or one per evaluated step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .results import AuditResult

LEVELS = ("runs", "checkpoints")


def run_records(result: AuditResult) -> list[dict[str, Any]]:
    """Return one flat dict per run (the columns of the run-level frame and CSV)."""
    records = []
    for run in result.runs:
        eval_row, best_row = run.row(run.eval_only_pick), run.row(run.scorer_pick)
        records.append(
            {
                "run_dir": run.run_dir,
                "verdict": run.verdict,
                "flagged": run.flagged,
                "error": run.error,
                "eval_key": run.eval_key,
                "checkpoints": run.checkpoints_on_disk,
                "evaluations": run.evaluations,
                "eval_only_checkpoint": run.eval_only_pick.checkpoint
                if run.eval_only_pick
                else None,
                "eval_only_step": run.eval_only_pick.step if run.eval_only_pick else None,
                "eval_only_eval_loss": eval_row.eval_loss if eval_row else None,
                "eval_only_gap": eval_row.gap if eval_row else None,
                "eval_only_overfit": eval_row.overfit if eval_row else None,
                "scorer_checkpoint": run.scorer_pick.checkpoint if run.scorer_pick else None,
                "scorer_step": run.scorer_pick.step if run.scorer_pick else None,
                "scorer_eval_loss": best_row.eval_loss if best_row else None,
                "scorer_gap": best_row.gap if best_row else None,
                "scorer_overfit": best_row.overfit if best_row else None,
                "scorer_score": best_row.score.total if best_row and best_row.score else None,
                "trainer_best_checkpoint": run.trainer_best.checkpoint
                if run.trainer_best
                else None,
                "trainer_best_step": run.trainer_best.step if run.trainer_best else None,
                "warnings": len(run.warnings),
            }
        )
    return records


def checkpoint_records(result: AuditResult) -> list[dict[str, Any]]:
    """Return one flat dict per evaluated step or checkpoint folder, with its run."""
    records = []
    for run in result.runs:
        for row in run.checkpoints:
            score = row.score
            records.append(
                {
                    "run_dir": run.run_dir,
                    "step": row.step,
                    "checkpoint": row.checkpoint,
                    "on_disk": row.on_disk,
                    "candidate": row.candidate,
                    "eval_loss": row.eval_loss,
                    "train_loss": row.train_loss,
                    "gap": row.gap,
                    "overfit": row.overfit,
                    "perplexity": row.perplexity,
                    "epochs_without_improvement": row.epochs_without_improvement,
                    "score": score.total if score else None,
                    "c_eval": score.eval if score else None,
                    "c_gap": score.gap if score else None,
                    "c_perplexity": score.perplexity if score else None,
                    "c_improvement": score.improvement if score else None,
                    "is_best": row.is_best,
                    "is_eval_only_pick": run.eval_only_pick is not None
                    and run.eval_only_pick.step == row.step,
                }
            )
    return records


def to_frame(result: AuditResult, level: str = "runs") -> pd.DataFrame:
    """Return a DataFrame of runs (level="runs") or of every checkpoint ("checkpoints")."""
    import pandas as pd

    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    records = run_records(result) if level == "runs" else checkpoint_records(result)
    frame = pd.DataFrame.from_records(records)
    return frame.convert_dtypes()
