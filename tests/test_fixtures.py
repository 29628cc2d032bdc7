"""Every run under fixtures/ against fixtures/EXPECTED.yaml: a new case folder is a new test."""

from __future__ import annotations

import json
import os
import shutil

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
    if "trainer_metric" in want:
        assert run.trainer_metric == want["trainer_metric"]
    assert run.eval_key == want.get("eval_key", "eval_loss")
    assert (run.evidence.outcome if run.evidence else None) == want["outcome"]
    judged = run.trainer_best_evidence
    assert (judged.outcome if judged else None) == want.get("trainer_best_outcome")


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
