"""Flat records of an audit (one per run, or one per evaluated step) and their pandas DataFrames."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from .config import Config
    from .results import AuditResult, CheckpointResult, Pick, RunResult

LEVELS = ("runs", "checkpoints")

# The column kinds, in column order. CSV and DataFrames share them, so a CSV read back with
# pandas has the columns of `to_frame`. Kinds: "str", "int" (nullable Int64), "float"
# (float64, NaN when missing), "bool".
RUN_COLUMNS: dict[str, str] = {
    "run_dir": "str",
    "training": "int",
    "trainings": "int",
    "verdict": "str",
    "flagged": "bool",
    "error": "str",
    "eval_key": "str",
    "checkpoints": "int",
    "evaluations": "int",
    "history_only": "bool",
    "eval_only_checkpoint": "str",
    "eval_only_step": "int",
    "eval_only_eval_loss": "float",
    "eval_only_train_loss": "float",
    "eval_only_gap": "float",
    "eval_only_overfit": "float",
    "eval_only_score": "float",
    "scorer_checkpoint": "str",
    "scorer_step": "int",
    "scorer_eval_loss": "float",
    "scorer_train_loss": "float",
    "scorer_gap": "float",
    "scorer_overfit": "float",
    "scorer_score": "float",
    "smoothed_checkpoint": "str",
    "smoothed_step": "int",
    "smoothed_eval_loss": "float",
    "smoothed_train_loss": "float",
    "smoothed_gap": "float",
    "smoothed_overfit": "float",
    "smoothed_score": "float",
    "trainer_best_checkpoint": "str",
    "trainer_best_step": "int",
    "trainer_metric": "str",
    "eval_noise": "float",
    "eval_delta": "float",
    "eval_samples": "int",
    "outcome": "str",
    "contradicting_metric": "str",
    "trainer_best_outcome": "str",
    "decision": "str",
    "warnings": "int",
}

CHECKPOINT_COLUMNS: dict[str, str] = {
    "run_dir": "str",
    "training": "int",
    "verdict": "str",
    "step": "int",
    "checkpoint": "str",
    "on_disk": "bool",
    "candidate": "bool",
    "eval_loss": "float",
    "train_loss": "float",
    "gap": "float",
    "overfit": "float",
    "perplexity": "float",
    "epochs_without_improvement": "int",
    "score": "float",
    "c_eval": "float",
    "c_gap": "float",
    "c_perplexity": "float",
    "c_improvement": "float",
    "is_best": "bool",
    "is_eval_only_pick": "bool",
    "is_smoothed_pick": "bool",
    "is_trainer_best": "bool",
}

_PANDAS_DTYPES = {"str": "string", "int": "Int64", "float": "float64", "bool": "bool"}


def columns(level: str) -> dict[str, str]:
    """Return the column names and kinds of `level` ("runs" or "checkpoints")."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    return RUN_COLUMNS if level == "runs" else CHECKPOINT_COLUMNS


def records(result: AuditResult, level: str = "runs") -> list[dict[str, Any]]:
    """Return the flat records of `level`: run_records or checkpoint_records."""
    columns(level)
    return run_records(result) if level == "runs" else checkpoint_records(result)


def _pick_fields(prefix: str, pick: Pick | None, row: CheckpointResult | None) -> dict[str, Any]:
    score = row.score if row is not None else None
    return {
        f"{prefix}_checkpoint": pick.checkpoint if pick else None,
        f"{prefix}_step": pick.step if pick else None,
        f"{prefix}_eval_loss": row.eval_loss if row else None,
        f"{prefix}_train_loss": row.train_loss if row else None,
        f"{prefix}_gap": row.gap if row else None,
        f"{prefix}_overfit": row.overfit if row else None,
        f"{prefix}_score": score.total if score else None,
    }


def run_records(result: AuditResult) -> list[dict[str, Any]]:
    """Return one flat dict per run (the columns of RUN_COLUMNS, in order)."""
    return [run_record(run, result.config) for run in result.runs]


def run_record(run: RunResult, config: Config) -> dict[str, Any]:
    """Return the flat dict of one run audited with `config` (RUN_COLUMNS, in order)."""
    from .evidence import decision

    evidence = run.evidence
    metric = evidence.contradicting_metric if evidence is not None else None
    trainer = run.trainer_best_evidence
    record: dict[str, Any] = {
        "run_dir": run.run_dir,
        "training": run.training,
        "trainings": run.trainings,
        "verdict": run.verdict,
        "flagged": run.flagged,
        "error": run.error,
        "eval_key": run.eval_key,
        "checkpoints": run.checkpoints_on_disk,
        "evaluations": run.evaluations,
        "history_only": run.history_only,
        **_pick_fields("eval_only", run.eval_only_pick, run.row(run.eval_only_pick)),
        **_pick_fields("scorer", run.scorer_pick, run.row(run.scorer_pick)),
        **_pick_fields("smoothed", run.smoothed_pick, run.row(run.smoothed_pick)),
        "trainer_best_checkpoint": run.trainer_best.checkpoint if run.trainer_best else None,
        "trainer_best_step": run.trainer_best.step if run.trainer_best else None,
        "trainer_metric": run.trainer_metric,
        "eval_noise": evidence.eval_noise if evidence else None,
        "eval_delta": evidence.eval_delta if evidence else None,
        "eval_samples": evidence.eval_samples if evidence else None,
        "outcome": evidence.outcome if evidence else None,
        "contradicting_metric": metric.key if metric else None,
        "trainer_best_outcome": trainer.outcome if trainer else None,
        "decision": decision(run, config),
        "warnings": len(run.warnings),
    }
    return {name: record[name] for name in RUN_COLUMNS}


def checkpoint_records(result: AuditResult) -> list[dict[str, Any]]:
    """Return one flat dict per evaluated step or checkpoint folder of every run, with its run."""
    return [record for run in result.runs for record in run_checkpoint_records(run)]


def run_checkpoint_records(run: RunResult) -> list[dict[str, Any]]:
    """Return one flat dict per evaluated step or checkpoint folder of one run."""
    out = []
    eval_only = run.eval_only_pick.step if run.eval_only_pick else None
    smoothed = run.smoothed_pick.step if run.smoothed_pick else None
    trainer = run.trainer_best.step if run.trainer_best else None
    for row in run.checkpoints:
        score = row.score
        out.append(
            {
                "run_dir": run.run_dir,
                "training": run.training,
                "verdict": run.verdict,
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
                "is_eval_only_pick": row.step == eval_only,
                "is_smoothed_pick": row.step == smoothed,
                "is_trainer_best": row.step == trainer,
            }
        )
    return out


def to_frame(result: AuditResult, level: str = "runs") -> pd.DataFrame:
    """Return a DataFrame of runs (level="runs") or of every checkpoint ("checkpoints").

    Integers are nullable Int64, floats float64 (NaN when missing; an unscorable step's score
    is +inf, as in the SPEC), flags bool, text the pandas string dtype.
    """
    # A dependency, imported only here: it costs most of a second.
    import pandas as pd

    kinds = columns(level)
    rows = records(result, level)
    data = {
        name: pd.Series(
            [_missing_as_nan(r[name]) if kind == "float" else r[name] for r in rows],
            dtype=_PANDAS_DTYPES[kind],
        )
        for name, kind in kinds.items()
    }
    return pd.DataFrame(data, columns=list(kinds))


def _missing_as_nan(value: float | None) -> float:
    return float("nan") if value is None else value
