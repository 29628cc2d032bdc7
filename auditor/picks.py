"""Pick checkpoints, apply the overfit flag and give each run its verdict (SPEC section 4).

Pure: takes what `read` produced and returns result objects; no I/O, no printing.
"""

from __future__ import annotations

import itertools
import math
import re
import reprlib
from collections.abc import Sequence
from typing import Any

from .config import Config
from .evidence import eval_curves as eval_curves_of
from .evidence import sentence, weigh
from .pair import Digest, Evaluation, History, pair_digest
from .results import CheckpointResult, DeployJudgement, Pick, RunResult
from .scoring import gap_ratio, is_finite, overfit_ratio, perplexity, score
from .sources import RunRecord

# A folder name has at most 255 bytes: a longer step names no folder (and int() refuses one of
# thousands of digits). ASCII digits only, as the Trainer writes them.
_CHECKPOINT_TAIL = re.compile(r"(?:^|[\\/])(checkpoint-([0-9]{1,250}))[\\/]*$")
#: The smoothed pick is reported from this many finite evaluations on: on simulated runs it
#: beat the eval-only pick in every regime with 20 or more and lost in most with 5
#: (docs/selection.md); in between it was not measured.
SMOOTHED_FROM = 20


def error_result(run_dir: str, message: str) -> RunResult:
    """Return the result of a run that could not be audited."""
    return RunResult(run_dir=run_dir, verdict="error", error=message)


def audit_run(record: RunRecord, config: Config, curves: bool = True) -> RunResult:
    """Return the audit of one run read from disk; with `curves` False, without the train
    loss curve (thousands of points per run: a sweep's report does not need them) and without
    the evaluation curves a later `judge_deploy` needs."""
    digest = record.digest
    trainer_best, trainer_warning = _trainer_best(record)
    trainer_metric = record.best.metric or _trainer_metric(record, digest, trainer_best)
    history = pair_digest(digest, config.eval_key, config.train_loss, curves, trainer_metric)
    warnings = list(record.warnings) + list(history.warnings)
    rows = _rows(record, history, config)
    candidates = [r for r in rows if r.candidate]
    eval_only = min(candidates, key=lambda r: (r.eval_loss, r.step), default=None)
    best = next((r for r in candidates if r.is_best), None)
    smoothed = smoothed_minimum(rows, SMOOTHED_FROM)
    if trainer_warning:
        warnings.append(trainer_warning)
    if trainer_metric and history.eval_key and trainer_metric != history.eval_key:
        warnings.append(
            f"the Trainer chose its best checkpoint on {trainer_metric}, not on "
            f"{history.eval_key}; the eval-only pick here is the lowest {history.eval_key}"
        )
    warnings.extend(_pairing_warnings(candidates))
    if record.history_only:
        warnings.append(
            "no checkpoint folders: the picks come from the history alone "
            "(every evaluated step is a candidate)"
        )
    evidence = trainer_evidence = None
    # Only a disagreement needs the other eval_* curves: most runs of a sweep skip them.
    eval_curves: dict[str, dict[int, float]] = {}
    if eval_only is None or best is None or history.eval_key is None:
        verdict, flagged = "no_candidates", False
        if history.eval_key is not None:
            warnings.append(_nothing_to_pick(record, history))
    else:
        trainer_row = next((r for r in rows if trainer_best and r.step == trainer_best.step), None)
        judge_trainer = (
            trainer_row is not None
            and trainer_row.candidate
            and trainer_row.step not in (eval_only.step, best.step)
        )
        if curves or eval_only.step != best.step or judge_trainer:
            eval_curves = eval_curves_of(digest.eval_entries)
        if eval_only.step == best.step:
            verdict, flagged = "agree", False
        else:
            evidence = weigh(eval_only, best, eval_curves, history.eval_key, config)
            flagged = evidence.flagged
            verdict = "overfit" if flagged else "differs"
        if judge_trainer:
            assert trainer_row is not None
            trainer_evidence = weigh(trainer_row, best, eval_curves, history.eval_key, config)
    return RunResult(
        run_dir=record.run_dir,
        verdict=verdict,
        flagged=flagged,
        eval_key=history.eval_key,
        eval_only_pick=_pick(eval_only),
        scorer_pick=_pick(best),
        smoothed_pick=_pick(smoothed[0]) if smoothed else None,
        trainer_best=trainer_best,
        trainer_metric=trainer_metric,
        history_only=record.history_only,
        evidence=evidence,
        trainer_best_evidence=trainer_evidence,
        checkpoints=tuple(rows),
        warnings=tuple(warnings),
        train_losses=history.train_losses,
        eval_keys=history.eval_keys,
        eval_curves=eval_curves if curves else {},
        training=record.training,
        trainings=record.trainings,
    )


def smoothed_eval(rows: Sequence[CheckpointResult]) -> dict[int, float]:
    """Return step -> the centred 3-point mean of the run's eval curve (the finite eval losses
    of `rows`, in step order), a 2-point mean at either end."""
    curve = sorted(
        (r.step, r.eval_loss) for r in rows if r.eval_loss is not None and is_finite(r.eval_loss)
    )
    last = len(curve) - 1
    smoothed: dict[int, float] = {}
    for i, (step, _) in enumerate(curve):
        window = [value for _, value in curve[max(0, i - 1) : min(last, i + 1) + 1]]
        smoothed[step] = sum(window) / len(window)
    return smoothed


def smoothed_minimum(
    rows: Sequence[CheckpointResult], min_evaluations: int = 1
) -> tuple[CheckpointResult, float] | None:
    """Return the candidate with the lowest smoothed eval loss (`smoothed_eval`) and that
    value, ties going to the earlier step; None when no row is a candidate or the curve has
    fewer than `min_evaluations` finite values.

    Neighbours without a checkpoint folder still count: their eval losses are in the log.
    """
    # Each evaluation has a row: fewer rows than that cannot make the curve long enough.
    if len(rows) < min_evaluations:
        return None
    smoothed = smoothed_eval(rows)
    if len(smoothed) < min_evaluations:
        return None
    return min(
        ((r, smoothed[r.step]) for r in rows if r.candidate),
        key=lambda pair: (pair[1], pair[0].step),
        default=None,
    )


def _nothing_to_pick(record: RunRecord, history: History) -> str:
    """Explain why no checkpoint is a candidate; when the evaluations never landed on a saved
    step (eval per epoch, save every N steps), say both schedules and the nearest saves."""
    evaluated = [e for e in history.evaluations if is_finite(e.eval_loss)]
    saved = sorted(c.step for c in record.checkpoints if c.usable)
    if not evaluated or not saved or {e.step for e in evaluated} & set(saved):
        return "no checkpoint on disk has a finite evaluation at its step: nothing to pick"
    lowest = min(evaluated, key=lambda e: (e.eval_loss, e.step))
    distance = min(abs(step - lowest.step) for step in saved)
    nearest = [f"checkpoint-{s}" for s in saved if abs(s - lowest.step) == distance]
    return (
        f"no evaluation landed on a saved step: evaluated {_schedule([e.step for e in evaluated])},"
        f" saved {_schedule(saved)}; the lowest {history.eval_key} (step {lowest.step}) is nearest "
        f"{' and '.join(nearest)}. Set save_strategy to the eval_strategy (and save_steps to "
        "eval_steps) so that every evaluated step is saved"
    )


def _schedule(steps: list[int]) -> str:
    gaps = {b - a for a, b in itertools.pairwise(steps)}
    if len(gaps) == 1 and steps[0] == next(iter(gaps)):
        return f"every {steps[0]} steps (to step {steps[-1]})"
    return f"at steps {_steps(steps)}"


def _pick(row: CheckpointResult | None) -> Pick | None:
    return Pick(row.checkpoint, row.step) if row is not None else None


def _rows(record: RunRecord, history: History, config: Config) -> list[CheckpointResult]:
    """Return a row per evaluated step or checkpoint folder, in step order, the scorer's pick
    (the candidate of lowest score, the earlier step on a tie) marked is_best."""
    evaluations: dict[int, Evaluation] = {e.step: e for e in history.evaluations}
    disk = {c.step: c for c in record.checkpoints}
    scores = {
        step: score(e.eval_loss, e.train_loss, e.epochs_without_improvement, config)
        for step, e in evaluations.items()
    }
    candidates = {
        step
        for step, e in evaluations.items()
        if is_finite(e.eval_loss) and (record.history_only or (step in disk and disk[step].usable))
    }
    best = min(candidates, key=lambda step: (scores[step].total, step), default=None)
    rows = []
    for step in sorted(evaluations.keys() | disk.keys()):
        folder = disk.get(step)
        evaluation = evaluations.get(step)
        if evaluation is None:
            rows.append(
                CheckpointResult(
                    step,
                    folder.name if folder else None,
                    folder is not None,
                    False,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                )
            )
            continue
        loss = evaluation.eval_loss
        finite = is_finite(loss)
        rows.append(
            CheckpointResult(
                step=step,
                checkpoint=folder.name if folder else None,
                on_disk=folder is not None,
                candidate=step in candidates,
                eval_loss=loss,
                train_loss=evaluation.train_loss,
                gap=gap_ratio(loss, evaluation.train_loss) if finite else None,
                overfit=overfit_ratio(loss, evaluation.train_loss) if finite else None,
                perplexity=perplexity(loss) if finite else None,
                epochs_without_improvement=evaluation.epochs_without_improvement,
                score=scores[step],
                is_best=step == best,
            )
        )
    return rows


def _pairing_warnings(candidates: list[CheckpointResult]) -> list[str]:
    warnings = []
    no_train = [r.step for r in candidates if r.train_loss is None]
    if no_train:
        warnings.append(
            f"no train loss logged at or before step {_steps(no_train)}: the gap term is 0 there"
        )
    not_positive = [r.step for r in candidates if r.eval_loss is not None and r.eval_loss <= 0]
    if not_positive:
        warnings.append(
            f"eval loss is zero or negative at step {_steps(not_positive)}: the gap term is 0 "
            "there (is this a loss?)"
        )
    return warnings


def _steps(steps: list[int], most: int = 6) -> str:
    shown = ", ".join(str(s) for s in steps[:most])
    return shown + (f" and {len(steps) - most} more" if len(steps) > most else "")


def _trainer_best(record: RunRecord) -> tuple[Pick | None, str | None]:
    """Return what the Trainer recorded as best, resolving stale paths by their last part."""
    recorded = record.best
    on_disk = {c.step: c.name for c in record.checkpoints}
    if recorded.checkpoint:
        match = _CHECKPOINT_TAIL.search(recorded.checkpoint.strip())
        if match:
            name, step = match.group(1), int(match.group(2))
            if step in record.overwritten:
                return Pick(name, step), (
                    f"the Trainer's best, {name}, was overwritten by a later training"
                )
            if not record.history_only and step not in on_disk:
                return Pick(name, step), (
                    f"the Trainer's best checkpoint ({name}) is no longer on disk"
                )
            return Pick(on_disk.get(step, name), step), None
        return None, (
            f"best_model_checkpoint {reprlib.repr(recorded.checkpoint)} does not end in "
            "a checkpoint-<step> folder name: the Trainer's best is not known"
        )
    step_value = recorded.step
    if step_value is None:
        return None, None
    if step_value in on_disk:
        return Pick(on_disk[step_value], step_value), None
    if step_value in record.overwritten:
        name = f"checkpoint-{step_value}"
        return Pick(name, step_value), (
            f"the Trainer's best, {name}, was overwritten by a later training"
        )
    if record.history_only:
        return Pick(None, step_value), None
    return None, (
        f"the Trainer recorded best_global_step {step_value} but saved no checkpoint there "
        "(eval and save steps misaligned?), so it had no best checkpoint to load"
    )


def _trainer_metric(record: RunRecord, digest: Digest, best: Pick | None) -> str | None:
    """Return the eval key whose value at the Trainer's best step equals its best_metric."""
    step = best.step if best is not None else record.best.step
    if step is None or record.best.value is None:
        return None
    target = record.best.value
    for at, entry in digest.eval_entries:
        if at != step:
            continue
        for key, value in entry.items():
            if key.startswith("eval_") and _close(value, target):
                return key
    return None


def _close(value: Any, target: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isclose(value, target, rel_tol=1e-9, abs_tol=1e-12)


def judge_deploy(run: RunResult, checkpoint: str, config: Config) -> DeployJudgement:
    """Return the gate's judgement of shipping `checkpoint` (a folder name) of `run`, with the
    flag rule of SPEC section 4 in place of the eval-only pick (`run` audited with curves).

    Raises ValueError when the checkpoint has no evaluation at its step or the run has no pick.
    """
    row = next((c for c in run.checkpoints if c.checkpoint == checkpoint and c.on_disk), None)
    if row is None:
        raise ValueError(f"{checkpoint} is not a checkpoint folder of {run.run_dir}")
    if not row.candidate:
        raise ValueError(
            f"{checkpoint} has no finite {run.eval_key or 'eval loss'} at its step "
            f"{row.step}, so the gate cannot judge it"
        )
    best = run.row(run.scorer_pick)
    if best is None or run.eval_key is None:
        raise ValueError(f"{run.run_dir} has no scorer pick to compare {checkpoint} with")
    smoothed = run.smoothed_pick
    mean = smoothed_eval(run.checkpoints).get(smoothed.step) if smoothed is not None else None
    if row.step == best.step:
        return DeployJudgement(
            run.run_dir,
            checkpoint,
            row.step,
            False,
            f"{checkpoint} is the scorer's pick",
            smoothed_pick=smoothed,
            smoothed_eval_loss=mean,
        )
    if run.eval_key not in run.eval_curves:
        raise ValueError(f"{run.run_dir} was audited without its curves (curves=False)")
    evidence = weigh(row, best, run.eval_curves, run.eval_key, config)
    return DeployJudgement(
        run.run_dir,
        checkpoint,
        row.step,
        evidence.flagged,
        sentence(evidence, row, best, config),
        evidence,
        smoothed_pick=smoothed,
        smoothed_eval_loss=mean,
    )
