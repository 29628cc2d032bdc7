"""The audit's result objects: plain frozen dataclasses, with their JSON-ready form."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .config import Config
from .scoring import Score

if TYPE_CHECKING:
    import pandas as pd

    from .sweep import SweepBest

SCHEMA_VERSION = 2
VERDICTS = ("agree", "overfit", "differs", "no_candidates", "error")
#: The order of verdicts when findings come first (reports, `scan --sort verdict`).
VERDICT_ORDER = ("overfit", "error", "differs", "no_candidates", "agree")


def verdict_rank(verdict: str) -> int:
    """Return a verdict's place in VERDICT_ORDER (findings first; unknown ones last)."""
    return VERDICT_ORDER.index(verdict) if verdict in VERDICT_ORDER else len(VERDICT_ORDER)


@dataclass(frozen=True)
class Pick:
    """A checkpoint chosen by some rule; `checkpoint` is None when no folder holds that step."""

    checkpoint: str | None
    step: int

    def to_dict(self) -> dict[str, Any]:
        """Return {"checkpoint", "step"}."""
        return {"checkpoint": self.checkpoint, "step": self.step}

    @property
    def label(self) -> str:
        """Return the folder name, or "step N" when there is no folder."""
        return self.checkpoint or f"step {self.step}"


@dataclass(frozen=True)
class CheckpointResult:
    """One evaluated step or checkpoint folder of a run, with its score and components."""

    step: int
    checkpoint: str | None
    on_disk: bool
    candidate: bool
    eval_loss: float | None
    train_loss: float | None
    gap: float | None
    overfit: float | None
    perplexity: float | None
    epochs_without_improvement: int | None
    score: Score | None
    is_best: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Return the SPEC section 6 form (non-finite numbers as None)."""
        components = None
        if self.score is not None and self.score.scorable:
            components = {
                "eval": self.score.eval,
                "gap": self.score.gap,
                "perplexity": self.score.perplexity,
                "improvement": self.score.improvement,
            }
        return {
            "step": self.step,
            "checkpoint": self.checkpoint,
            "on_disk": self.on_disk,
            "candidate": self.candidate,
            "eval_loss": finite_or_none(self.eval_loss),
            "train_loss": finite_or_none(self.train_loss),
            "gap": finite_or_none(self.gap),
            "overfit": finite_or_none(self.overfit),
            "perplexity": finite_or_none(self.perplexity),
            "epochs_without_improvement": self.epochs_without_improvement,
            "score": finite_or_none(self.score.total) if self.score is not None else None,
            "is_best": self.is_best,
            "components": components,
        }


@dataclass(frozen=True)
class MetricEvidence:
    """A task metric logged at both checkpoints: which one it rates better, beyond its noise."""

    key: str
    direction: str
    eval_only: float
    scorer: float
    noise: float | None
    #: "eval_only" (the checkpoint judged), "scorer" (the scorer's pick) or "neither".
    favours: str

    def to_dict(self) -> dict[str, Any]:
        """Return the SPEC section 6 form."""
        return {
            "key": self.key,
            "direction": self.direction,
            "eval_only": self.eval_only,
            "scorer": self.scorer,
            "noise": self.noise,
            "favours": self.favours,
        }


@dataclass(frozen=True)
class Evidence:
    """What the held-out data say about shipping one checkpoint instead of the scorer's pick."""

    #: Robust noise of the eval-loss curve; None with fewer than five evaluations.
    eval_noise: float | None
    #: eval_loss(scorer's pick) - eval_loss(judged checkpoint).
    eval_delta: float
    #: Evaluation samples at the judged checkpoint (runtime x samples per second), if logged.
    eval_samples: int | None
    metrics: tuple[MetricEvidence, ...]
    #: "flagged", or why not, in the order the rule tests it: "gap_below_threshold",
    #: "eval_advantage_beyond_noise", "contradicted_by_metric".
    outcome: str

    @property
    def flagged(self) -> bool:
        """True when the judged checkpoint is an overfit pick."""
        return self.outcome == "flagged"

    @property
    def contradicting_metric(self) -> MetricEvidence | None:
        """Return the first task metric that rates the judged checkpoint better, if any."""
        return next((m for m in self.metrics if m.favours == "eval_only"), None)

    def to_dict(self) -> dict[str, Any]:
        """Return the SPEC section 6 `evidence` object."""
        return {
            "eval_noise": self.eval_noise,
            "eval_delta": self.eval_delta,
            "eval_samples": self.eval_samples,
            "metrics": [m.to_dict() for m in self.metrics],
            "outcome": self.outcome,
        }


@dataclass(frozen=True)
class RunResult:
    """The audit of one run: its picks, the overfit flag, the verdict and every checkpoint."""

    run_dir: str
    verdict: str
    flagged: bool = False
    error: str | None = None
    eval_key: str | None = None
    eval_only_pick: Pick | None = None
    scorer_pick: Pick | None = None
    #: The candidate with the lowest centred 3-point mean eval loss; None below
    #: SMOOTHED_FROM evaluations (docs/selection.md).
    smoothed_pick: Pick | None = None
    trainer_best: Pick | None = None
    #: The log key whose value the Trainer recorded as best_metric (e.g. eval_accuracy).
    trainer_metric: str | None = None
    history_only: bool = False
    #: The held-out evidence on the eval-only pick, when the picks differ.
    evidence: Evidence | None = None
    #: The same judgement of the Trainer's best checkpoint, when it is neither pick.
    trainer_best_evidence: Evidence | None = None
    checkpoints: tuple[CheckpointResult, ...] = ()
    warnings: tuple[str, ...] = ()
    #: Every logged (step, train loss) of the history, for curves.
    train_losses: tuple[tuple[int, float], ...] = field(default=(), repr=False)
    #: Every eval-loss key the history logs (what --eval-key may name).
    eval_keys: tuple[str, ...] = field(default=(), repr=False)
    #: Every eval_* key's curve (step -> finite value), to judge another checkpoint later
    #: (`check --deploy`); empty when the audit kept no curves.
    eval_curves: dict[str, dict[int, float]] = field(default_factory=dict, repr=False)

    #: Which training of `run_dir` this is (1: the oldest) and how many it holds; None when
    #: the run could not be read.
    training: int | None = None
    trainings: int | None = None

    @property
    def label(self) -> str:
        """Return the run folder, with "(training k/n)" when it holds several trainings."""
        if self.trainings and self.trainings > 1:
            return f"{self.run_dir} (training {self.training}/{self.trainings})"
        return self.run_dir

    @property
    def trainer_best_flagged(self) -> bool:
        """True when the checkpoint the Trainer recorded as best is an overfit pick."""
        return self.trainer_best_evidence is not None and self.trainer_best_evidence.flagged

    def row(self, pick: Pick | None) -> CheckpointResult | None:
        """Return the checkpoint row of `pick`, or None."""
        if pick is None:
            return None
        return next((c for c in self.checkpoints if c.step == pick.step), None)

    @property
    def evaluations(self) -> int:
        """Return the number of evaluated steps in the history."""
        return sum(1 for c in self.checkpoints if c.eval_loss is not None)

    @property
    def checkpoints_on_disk(self) -> int:
        """Return the number of checkpoint folders on disk."""
        return sum(1 for c in self.checkpoints if c.on_disk)

    def to_dict(self) -> dict[str, Any]:
        """Return the SPEC section 6 form of this run."""
        return {
            "run_dir": self.run_dir,
            "training": self.training,
            "trainings": self.trainings,
            "error": self.error,
            "flagged": self.flagged,
            "verdict": self.verdict,
            "eval_key": self.eval_key,
            "eval_only_pick": self.eval_only_pick.to_dict() if self.eval_only_pick else None,
            "scorer_pick": self.scorer_pick.to_dict() if self.scorer_pick else None,
            "smoothed_pick": self.smoothed_pick.to_dict() if self.smoothed_pick else None,
            "trainer_best": self.trainer_best.to_dict() if self.trainer_best else None,
            "trainer_metric": self.trainer_metric,
            "history_only": self.history_only,
            "checkpoints": [c.to_dict() for c in self.checkpoints],
            "evidence": self.evidence.to_dict() if self.evidence else None,
            "trainer_best_evidence": (
                self.trainer_best_evidence.to_dict() if self.trainer_best_evidence else None
            ),
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class DeployJudgement:
    """The gate's judgement of the checkpoint a user intends to ship (`check --deploy`)."""

    run_dir: str
    checkpoint: str
    step: int
    flagged: bool
    reason: str
    #: The held-out evidence on shipping this checkpoint instead of the scorer's pick.
    evidence: Evidence | None = None
    #: The run's smoothed pick and its 3-point mean eval loss, for the advice when the
    #: checkpoint shipped is another one.
    smoothed_pick: Pick | None = None
    smoothed_eval_loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "run_dir": self.run_dir,
            "checkpoint": self.checkpoint,
            "step": self.step,
            "flagged": self.flagged,
            "reason": self.reason,
            "evidence": self.evidence.to_dict() if self.evidence else None,
        }


@dataclass(frozen=True)
class AuditResult:
    """The audit of every run found below the given paths, with the config it used."""

    runs: tuple[RunResult, ...]
    config: Config = field(default_factory=Config)
    deploy: DeployJudgement | None = None
    #: The best checkpoint of each group of comparable runs; computed from `runs` when not
    #: given, and kept when a report shows only some runs (`scan --top`).
    sweep_best: tuple[SweepBest, ...] | None = None

    def __post_init__(self) -> None:
        if self.sweep_best is None:
            from .sweep import sweep_best

            object.__setattr__(self, "sweep_best", sweep_best(self.runs))

    @property
    def flagged(self) -> tuple[RunResult, ...]:
        """Return the flagged runs."""
        return tuple(r for r in self.runs if r.flagged)

    @property
    def errors(self) -> tuple[RunResult, ...]:
        """Return the runs that could not be read."""
        return tuple(r for r in self.runs if r.error is not None)

    def to_dict(self) -> dict[str, Any]:
        """Return the SPEC section 6 report (schema_version 2)."""
        data: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "runs": [r.to_dict() for r in self.runs],
            "config": self.config.to_dict(),
            "sweep_best": [group.to_dict() for group in self.sweep_best or ()],
        }
        if self.deploy is not None:
            data["deploy"] = self.deploy.to_dict()
        return data

    def to_frame(self, level: str = "runs") -> pd.DataFrame:
        """Return a pandas DataFrame of runs, or of every checkpoint with level="checkpoints"."""
        from .frame import to_frame

        return to_frame(self, level)


def finite_or_none(value: float | None) -> float | None:
    """Return `value` when it is a finite number, else None (strict JSON has no NaN)."""
    if value is None or not math.isfinite(value):
        return None
    return value
