"""Pairing eval losses with train losses (SPEC section 2) on real log histories."""

from __future__ import annotations

import json
import math

from auditor.pair import choose_eval_key, pair_history
from conftest import EXAMPLES


def history(run: str) -> list[dict]:
    return json.loads((EXAMPLES / run / "trainer_state.json").read_text())["log_history"]


def test_pairs_each_eval_with_the_last_train_log_at_or_before_it():
    log = history("lm_eval_misaligned")  # evals every 25 steps, train logs every 5
    paired = pair_history(log)
    first = paired.evaluations[0]
    assert first.step == 25
    expected = [e["loss"] for e in log if "loss" in e and e["step"] <= 25][-1]
    assert first.train_loss == expected
    assert [e.step for e in paired.evaluations] == [25, 50, 75, 100, 125, 150, 175, 200]


def test_closing_summary_is_not_a_training_log():
    log = history("lm_healthy")
    summary = log[-1]
    assert "train_loss" in summary and "loss" not in summary
    paired = pair_history(log)
    last = paired.evaluations[-1]
    assert last.train_loss != summary["train_loss"]


def test_epochs_without_improvement_counts_over_all_evaluations():
    log = history("lm_overfit_rotated")  # 20 evals in the history, 2 folders left
    paired = pair_history(log)
    losses = [e.eval_loss for e in paired.evaluations]
    best, k_expected = math.inf, []
    for loss in losses:
        if loss < best:
            best = loss
            k_expected.append(0)
        else:
            k_expected.append(k_expected[-1] + 1)
    assert [e.epochs_without_improvement for e in paired.evaluations] == k_expected
    assert paired.evaluations[-1].epochs_without_improvement > 0


def test_later_entry_wins_when_a_step_is_logged_twice():
    log = history("lm_healthy")
    eval_entry = next(e for e in log if "eval_loss" in e)
    train_entry = next(e for e in log if "loss" in e and e["step"] == eval_entry["step"])
    # A resumed run logs the step again, after the first attempt's entries.
    log = [*log, dict(train_entry, loss=0.123), dict(eval_entry, eval_loss=9.5)]
    paired = pair_history(log)
    again = next(e for e in paired.evaluations if e.step == eval_entry["step"])
    assert again.eval_loss == 9.5
    assert again.train_loss == 0.123
    assert len(paired.evaluations) == len({e["step"] for e in log if "eval_loss" in e})


def test_out_of_order_entries_are_paired_by_step():
    log = history("lm_healthy")
    paired_sorted = pair_history(log)
    paired_reversed = pair_history(list(reversed(log)))
    assert [e.step for e in paired_reversed.evaluations] == [
        e.step for e in paired_sorted.evaluations
    ]


def test_nan_losses_from_a_diverged_run():
    log = history("lm_diverged")
    paired = pair_history(log)
    nan_evals = [e for e in paired.evaluations if math.isnan(e.eval_loss)]
    assert nan_evals
    assert all(e.train_loss is None for e in nan_evals)  # NaN train loss counts as missing
    assert any("NaN or infinite" in w for w in paired.warnings)


def test_eval_key_resolution():
    assert choose_eval_key(["eval_loss", "eval_ood_loss"], None)[0] == "eval_loss"
    assert choose_eval_key(["eval_ood_loss"], None)[0] == "eval_ood_loss"
    key, warning = choose_eval_key(["eval_a_loss", "eval_b_loss"], None)
    assert key is None and warning and "eval_a_loss" in warning and "--eval-key" in warning
    key, warning = choose_eval_key(["eval_loss"], "eval_bleu_loss")
    assert key is None and warning and "eval_loss" in warning


def test_multi_eval_sets_need_a_named_key():
    log = history("lm_multi_eval")
    assert pair_history(log).eval_key is None
    named = pair_history(log, eval_key="eval_ood_loss")
    assert named.eval_key == "eval_ood_loss"
    assert len(named.evaluations) == 15


def test_mean_pairing_averages_the_train_losses_since_the_previous_evaluation():
    log = history("lm_healthy")
    paired = pair_history(log, train_loss="mean")
    second = paired.evaluations[1]
    window = [
        e["loss"]
        for e in log
        if "loss" in e and paired.evaluations[0].step < e["step"] <= second.step
    ]
    assert second.train_loss == sum(window) / len(window)


def test_preference_losses_are_recognised():
    log = history("trl_sft")
    assert not pair_history(log).preference_loss
    dpo = [dict(e, **{"rewards/chosen": 0.1}) if "loss" in e else e for e in log]
    paired = pair_history(dpo)
    assert paired.preference_loss
    assert any("perplexity term means nothing" in w for w in paired.warnings)
