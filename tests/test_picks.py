"""Picks, the overfit flag and verdicts (SPEC section 4) on real Trainer output folders."""

from __future__ import annotations

import json
import math
import shutil

import pytest

import auditor
from auditor.config import Config
from conftest import EXAMPLES, FIXTURES


def only_run(*paths, **kwargs) -> auditor.RunResult:
    (run,) = auditor.audit(*paths, **kwargs).runs
    return run


def edit_state(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def test_flagged_run_has_the_margin_of_the_spec():
    run = only_run(FIXTURES / "real_overfit_flagged")
    assert run.verdict == "overfit" and run.flagged
    eval_only, best = run.row(run.eval_only_pick), run.row(run.scorer_pick)
    assert eval_only.eval_loss < best.eval_loss  # eval-only really picks the lowest eval loss
    assert best.score.total < eval_only.score.total
    over = lambda r: max(0.0, r.eval_loss - r.train_loss) / r.eval_loss  # noqa: E731
    assert over(eval_only) - over(best) >= 0.10


def test_raising_min_gap_delta_turns_overfit_into_differs():
    path = FIXTURES / "sweep" / "run-0000"
    run = only_run(path)
    margin = run.row(run.eval_only_pick).overfit - run.row(run.scorer_pick).overfit
    relaxed = only_run(path, config=Config(min_gap_delta=margin + 0.01))
    assert relaxed.verdict == "differs" and not relaxed.flagged


def test_candidates_are_folders_on_disk_but_every_evaluation_is_listed():
    run = only_run(EXAMPLES / "lm_overfit_rotated")
    assert len(run.checkpoints) == 20
    on_disk = [c for c in run.checkpoints if c.on_disk]
    assert [c.checkpoint for c in on_disk] == ["checkpoint-60", "checkpoint-400"]
    assert all(c.checkpoint is None for c in run.checkpoints if not c.on_disk)
    assert {c.step for c in run.checkpoints if c.candidate} == {60, 400}
    assert [c.step for c in run.checkpoints if c.is_best] == [run.scorer_pick.step]


def test_history_alone_makes_every_evaluation_a_candidate():
    run = only_run(EXAMPLES / "lm_overfit_rotated" / "trainer_state.json")
    assert run.history_only
    assert sum(c.candidate for c in run.checkpoints) == 20
    assert run.eval_only_pick == auditor.Pick(None, 60)
    assert run.scorer_pick.step == 40
    assert any("history alone" in w for w in run.warnings)


def test_a_bare_files_best_global_step_is_used_as_the_history_says():
    # best_model_checkpoint is null; no folder of step 75 exists, and a bare file has none.
    run = only_run(EXAMPLES / "lm_eval_misaligned" / "trainer_state.json")
    assert run.history_only
    assert run.trainer_best == auditor.Pick(None, 75)
    assert not any("best_global_step" in w for w in run.warnings)


def test_unscorable_checkpoints_are_never_picked():
    run = only_run(EXAMPLES / "lm_diverged")
    nan_rows = [c for c in run.checkpoints if c.eval_loss is not None and math.isnan(c.eval_loss)]
    assert nan_rows and all(not c.candidate and c.score.total == math.inf for c in nan_rows)
    assert run.scorer_pick.step == 30


def test_stale_windows_and_absolute_best_paths_resolve_by_their_last_part(copy_run):
    run_dir = copy_run("examples/lm_resumed")
    edit_state(
        run_dir / "trainer_state.json",
        lambda d: d.update(best_model_checkpoint="C:\\Users\\me\\out\\checkpoint-75\\"),
    )
    assert only_run(run_dir).trainer_best == auditor.Pick("checkpoint-75", 75)
    edit_state(
        run_dir / "trainer_state.json",
        lambda d: d.update(best_model_checkpoint="/scratch/old-machine/out/checkpoint-75"),
    )
    assert only_run(run_dir).trainer_best == auditor.Pick("checkpoint-75", 75)


def test_trainer_best_without_a_checkpoint_is_explained():
    run = only_run(EXAMPLES / "lm_eval_misaligned")
    assert run.trainer_best is None
    assert any("best_global_step 75" in w for w in run.warnings)


def test_trainer_metric_other_than_the_loss_is_reported():
    run = only_run(EXAMPLES / "cls_accuracy")
    assert run.trainer_metric == "eval_accuracy"
    assert run.trainer_best.step == 125 and run.eval_only_pick.step == 50
    assert any("eval_accuracy" in w for w in run.warnings)


def test_several_eval_sets_are_audited_on_the_trainers_selection_loss():
    run = only_run(EXAMPLES / "lm_multi_eval")
    assert (run.eval_key, run.verdict, run.eval_only_pick.step) == (
        "eval_in_domain_loss",
        "agree",
        120,
    )
    named = only_run(EXAMPLES / "lm_multi_eval", config=Config(eval_key="eval_ood_loss"))
    assert named.eval_key == "eval_ood_loss" and named.verdict != "no_candidates"


def test_several_eval_sets_without_the_trainers_choice_wait_for_a_named_key(copy_run):
    run_dir = copy_run("examples/lm_multi_eval")
    edit_state(run_dir / "trainer_state.json", lambda d: d.update(best_metric=None))
    run = only_run(run_dir / "trainer_state.json")
    assert run.verdict == "no_candidates" and run.error is None
    assert any("eval_in_domain_loss" in w and "eval_ood_loss" in w for w in run.warnings)


def test_mixed_trainings_in_one_folder_are_audited_separately(copy_run):
    run_dir = copy_run("examples/lm_overfit_full")
    # A second training reused the folder and overwrote checkpoint-100 with its own history.
    edit_state(
        run_dir / "checkpoint-100" / "trainer_state.json",
        lambda d: [
            e.update(eval_loss=e["eval_loss"] * 0.5) for e in d["log_history"] if "eval_loss" in e
        ],
    )
    first, second = auditor.audit(run_dir).runs
    assert (first.training, first.trainings, second.training, second.trainings) == (1, 2, 2, 2)
    assert first.run_dir == second.run_dir == str(run_dir)
    row = next(c for c in first.checkpoints if c.step == 100)
    assert row.eval_loss is not None and not row.on_disk and row.checkpoint is None
    assert sum(c.candidate for c in first.checkpoints) == 19
    assert [c.checkpoint for c in second.checkpoints if c.candidate] == ["checkpoint-100"]
    assert second.eval_only_pick.step == second.scorer_pick.step == 100
    for run in (first, second):
        assert [w for w in run.warnings if "trainings" in w] == [
            "holds 2 trainings (steps 20-400 and 100); audited separately"
        ]


def test_a_warning_repeated_per_checkpoint_is_one_line_with_a_count(copy_run):
    run_dir = copy_run("examples/lm_overfit_full")
    for step in (20, 40, 60):
        (run_dir / f"checkpoint-{step}" / "trainer_state.json").unlink()
    run = only_run(run_dir)
    missing = [w for w in run.warnings if "has no trainer_state.json" in w]
    assert missing == [
        "3 checkpoints (checkpoint-20/, checkpoint-40/ and checkpoint-60/): each has no "
        "trainer_state.json (still being written, or the save was interrupted): not a candidate"
    ]
    assert not any(c.candidate for c in run.checkpoints if c.step in (20, 40, 60))


def test_evaluations_that_never_landed_on_a_saved_step_name_both_schedules(copy_run):
    run_dir = copy_run("examples/lm_eval_misaligned")  # eval every 25 steps, save every 20
    for step in (100, 200):  # the two steps where they met
        shutil.rmtree(run_dir / f"checkpoint-{step}")
    run = only_run(run_dir)
    assert run.verdict == "no_candidates"
    (said,) = [w for w in run.warnings if "no evaluation landed on a saved step" in w]
    assert "evaluated every 25 steps (to step 200)" in said
    assert "the lowest eval_loss (step 75) is nearest checkpoint-80" in said
    assert "Set save_strategy to the eval_strategy" in said


def test_global_step_that_disagrees_with_the_folder_name(copy_run):
    run_dir = copy_run("examples/lm_healthy")
    (run_dir / "checkpoint-150").rename(run_dir / "checkpoint-175")
    run = only_run(run_dir)
    assert any("checkpoint-175" in w and "global_step 150" in w for w in run.warnings)
    assert not next(c for c in run.checkpoints if c.step == 175).candidate


def test_last_checkpoint_folder_is_a_candidate_at_its_global_step(copy_run):
    run_dir = copy_run("examples/lm_overfit_rotated")
    (run_dir / "checkpoint-400").rename(run_dir / "last-checkpoint")
    run = only_run(run_dir)
    row = next(c for c in run.checkpoints if c.step == 400)
    assert row.checkpoint == "last-checkpoint" and row.candidate


def test_newest_checkpoint_not_last_step_and_no_root_file(copy_run):
    run_dir = copy_run("examples/lm_healthy")
    (run_dir / "trainer_state.json").unlink()
    for step in (250, 300):
        folder = run_dir / f"checkpoint-{step}"
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()
    run = only_run(run_dir)
    assert [c.step for c in run.checkpoints] == [50, 100, 150, 200]
    assert run.eval_only_pick.step == 200


def test_checkpoint_without_state_file_is_in_progress(copy_run):
    run_dir = copy_run("examples/lm_healthy")
    (run_dir / "checkpoint-300" / "trainer_state.json").unlink()
    run = only_run(run_dir)
    assert not next(c for c in run.checkpoints if c.step == 300).candidate
    assert any("checkpoint-300/" in w and "still being written" in w for w in run.warnings)
    assert run.eval_only_pick.step == 250


def test_old_transformers_format_matches_the_new_one():
    old = only_run(EXAMPLES / "lm_overfit_full_tf4")
    new = only_run(EXAMPLES / "lm_overfit_full")
    assert (old.verdict, old.eval_only_pick, old.scorer_pick, old.trainer_best) == (
        new.verdict,
        new.eval_only_pick,
        new.scorer_pick,
        new.trainer_best,
    )


def test_unreadable_run_becomes_an_error_row_and_others_still_audit(copy_run, tmp_path):
    good = copy_run("examples/lm_healthy", "a_good")
    bad = copy_run("examples/lm_healthy", "b_bad")
    for state in bad.rglob("trainer_state.json"):
        state.write_text('{"log_history": [')
    result = auditor.audit(tmp_path)
    verdicts = {r.run_dir: r.verdict for r in result.runs}
    assert verdicts == {str(good): "agree", str(bad): "error"}
    error = result.errors[0].error
    assert "trainer_state.json" in error and "not valid JSON" in error


def test_json_report_is_strict_and_follows_the_schema():
    result = auditor.audit(EXAMPLES / "lm_diverged", FIXTURES / "real_overfit_flagged")
    text = json.dumps(result.to_dict(), allow_nan=False)
    data = json.loads(text)
    assert data["schema_version"] == 2
    run = data["runs"][1]
    for key in (
        "run_dir",
        "error",
        "flagged",
        "verdict",
        "eval_key",
        "eval_only_pick",
        "scorer_pick",
        "trainer_best",
        "checkpoints",
        "evidence",
        "warnings",
    ):
        assert key in run
    assert set(run["evidence"]) == {
        "eval_noise",
        "eval_delta",
        "eval_samples",
        "metrics",
        "outcome",
    }
    row = next(c for c in run["checkpoints"] if c["is_best"])
    assert set(row["components"]) == {"eval", "gap", "perplexity", "improvement"}
    assert row["score"] == pytest.approx(sum(row["components"].values()))
    diverged = data["runs"][0]
    assert any(c["eval_loss"] is None and c["score"] is None for c in diverged["checkpoints"])


def _rewrite_evaluations(run, change):
    """Apply `change(step, entry)` to the evaluation entries of every trainer_state.json of
    `run`, in the Trainer's layout; an entry for which it returns False is dropped."""
    for path in run.rglob("trainer_state.json"):

        def edit(data):
            kept = []
            for entry in data["log_history"]:
                if "eval_loss" in entry and change(entry["step"], entry) is False:
                    continue
                kept.append(entry)
            data["log_history"] = kept

        edit_state(path, edit)


def test_a_noise_dip_takes_the_eval_only_pick_but_not_the_smoothed_one(copy_run):
    run_dir = copy_run("examples/lm_overfit_full")
    before = only_run(run_dir)
    assert before.eval_only_pick.step == before.smoothed_pick.step == 60
    lowest = before.row(before.eval_only_pick).eval_loss

    def dip(step, entry):
        if step == 200:  # well into the rise: its neighbours are far above the minimum
            entry["eval_loss"] = lowest - 0.01

    _rewrite_evaluations(run_dir, dip)
    run = only_run(run_dir)
    assert run.eval_only_pick == auditor.Pick("checkpoint-200", 200)
    assert run.smoothed_pick == auditor.Pick("checkpoint-60", 60)
    # The verdict and the flag are the eval-only and scorer picks' business alone.
    assert run.verdict in ("overfit", "differs")
    smoothed = auditor.audit(run_dir).to_dict()["runs"][0]["smoothed_pick"]
    assert smoothed == {"checkpoint": "checkpoint-60", "step": 60}


def test_the_smoothed_curve_is_a_centred_three_point_mean_with_two_points_at_the_ends():
    from auditor.picks import smoothed_eval

    run = only_run(EXAMPLES / "lm_overfit_full")
    losses = [c.eval_loss for c in run.checkpoints]
    steps = [c.step for c in run.checkpoints]
    smoothed = smoothed_eval(run.checkpoints)
    assert list(smoothed) == steps
    assert smoothed[steps[0]] == pytest.approx((losses[0] + losses[1]) / 2)
    assert smoothed[steps[5]] == pytest.approx(sum(losses[4:7]) / 3)
    assert smoothed[steps[-1]] == pytest.approx((losses[-2] + losses[-1]) / 2)


@pytest.mark.parametrize(
    ("change", "reported"),
    [
        (lambda step, entry: None, True),  # 20 evaluations
        (lambda step, entry: step != 400, False),  # 19: the last one dropped
        # 19 finite ones: a NaN evaluation is no point of the curve.
        (lambda step, entry: entry.update(eval_loss=float("nan")) if step == 380 else None, False),
    ],
    ids=["20 evaluations", "19 evaluations", "19 finite of 20"],
)
def test_the_smoothed_pick_is_reported_from_20_evaluations_on(copy_run, change, reported):
    from auditor.picks import SMOOTHED_FROM

    assert SMOOTHED_FROM == 20
    run_dir = copy_run("examples/lm_overfit_full")
    _rewrite_evaluations(run_dir, change)
    run = only_run(run_dir)
    assert run.eval_only_pick.step == 60
    assert (run.smoothed_pick is not None) == reported
    assert (run.smoothed_pick.step if run.smoothed_pick else None) == (60 if reported else None)
