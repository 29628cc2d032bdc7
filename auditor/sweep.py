"""Across a sweep: the best checkpoint of each group of comparable runs, and the order of runs in
a report."""

from __future__ import annotations

import math
import os
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

    def label_below(self, parent: str) -> str:
        """Return the label relative to the group's `parent` folder."""
        label = self.label
        prefix = parent.rstrip("/") + "/"
        return label[len(prefix) :] if parent != "." and label.startswith(prefix) else label

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
    """The best candidate checkpoint of one group of comparable runs (the same parent folder,
    the same eval key), by score and by eval loss alone."""

    parent: str
    eval_key: str
    runs: int
    by_score: SweepPick
    by_eval_loss: SweepPick

    def to_dict(self) -> dict[str, Any]:
        """Return {"parent", "eval_key", "runs", "by_score", "by_eval_loss"}."""
        return {
            "parent": self.parent,
            "eval_key": self.eval_key,
            "runs": self.runs,
            "by_score": self.by_score.to_dict(),
            "by_eval_loss": self.by_eval_loss.to_dict(),
        }


def sweep_best(runs: Iterable[RunResult]) -> tuple[SweepBest, ...]:
    """Return the best checkpoints of each group of comparable runs, in the order the groups
    are first met; a group is two runs or more below one folder audited on one eval key.

    Only each run's candidates count (the checkpoints its own picks choose from); ties go to
    the run listed first, then the earlier step. A classifier's loss is never ranked against a
    language model's in another folder, nor an eval set's loss against another's.
    """
    tracker = SweepBestTracker()
    for run in runs:
        tracker.add(run)
    return tracker.best()


def run_group(run: RunResult) -> tuple[str, str] | None:
    """Return the group a run is compared in, (parent folder, eval key), or None when it has no
    eval key."""
    if run.eval_key is None:
        return None
    # A bare trainer_state.json stands for the folder it is in.
    folder = os.path.dirname(run.run_dir) if run.run_dir.endswith(".json") else run.run_dir
    return os.path.dirname(folder.rstrip("/")) or ".", run.eval_key


class SweepBestTracker:
    """The best checkpoints of each group of comparable runs so far, fed one run at a time (a
    streamed report keeps no run once it is written)."""

    def __init__(self) -> None:
        self._runs = 0
        self._groups: dict[tuple[str, str], _GroupBest] = {}

    def add(self, run: RunResult) -> None:
        """Take the next run's candidates into account."""
        index = self._runs
        self._runs += 1
        group = run_group(run)
        if group is None:
            return
        best = self._groups.setdefault(group, _GroupBest())
        best.runs += 1
        for row in run.checkpoints:
            if not (row.candidate and row.score is not None and row.score.scorable):
                continue
            assert row.eval_loss is not None
            by_score = (row.score.total, index, row.step)
            by_eval = (row.eval_loss, index, row.step)
            wins_score = best.by_score is None or by_score < best.by_score[0]
            wins_eval = best.by_eval is None or by_eval < best.by_eval[0]
            # Most checkpoints of a large sweep beat neither: no pick is made for them.
            if not (wins_score or wins_eval):
                continue
            pick = SweepPick(run.run_dir, row.checkpoint, row.step, row.eval_loss, row.score.total)
            if wins_score:
                best.by_score = (by_score, pick)
            if wins_eval:
                best.by_eval = (by_eval, pick)

    def best(self) -> tuple[SweepBest, ...]:
        """Return the best checkpoints of each group of two runs or more that has a candidate."""
        return tuple(
            SweepBest(parent, key, group.runs, group.by_score[1], group.by_eval[1])
            for (parent, key), group in self._groups.items()
            if group.runs > 1 and group.by_score is not None and group.by_eval is not None
        )


class _GroupBest:
    """One group's best so far: (sort key, pick) by score and by eval loss."""

    def __init__(self) -> None:
        self.runs = 0
        self.by_score: tuple[tuple[float, int, int], SweepPick] | None = None
        self.by_eval: tuple[tuple[float, int, int], SweepPick] | None = None


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
