"""Across a sweep: the best checkpoint of all runs, and the order of runs in a report."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .choices import SORT_KEYS
from .results import CheckpointResult, RunResult, finite_or_none, verdict_rank


@dataclass(frozen=True)
class SweepPick:
    """One checkpoint of one run: the sweep's best by some rule."""

    run_dir: str
    checkpoint: str | None
    step: int
    eval_loss: float
    score: float

    @property
    def label(self) -> str:
        """Return "run_dir/checkpoint-N" (or "run_dir step N" without a folder)."""
        if self.checkpoint is None:
            return f"{self.run_dir} step {self.step}"
        return f"{self.run_dir}/{self.checkpoint}"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (non-finite numbers as None)."""
        return {
            "run_dir": self.run_dir,
            "checkpoint": self.checkpoint,
            "step": self.step,
            "eval_loss": finite_or_none(self.eval_loss),
            "score": finite_or_none(self.score),
        }


@dataclass(frozen=True)
class SweepBest:
    """The best candidate checkpoint across every run, by score and by eval loss alone."""

    by_score: SweepPick
    by_eval_loss: SweepPick

    def to_dict(self) -> dict[str, Any]:
        """Return {"by_score": ..., "by_eval_loss": ...}."""
        return {"by_score": self.by_score.to_dict(), "by_eval_loss": self.by_eval_loss.to_dict()}


def sweep_best(runs: Iterable[RunResult]) -> SweepBest | None:
    """Return the sweep's best checkpoints, or None when no run has a scorable candidate.

    Only each run's candidates count (the checkpoints its own picks choose from); ties go to
    the run listed first, then the earlier step. Scores of runs audited on different eval keys
    are compared as they are.
    """
    tracker = SweepBestTracker()
    for run in runs:
        tracker.add(run)
    return tracker.best()


class SweepBestTracker:
    """The sweep's best checkpoints so far, fed one run at a time (a streamed report keeps
    no run once it is written)."""

    def __init__(self) -> None:
        self._runs = 0
        self._by_score: tuple[tuple[float, int, int], SweepPick] | None = None
        self._by_eval: tuple[tuple[float, int, int], SweepPick] | None = None

    def add(self, run: RunResult) -> None:
        """Take the next run's candidates into account."""
        index = self._runs
        self._runs += 1
        for row in run.checkpoints:
            if not (row.candidate and row.score is not None and row.score.scorable):
                continue
            assert row.eval_loss is not None
            pick = SweepPick(run.run_dir, row.checkpoint, row.step, row.eval_loss, row.score.total)
            by_score = (row.score.total, index, row.step)
            if self._by_score is None or by_score < self._by_score[0]:
                self._by_score = (by_score, pick)
            by_eval = (row.eval_loss, index, row.step)
            if self._by_eval is None or by_eval < self._by_eval[0]:
                self._by_eval = (by_eval, pick)

    def best(self) -> SweepBest | None:
        """Return the best checkpoints of the runs added, or None when none can be picked."""
        if self._by_score is None or self._by_eval is None:
            return None
        return SweepBest(by_score=self._by_score[1], by_eval_loss=self._by_eval[1])


def order_runs(
    runs: Iterable[RunResult], sort: str | None = None, top: int | None = None
) -> tuple[RunResult, ...]:
    """Return `runs` ordered by `sort` (one of SORT_KEYS; None keeps them) and cut to `top`.

    Runs without the sorted value (errors, no candidates) go last, in their found order.
    """
    ordered = list(runs)
    if sort is not None:
        if sort not in SORT_KEYS:
            raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}, not {sort!r}")
        ordered.sort(key=_SORTERS[sort])
    return tuple(ordered if top is None else ordered[:top])


def _missing_last(value: float | None) -> tuple[int, float]:
    if value is None or math.isnan(value):
        return (1, 0.0)
    return (0, value)


def _scorer_row(run: RunResult) -> CheckpointResult | None:
    return run.row(run.scorer_pick)


def _eval_only_row(run: RunResult) -> CheckpointResult | None:
    return run.row(run.eval_only_pick)


def _by_score(run: RunResult) -> tuple[int, float]:
    row = _scorer_row(run)
    return _missing_last(row.score.total if row is not None and row.score is not None else None)


def _by_eval_loss(run: RunResult) -> tuple[int, float]:
    row = _eval_only_row(run)
    return _missing_last(row.eval_loss if row is not None else None)


def _by_gap(run: RunResult) -> tuple[int, float]:
    row = _eval_only_row(run)
    missing, gap = _missing_last(row.gap if row is not None else None)
    return (missing, -gap)


_SORTERS: dict[str, Callable[[RunResult], Any]] = {
    "run": lambda run: run.run_dir,
    "verdict": lambda run: verdict_rank(run.verdict),
    "score": _by_score,
    "eval_loss": _by_eval_loss,
    "gap": _by_gap,
}
