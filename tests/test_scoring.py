"""The score of SPEC section 3, its worked examples and its edge cases."""

from __future__ import annotations

import math

import pytest

import auditor
from auditor.config import Config, Weights
from auditor.scoring import gap_ratio, overfit_ratio, perplexity

# The SPEC's worked examples: (eval_loss, train_loss, k, score).
WORKED = [
    (0.5, 0.45, 0, 0.188244),
    (0.4, 0.1, 1, 0.432459),
    (0.6, 0.55, 0, 0.234111),
    (0.6, 0.55, 1, 0.334111),
    (0.5, None, 0, 0.158244),
]


@pytest.mark.parametrize(("eval_loss", "train_loss", "k", "expected"), WORKED)
def test_worked_examples_to_six_decimals(eval_loss, train_loss, k, expected):
    assert round(auditor.score(eval_loss, train_loss, k).total, 6) == expected


def test_first_worked_example_components():
    s = auditor.score(0.5, 0.45, 0)
    assert s.eval == pytest.approx(0.25)
    assert s.gap == pytest.approx(0.03)
    assert s.perplexity == pytest.approx(0.008244, abs=1e-6)
    assert s.improvement == -0.1
    assert s.total == pytest.approx(s.eval + s.gap + s.perplexity + s.improvement)


@pytest.mark.parametrize("eval_loss", [None, math.nan, math.inf, -math.inf])
def test_missing_or_non_finite_eval_loss_is_unscorable(eval_loss):
    s = auditor.score(eval_loss, 0.3, 0)
    assert s.total == math.inf
    assert not s.scorable
    assert s.eval is None and s.gap is None


def test_huge_eval_loss_caps_perplexity_without_overflow():
    s = auditor.score(5000.0, 1.0, 3)
    assert s.perplexity == pytest.approx(0.1)
    assert perplexity(5000.0) == math.inf
    assert math.isfinite(s.total)


def test_non_finite_train_loss_counts_as_missing():
    assert auditor.score(0.5, math.nan, 0).total == auditor.score(0.5, None, 0).total


def test_gap_is_zero_when_eval_loss_is_not_positive():
    assert gap_ratio(0.0, 0.3) == 0.0
    assert gap_ratio(-0.2, 0.3) == 0.0
    assert auditor.score(-0.2, 0.3, 0).gap == 0.0


def test_overfit_is_one_sided():
    assert overfit_ratio(0.4, 0.1) == pytest.approx(0.75)
    assert overfit_ratio(0.4, 0.6) == 0.0  # train above eval is not overfitting
    assert gap_ratio(0.4, 0.6) == pytest.approx(0.5)  # but the score's gap is symmetric
    assert overfit_ratio(0.4, None) == 0.0


def test_config_weights_change_the_score():
    config = Config(weights=Weights(eval=1.0, gap=0.0, perplexity=0.0), improvement_bonus=0.0)
    assert auditor.score(0.5, 0.1, 0, config).total == pytest.approx(0.5)
    capped = Config(perplexity_cap=1.0)
    assert auditor.score(0.5, 0.5, 1, capped).perplexity == pytest.approx(0.1)
