"""Across a sweep: the best checkpoint of each group of comparable runs, and the order of runs."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest

import auditor
from auditor.sweep import SORT_KEYS, SweepBest, order_runs, sweep_best
from conftest import EXAMPLES, FIXTURES, drop_evaluations


@pytest.fixture(scope="module")
def never_evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("never") / "never_evaluated"
    shutil.copytree(EXAMPLES / "lm_healthy", run)
    return drop_evaluations(run)


@pytest.fixture(scope="module")
def result(never_evaluated: Path) -> auditor.AuditResult:
    return auditor.audit(
        EXAMPLES, FIXTURES / "sweep", FIXTURES / "real_overfit_flagged", never_evaluated
    )


def brute_force_best(result: auditor.AuditResult, column: str, group: SweepBest) -> tuple[str, int]:
    frame = result.to_frame("checkpoints")
    keys = {run.run_dir: run.eval_key for run in result.runs}
    candidates = frame[
        frame["candidate"]
        & frame["score"].map(math.isfinite)
        & frame["run_dir"].map(lambda d: os.path.dirname(d) == group.parent)
        & frame["run_dir"].map(lambda d: keys[d] == group.eval_key)
    ]
    row = candidates.sort_values(column, kind="stable").iloc[0]
    return row["run_dir"], int(row["step"])


def test_each_folder_of_runs_has_its_own_best_by_score_and_by_eval_loss(result):
    groups = {group.parent: group for group in result.sweep_best}
    assert set(groups) == {str(EXAMPLES), str(FIXTURES / "sweep")}
    for parent, best in groups.items():
        assert (best.by_score.run_dir, best.by_score.step) == brute_force_best(
            result, "score", best
        )
        assert (best.by_eval_loss.run_dir, best.by_eval_loss.step) == brute_force_best(
            result, "eval_loss", best
        )
        below = [
            r
            for r in result.runs
            if os.path.dirname(r.run_dir) == parent and r.eval_key == best.eval_key
        ]
        assert best.runs == len(below)


def test_runs_on_another_eval_key_form_another_group(copy_run, tmp_path):
    copy_run("examples/lm_multi_eval", "sweep/a")
    copy_run("examples/lm_multi_eval", "sweep/b")
    copy_run("sweep/run-0001", "sweep/c")
    copy_run("sweep/run-0002", "sweep/d")
    result = auditor.audit(tmp_path / "sweep")
    keyed = auditor.audit(
        tmp_path / "sweep" / "a",
        tmp_path / "sweep" / "b",
        config=auditor.Config(eval_key="eval_ood_loss"),
    )
    # lm_multi_eval is audited on the loss its Trainer selected on: a sweep of its own.
    assert [(g.eval_key, g.runs) for g in result.sweep_best] == [
        ("eval_in_domain_loss", 2),
        ("eval_loss", 2),
    ]
    assert [(g.eval_key, g.runs) for g in keyed.sweep_best] == [("eval_ood_loss", 2)]
    # One run alone in its folder is no sweep.
    assert auditor.audit(tmp_path / "sweep" / "c").sweep_best == ()


def test_the_two_rules_can_name_different_checkpoints():
    sweep = FIXTURES / "sweep"
    (best,) = auditor.audit(sweep / "run-0000", sweep / "run-0003").sweep_best
    # run-0000's overfit pick has the lowest eval loss; the score prefers the step before it.
    assert best.by_eval_loss.label.endswith("run-0000/checkpoint-500")
    assert best.by_score.label.endswith("run-0000/checkpoint-400")
    assert best.by_score.label_below(best.parent) == "run-0000/checkpoint-400"


def test_the_small_sweep_winner(result):
    (best,) = auditor.audit(FIXTURES / "sweep").sweep_best
    assert best.by_score.label.endswith("sweep/run-0001/checkpoint-1000")
    assert best.by_score.score == pytest.approx(0.151981, abs=1e-6)
    assert best.by_eval_loss == best.by_score


def test_json_has_a_top_level_sweep_best_per_group(result):
    report = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert len(report["sweep_best"]) == len(result.sweep_best) == 2
    for group in report["sweep_best"]:
        assert set(group) == {"parent", "eval_key", "runs", "by_score", "by_eval_loss"}
        assert set(group["by_score"]) == {"run_dir", "checkpoint", "step", "eval_loss", "score"}
    assert report["schema_version"] == 2 and len(report["runs"]) == len(result.runs)


def test_no_candidate_anywhere_means_no_sweep_best(never_evaluated):
    result = auditor.audit(never_evaluated)
    assert result.sweep_best == ()
    assert result.to_dict()["sweep_best"] == []
    assert sweep_best(()) == ()


def test_trimming_the_runs_keeps_the_whole_sweeps_best(result):
    from dataclasses import replace

    trimmed = replace(result, runs=order_runs(result.runs, "run", 2))
    assert trimmed.sweep_best == result.sweep_best


def test_sort_orders(result):
    by_run = order_runs(result.runs, "run")
    assert [r.run_dir for r in by_run] == sorted(r.run_dir for r in result.runs)
    by_verdict = order_runs(result.runs, "verdict")
    assert by_verdict[0].verdict == "overfit" and by_verdict[-1].verdict == "agree"
    by_score = order_runs(result.runs, "score")
    scores = [r.row(r.scorer_pick).score.total for r in by_score if r.scorer_pick]
    assert scores == sorted(scores)
    # A run without a pick has nothing to sort by: it goes last.
    assert by_score[-1].verdict == "no_candidates"
    by_gap = order_runs(result.runs, "gap")
    gaps = [r.row(r.eval_only_pick).gap for r in by_gap if r.eval_only_pick]
    assert gaps == sorted(gaps, reverse=True)
    by_eval = order_runs(result.runs, "eval_loss")
    losses = [r.row(r.eval_only_pick).eval_loss for r in by_eval if r.eval_only_pick]
    assert losses == sorted(losses)


def test_top_cuts_and_no_sort_keeps_the_found_order(result):
    assert order_runs(result.runs, None, 3) == result.runs[:3]
    assert order_runs(result.runs) == result.runs
    assert len(order_runs(result.runs, "score", 100)) == len(result.runs)


def test_an_unknown_sort_is_refused(result):
    with pytest.raises(ValueError, match="sort must be one of"):
        order_runs(result.runs, "name")
    assert "score" in SORT_KEYS
