"""The checkpoint score of SPEC section 3: a pure function of eval loss, train loss and trend."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import Config

_DEFAULT = Config()
# exp() overflows a float just above 709; the perplexity term is capped long before that.
_EXP_LIMIT = 709.0


@dataclass(frozen=True)
class Score:
    """A checkpoint's score (lower is better) and its weighted components.

    `total` is +inf and the components are None when the eval loss is missing or not finite.
    """

    total: float
    eval: float | None
    gap: float | None
    perplexity: float | None
    improvement: float | None

    @property
    def scorable(self) -> bool:
        """True when the checkpoint can be picked (its score is finite)."""
        return math.isfinite(self.total)


UNSCORABLE = Score(math.inf, None, None, None, None)


def is_finite(value: float | None) -> bool:
    """Return True for a real, finite number."""
    return value is not None and math.isfinite(value)


def perplexity(eval_loss: float) -> float:
    """Return exp(eval_loss), or +inf where it overflows."""
    return math.exp(eval_loss) if eval_loss < _EXP_LIMIT else math.inf


def gap_ratio(eval_loss: float, train_loss: float | None) -> float:
    """Return |train - eval| / eval; 0 when train loss is missing or eval loss <= 0."""
    if train_loss is None or not math.isfinite(train_loss) or eval_loss <= 0:
        return 0.0
    return abs(train_loss - eval_loss) / eval_loss


def overfit_ratio(eval_loss: float | None, train_loss: float | None) -> float:
    """Return max(0, eval - train) / eval, the one-sided gap the overfit flag uses (SPEC 4)."""
    if not is_finite(eval_loss) or not is_finite(train_loss):
        return 0.0
    assert eval_loss is not None and train_loss is not None
    if eval_loss <= 0:
        return 0.0
    return max(0.0, eval_loss - train_loss) / eval_loss


def score(
    eval_loss: float | None,
    train_loss: float | None = None,
    epochs_without_improvement: int = 0,
    config: Config | None = None,
) -> Score:
    """Return the Score of one evaluation, with the weights of `config` (SPEC defaults)."""
    cfg = config or _DEFAULT
    if not is_finite(eval_loss):
        return UNSCORABLE
    assert eval_loss is not None
    weights = cfg.weights
    eval_term = weights.eval * eval_loss
    gap_term = weights.gap * gap_ratio(eval_loss, train_loss)
    ppl_term = weights.perplexity * min(perplexity(eval_loss) / cfg.perplexity_cap, 1.0)
    bonus = cfg.improvement_bonus if epochs_without_improvement == 0 else 0.0
    return Score(eval_term + gap_term + ppl_term + bonus, eval_term, gap_term, ppl_term, bonus)
