"""A Trainer callback that scores each evaluation live and keeps the score-best checkpoint."""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as exc:  # transformers is an optional extra; the core never needs it
    raise ImportError(
        "auditor.integrations.transformers needs the 'transformers' extra: "
        "pip install 'checkpoint-auditor[transformers]'",
        name="transformers",
    ) from exc

from ..config import Config, config_from_mapping
from ..errors import ConfigError, ReportWriteError
from ..picks import audit_run
from ..report_file import write_atomic
from ..results import CheckpointResult, Pick, RunResult
from ..sources import Best, RunRecord
from ..sources import Checkpoint as DiskCheckpoint
from ..sources.hf_trainer import STATE_FILE, checkpoint_step

logger = logging.getLogger(__name__)

#: The file the callback keeps in the Trainer's output_dir.
SCORES_FILE = "checkpoint_scores.json"
SCORES_SCHEMA_VERSION = 1
_NOTHING_PENDING = object()


class ScoreBestCallback(TrainerCallback):
    """Score every evaluation with the SPEC's score and keep the score-best saved checkpoint.

    After each evaluation the newest eval loss is paired with the train loss exactly as the
    offline audit pairs it, scored with `config`, logged at INFO level and recorded in
    `output_dir/checkpoint_scores.json`. Candidates are the checkpoint folders on disk with a
    finite eval loss, so `ckpt-audit show OUTPUT_DIR` names the same pick after the run.

    With `load_score_best_at_end=True` (and the Trainer's `load_best_model_at_end=True`) the
    Trainer's best checkpoint is the score-best one: `save_total_limit` rotation keeps it and
    it is the model loaded at the end. Without it the callback only records.
    """

    def __init__(
        self, config: Config | None = None, *, load_score_best_at_end: bool = False
    ) -> None:
        self.config = config or Config()
        self.load_score_best_at_end = load_score_best_at_end
        #: The newest audit of the run, as written to checkpoint_scores.json.
        self.result: RunResult | None = None
        self._config_given = config is not None
        self._training = False
        self._resumed_at: list[int] = []
        # best_metric to put back once the Trainer has compared against a stand-in value.
        self._pending_best_metric: Any = _NOTHING_PENDING

    @property
    def scorer_pick(self) -> Pick | None:
        """Return the score-best checkpoint saved so far, or None."""
        return self.result.scorer_pick if self.result is not None else None

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Pick up checkpoint_scores.json when the run resumes; start it afresh otherwise."""
        self._training = True
        self._pending_best_metric = _NOTHING_PENDING
        if state.global_step > 0:
            self._resume(args, state)
        else:
            self._resumed_at = []
        if self.load_score_best_at_end and not args.load_best_model_at_end:
            logger.warning(
                "ScoreBestCallback(load_score_best_at_end=True) without the Trainer's "
                "load_best_model_at_end=True: the score-best checkpoint is kept through "
                "save_total_limit rotation but not loaded at the end"
            )

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        """Score the new evaluation; when steering, make its pick the Trainer's best."""
        if not self._training:
            # trainer.evaluate() after train() logs a step the saved states never hold.
            return
        step = state.global_step
        # With save_strategy="best" the Trainer saves when its best changes, which the
        # steering below decides: count this step as saved when it would be the pick.
        saving = bool(control.should_save) or (
            self.load_score_best_at_end and args.save_strategy == "best"
        )
        result = self._audit(args, state, about_to_save=step if saving else None)
        self._log_evaluation(result, step)
        if self.load_score_best_at_end and result.scorer_pick is not None:
            self._steer(args, state, result.scorer_pick)
        # The file names only folders already on disk; on_save records again after the save.
        self._record(args, state, self._audit(args, state) if saving else result)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Record the pick among the checkpoints on disk now that the save and rotation ran."""
        if not self._training:
            return
        if self._settle(state) and args.should_save:
            self._rewrite_checkpoint_state(args, state)
        result = self._audit(args, state)
        if self.load_score_best_at_end and result.scorer_pick is not None:
            self._point_trainer_at(args, state, result.scorer_pick)
        self._record(args, state, result)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        """Put the score-best checkpoint's best_metric back (after an evaluation without save)."""
        self._settle(state)

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Put the score-best checkpoint's best_metric back (after an evaluation without save)."""
        self._settle(state)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Record the final pick (save_total_limit=1 deletes folders after the last save)."""
        if not self._training:
            return
        self._settle(state)
        result = self._audit(args, state)
        self._record(args, state, result)
        for warning in _warnings(result):
            logger.warning("checkpoint scores: %s", warning)
        self._training = False

    def _audit(
        self, args: TrainingArguments, state: TrainerState, about_to_save: int | None = None
    ) -> RunResult:
        """Return the offline audit of the run as it stands, from the live history."""
        output_dir = str(args.output_dir)
        folders = {c.step: c for c in _checkpoints_on_disk(output_dir)}
        if about_to_save is not None:
            # The Trainer saves right after the evaluation hooks; count that checkpoint now.
            name = f"checkpoint-{about_to_save}"
            folders[about_to_save] = DiskCheckpoint(name, about_to_save, True)
        record = RunRecord(
            run_dir=output_dir,
            source="hf_trainer",
            history=list(state.log_history),
            checkpoints=tuple(folders[s] for s in sorted(folders)),
            best=Best(
                state.best_model_checkpoint,
                getattr(state, "best_global_step", None),
                None,
                state.best_metric,
            ),
            history_path=os.path.join(output_dir, STATE_FILE),
        )
        return audit_run(record, self.config)

    def _log_evaluation(self, result: RunResult, step: int) -> None:
        row = next((c for c in result.checkpoints if c.step == step and c.score), None)
        if row is None or row.score is None:
            return
        pick = result.scorer_pick.label if result.scorer_pick else "none yet"
        if not row.score.scorable:
            logger.info(
                "step %d: %s is not finite, the checkpoint cannot be scored; scorer pick: %s",
                step,
                result.eval_key,
                pick,
            )
            return
        logger.info(
            "step %d: score %.6f = eval %.6f + gap %.6f + perplexity %.6f + improvement %.6f "
            "(%s %.6g, train_loss %s, evaluations without improvement %s); scorer pick: %s",
            step,
            row.score.total,
            row.score.eval,
            row.score.gap,
            row.score.perplexity,
            row.score.improvement,
            result.eval_key,
            row.eval_loss,
            "missing" if row.train_loss is None else f"{row.train_loss:.6g}",
            row.epochs_without_improvement,
            pick,
        )

    def _steer(self, args: TrainingArguments, state: TrainerState, pick: Pick) -> None:
        """Set the Trainer's best to `pick` before it compares the new metric and saves.

        The Trainer replaces its best when the new metric beats `best_metric`, then protects
        `best_model_checkpoint` from rotation inside the save, before `on_save` runs. So the
        best fields are set here, and `best_metric` gets a value the new metric cannot beat
        until `_settle` puts the pick's own value back.
        """
        self._point_trainer_at(args, state, pick)
        key = _metric_key(args)
        if key is None:
            return
        step = state.global_step
        target = _logged_value(state.log_history, pick.step, key)
        current = _logged_value(state.log_history, step, key)
        if pick.step == step:
            # Let the Trainer take the new step as best itself, so save_strategy="best" saves it.
            state.best_metric = None
            self._pending_best_metric = target
        elif target is not None and (current is None or not _beats(args, current, target)):
            state.best_metric = target
            self._pending_best_metric = _NOTHING_PENDING
        else:
            state.best_metric = current
            self._pending_best_metric = target

    def _point_trainer_at(self, args: TrainingArguments, state: TrainerState, pick: Pick) -> None:
        state.best_model_checkpoint = os.path.join(str(args.output_dir), f"checkpoint-{pick.step}")
        if hasattr(state, "best_global_step"):  # transformers >= 4.50
            state.best_global_step = pick.step

    def _settle(self, state: TrainerState) -> bool:
        """Put the pick's own best_metric back; return True when that changed the state."""
        if self._pending_best_metric is _NOTHING_PENDING:
            return False
        target, self._pending_best_metric = self._pending_best_metric, _NOTHING_PENDING
        changed = not _same_number(state.best_metric, target)
        state.best_metric = target
        return changed

    def _rewrite_checkpoint_state(self, args: TrainingArguments, state: TrainerState) -> None:
        """Rewrite the new checkpoint's trainer_state.json, saved while best_metric stood in."""
        folder = os.path.join(str(args.output_dir), f"checkpoint-{state.global_step}")
        path = os.path.join(folder, STATE_FILE)
        if not os.path.isfile(path):
            return
        temporary = os.path.join(folder, f".{STATE_FILE}.tmp")
        state.save_to_json(temporary)
        os.replace(temporary, path)

    def _resume(self, args: TrainingArguments, state: TrainerState) -> None:
        path = os.path.join(str(args.output_dir), SCORES_FILE)
        previous = _read_scores(path)
        resumed_at: list[int] = []
        if previous is not None:
            resumed_at = [
                s
                for s in previous.get("resumed_at", [])
                if isinstance(s, int) and s < state.global_step
            ]
            self._adopt_config(previous.get("config"), path)
        self._resumed_at = [*resumed_at, state.global_step]
        logger.info(
            "resuming at step %d: %s",
            state.global_step,
            f"continuing {path}" if previous is not None else f"starting {path}",
        )

    def _adopt_config(self, stored: Any, path: str) -> None:
        try:
            previous = config_from_mapping(stored, source=path)
        except ConfigError as exc:
            logger.warning("ignoring the config stored in %s: %s", path, exc)
            return
        if not self._config_given:
            self.config = previous
        elif previous != self.config:
            logger.warning(
                "%s was scored with another config: every step is rescored with the given one",
                path,
            )

    def _record(self, args: TrainingArguments, state: TrainerState, result: RunResult) -> None:
        self.result = result
        if not state.is_world_process_zero:
            return
        path = os.path.join(str(args.output_dir), SCORES_FILE)
        payload = {
            "schema_version": SCORES_SCHEMA_VERSION,
            "global_step": state.global_step,
            "resumed_at": self._resumed_at,
            "load_score_best_at_end": self.load_score_best_at_end,
            "config": self.config.to_dict(),
            "eval_key": result.eval_key,
            "scorer_pick": result.scorer_pick.to_dict() if result.scorer_pick else None,
            "eval_only_pick": result.eval_only_pick.to_dict() if result.eval_only_pick else None,
            "verdict": result.verdict,
            "flagged": result.flagged,
            "steps": [_step_dict(c) for c in result.checkpoints if c.score is not None],
            "warnings": _warnings(result),
        }
        try:
            os.makedirs(str(args.output_dir), exist_ok=True)
            write_atomic(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
        except (OSError, ReportWriteError) as exc:
            logger.error("checkpoint scores not written: %s", exc)


def _checkpoints_on_disk(output_dir: str) -> list[DiskCheckpoint]:
    """Return the checkpoint-N folders of `output_dir`; one without its state file is mid-save."""
    try:
        names = os.listdir(output_dir)
    except OSError:
        return []
    found = []
    for name in names:
        step = checkpoint_step(name)
        path = os.path.join(output_dir, name)
        if step is not None and os.path.isdir(path):
            found.append(DiskCheckpoint(name, step, os.path.isfile(os.path.join(path, STATE_FILE))))
    return found


def _warnings(result: RunResult) -> list[str]:
    """Return the audit's warnings, less those about the Trainer's own best.

    Those describe fields this callback may be steering; the offline audit reports them
    from the saved files.
    """
    return [w for w in result.warnings if not w.startswith("the Trainer")]


def _step_dict(row: CheckpointResult) -> dict[str, Any]:
    data = row.to_dict()
    data.pop("candidate", None)
    return data


def _metric_key(args: TrainingArguments) -> str | None:
    name = args.metric_for_best_model
    if not name:
        return None
    return name if name.startswith("eval_") else f"eval_{name}"


def _logged_value(log_history: list[dict[str, Any]], step: int, key: str) -> float | None:
    """Return the newest logged value of `key` at `step` (a resumed step: the later one wins)."""
    for entry in reversed(log_history):
        if isinstance(entry, dict) and entry.get("step") == step and key in entry:
            value = entry[key]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            return None
    return None


def _beats(args: TrainingArguments, value: float, best: float) -> bool:
    """Return True when the Trainer would take `value` as a new best over `best`."""
    return value > best if args.greater_is_better else value < best


def _same_number(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _read_scores(path: str) -> dict[str, Any] | None:
    """Return the stored checkpoint_scores.json, or None (with a warning when unreadable)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s (%s): starting it afresh", path, exc)
        return None
    if not isinstance(data, dict) or data.get("schema_version") != SCORES_SCHEMA_VERSION:
        logger.warning("%s is not a schema_version 1 score file: starting it afresh", path)
        return None
    return data
