"""Loss curves of a run, shaped for a chart: thinned, overfitting spans, a y range that survives
a diverged loss."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .results import RunResult

#: Losses larger than this (in size) are left off a chart, with a note: a chart's arithmetic
#: (matplotlib's transforms, the page's y range) overflows near the largest float, and such a
#: loss diverged long before.
MAX_DRAWN_LOSS = 1e100


def drawn(value: float) -> bool:
    """Return True when a loss can be drawn: finite and no larger than MAX_DRAWN_LOSS."""
    return math.isfinite(value) and abs(value) <= MAX_DRAWN_LOSS


def too_large(run: RunResult) -> list[float]:
    """Return the run's finite losses (train and eval) too large to be drawn."""
    values = [v for _, v in run.train_losses] + [
        c.eval_loss for c in run.checkpoints if c.eval_loss is not None
    ]
    return [v for v in values if math.isfinite(v) and not drawn(v)]


def overfit_spans(run: RunResult, min_rise: float = 0.01) -> list[tuple[int, int]]:
    """Return the step ranges over which eval loss keeps rising (by `min_rise` of its value or
    more) while train loss ends lower than it started: the signature of overfitting.

    Train loss is judged over the whole range, not step by step, because it is logged far more
    often than evaluations and its noise would break one range into many.
    """
    points = [
        (c.step, c.eval_loss, c.train_loss)
        for c in run.checkpoints
        if c.eval_loss is not None
        and c.train_loss is not None
        and math.isfinite(c.eval_loss)
        and math.isfinite(c.train_loss)
    ]
    spans: list[tuple[int, int]] = []
    start = 0
    for index in range(1, len(points) + 1):
        if index < len(points) and points[index][1] > points[index - 1][1]:
            continue
        first, last = points[start], points[index - 1]
        if last[1] - first[1] >= min_rise * abs(first[1]) and last[2] < first[2] and last != first:
            spans.append((first[0], last[0]))
        start = index
    return spans


def thin(points: Sequence[tuple[int, float]], limit: int) -> list[tuple[int, float]]:
    """Return at most about `limit` points of a curve: the lowest and highest of each bucket, in
    step order, so spikes and the trend both survive."""
    if len(points) <= limit:
        return list(points)
    buckets = max(1, limit // 2)
    size = math.ceil(len(points) / buckets)
    values = [v for _, v in points]
    kept: list[tuple[int, float]] = []
    for start in range(0, len(points), size):
        # min and max of plain floats run in C; a key function per point would not.
        chunk = values[start : start + size]
        low, high = chunk.index(min(chunk)), chunk.index(max(chunk))
        kept.extend(points[start + i] for i in sorted({low, high}))
    return kept


def y_range(run: RunResult, values: Sequence[float]) -> tuple[float, float, float | None]:
    """Return (low, high) for a chart's y axis over `values`, and the top value left off the
    chart (None when nothing is).

    A run's losses start high and fall, so twice its opening losses (or its median evaluation,
    whichever is larger) bounds every curve that did not blow up: a diverged loss (1e11) must
    not flatten the rest.
    """
    if not values:
        return 0.0, 1.0, None
    evals = [c.eval_loss for c in run.checkpoints if c.eval_loss is not None]
    evals = [v for v in evals if math.isfinite(v)]
    opening = [v for _, v in run.train_losses[:1] if math.isfinite(v)] + evals[:1]
    if evals:
        opening.append(sorted(evals)[len(evals) // 2])
    top = max(values)
    low = min(0.0, min(values))
    limit = 2.0 * max(opening, default=top)
    headroom = 0.22
    if top > limit > 0:
        return low, limit * (1 + headroom), top
    return low, top * (1 + headroom) if top > 0 else 1.0, None
