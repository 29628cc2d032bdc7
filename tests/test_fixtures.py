"""Every run under fixtures/ against fixtures/EXPECTED.yaml: a new case folder is a new test."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

import auditor
from auditor.config import Config
from auditor.render import render
from conftest import FIXTURES, expected_rows

EXPECTED = yaml.safe_load((FIXTURES / "EXPECTED.yaml").read_text())
RESULT = auditor.audit(FIXTURES)
ROWS = expected_rows()
RUNS = {(os.path.relpath(r.run_dir, FIXTURES), r.training): r for r in RESULT.runs}


def test_every_fixture_run_has_an_expectation():
    assert sorted(RUNS) == sorted((name, number) for name, _, number in ROWS)


@pytest.mark.parametrize(("name", "want", "training"), ROWS, ids=lambda v: str(v))
def test_fixture_run(name, want, training):
    run = RUNS[name, training]
    assert run.error is None
    assert run.trainings == sum(1 for other, _, _ in ROWS if other == name)
    assert run.verdict == want["verdict"]
    assert run.flagged == (want["verdict"] == "overfit")
    assert (run.eval_only_pick.step if run.eval_only_pick else None) == want["eval_only"]
    assert (run.scorer_pick.step if run.scorer_pick else None) == want["scorer"]
    assert (run.trainer_best.step if run.trainer_best else None) == want["trainer_best"]
    assert (run.smoothed_pick.step if run.smoothed_pick else None) == want["smoothed"]
    if "trainer_metric" in want:
        assert run.trainer_metric == want["trainer_metric"]
    assert run.eval_key == want.get("eval_key", "eval_loss")
    assert (run.evidence.outcome if run.evidence else None) == want["outcome"]
    judged = run.trainer_best_evidence
    assert (judged.outcome if judged else None) == want.get("trainer_best_outcome")


def _smoothed_from_the_files(folder: Path, eval_key: str) -> int | None:
    """The smoothed pick written out from the raw files: the newest trainer_state.json's curve
    of `eval_key` (a step logged twice keeps its later value, finite values only), its
    centred 3-point means (2 at the ends), the lowest among the steps with a checkpoint folder;
    None below 20 evaluations."""
    states = _trainer_states(folder)
    newest = max((json.loads(p.read_text()) for p in states), key=lambda s: s["global_step"])
    logged = {}
    for entry in newest["log_history"]:
        if eval_key in entry:
            logged[entry["step"]] = entry[eval_key]
    curve = sorted((s, v) for s, v in logged.items() if math.isfinite(v))
    if len(curve) < 20:
        return None
    means = {}
    for i, (step, _) in enumerate(curve):
        window = [v for _, v in curve[max(0, i - 1) : i + 2]]
        means[step] = sum(window) / len(window)
    saved = [
        int(m.group(1))
        for d in folder.iterdir()
        if (m := re.fullmatch(r"checkpoint-(\d+)", d.name)) and (d / "trainer_state.json").is_file()
    ]
    return min((s for s in saved if s in means), key=lambda s: (means[s], s), default=None)


def _trainer_states(folder: Path) -> list[Path]:
    return [
        p
        for p in [folder / "trainer_state.json", *folder.glob("checkpoint-*/trainer_state.json")]
        if p.is_file()
    ]


# The Trainer's output folders holding one training: telling several trainings' histories apart
# is the lineage check's job, and other frameworks' files have readers of their own; both are
# checked against EXPECTED.yaml above.
SINGLE_TRAINER_RUNS = [
    (name, want)
    for name, want, _ in ROWS
    if sum(1 for other, _, _ in ROWS if other == name) == 1 and _trainer_states(FIXTURES / name)
]


@pytest.mark.parametrize(("name", "want"), SINGLE_TRAINER_RUNS, ids=lambda v: str(v))
def test_smoothed_pick_is_the_lowest_three_point_mean_of_the_logged_curve(name, want):
    run = RUNS[name, 1]
    expected = _smoothed_from_the_files(FIXTURES / name, run.eval_key)
    assert expected == want["smoothed"]
    assert (run.smoothed_pick.step if run.smoothed_pick else None) == expected


def test_eval_only_pick_is_what_load_best_model_at_end_picks_on_eval_loss():
    # Where the Trainer chose on eval_loss and its best folder survived, the two agree.
    for (name, _), run in RUNS.items():
        state_metric = run.trainer_metric
        best_row = run.row(run.trainer_best)
        if state_metric == "eval_loss" and best_row is not None and best_row.on_disk:
            assert run.eval_only_pick == run.trainer_best, name


def test_picks_do_not_depend_on_the_walk(tmp_path):
    for name in EXPECTED:
        for alone in auditor.audit(FIXTURES / name, config=Config()).runs:
            walked = RUNS[name, alone.training]
            assert (alone.eval_only_pick, alone.scorer_pick, alone.verdict) == (
                walked.eval_only_pick,
                walked.scorer_pick,
                walked.verdict,
            )


def test_every_fixture_reads_the_same_when_its_files_are_rewritten_compactly(tmp_path):
    # A tool that rewrites trainer_state.json changes its whitespace, never what it says.
    copy = tmp_path / "fixtures"
    shutil.copytree(FIXTURES, copy)
    for path in copy.rglob("trainer_state.json"):
        path.write_text(json.dumps(json.loads(path.read_text()), separators=(",", ":")))

    rewritten = render(auditor.audit(copy), "json").replace(str(copy), str(FIXTURES))

    assert rewritten == render(RESULT, "json")
