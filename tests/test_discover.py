"""Finding runs below the paths a user gives."""

from __future__ import annotations

import os
import re

import pytest
import yaml

from auditor.discover import LAST_CHECKPOINT, checkpoint_step, discover, without_runs
from auditor.errors import UsageError
from auditor.sources.hf_trainer import checkpoints_of, state_file_of
from conftest import EXAMPLES, FIXTURES


def test_finds_every_run_of_a_tree_once_in_path_order():
    runs = discover([str(FIXTURES)])
    names = [os.path.relpath(r.run_dir, FIXTURES) for r in runs]
    assert names == sorted(names)
    assert "examples/lm_healthy" in names and "sweep/run-0003" in names
    expected = yaml.safe_load((FIXTURES / "EXPECTED.yaml").read_text())
    assert len(names) == len(set(names))
    # An MLflow database is one location holding its runs (<folder>/mlflow.db/<run id>).
    locations = {re.sub(r"/mlflow\.db/[0-9a-f]+$", "", name) for name in expected}
    assert sorted(names) == sorted(locations)


def test_never_descends_into_checkpoint_folders():
    runs = discover([str(EXAMPLES / "lm_overfit_rotated")])
    assert len(runs) == 1
    assert [c.name for c in checkpoints_of(runs[0])] == ["checkpoint-60", "checkpoint-400"]
    state_file = state_file_of(runs[0])
    assert state_file and state_file.endswith("trainer_state.json")


def test_checkpoint_names():
    assert checkpoint_step("checkpoint-0040") == 40
    for name in ("checkpoint-", "checkpoint-abc", "checkpoint-10.tmp", "tmp-checkpoint-10"):
        assert checkpoint_step(name) is None


def test_overlapping_paths_and_symlinks_report_a_run_once(copy_run, tmp_path):
    run = copy_run("examples/lm_healthy")
    (tmp_path / "alias").symlink_to(run)
    (run / "loop").symlink_to(tmp_path)  # a symlink back up the tree
    runs = discover([str(tmp_path), str(run), str(tmp_path / "alias")])
    assert len(runs) == 1


def test_a_run_named_by_its_file_and_found_by_a_walk_is_reported_once(copy_run, tmp_path):
    run = copy_run("examples/lm_healthy", "outputs/run")
    (tmp_path / "same.json").symlink_to(run / "trainer_state.json")
    runs = discover([str(run / "trainer_state.json"), str(tmp_path / "same.json")])
    assert len(runs) == 1 and runs[0].history_only
    walked = discover([str(tmp_path / "outputs"), str(run / "trainer_state.json")])
    assert [r.history_only for r in walked] == [False, True]  # a folder and a file: two audits


def test_only_paths_holding_no_run_are_empty_however_their_runs_were_reached(copy_run, tmp_path):
    run = copy_run("examples/lm_healthy", "outputs/run")
    (tmp_path / "alias").symlink_to(tmp_path / "outputs")
    (tmp_path / "empty").mkdir()
    for order in (["outputs", "alias", "empty"], ["alias", "outputs", "empty"]):
        paths = [str(tmp_path / name) for name in order] + [str(run / "checkpoint-300")]
        runs = discover(paths)
        assert without_runs(paths, [r.run_dir for r in runs]) == [str(tmp_path / "empty")]


def test_a_bare_state_file_or_a_single_checkpoint_is_a_history_only_run():
    bare = discover([str(EXAMPLES / "lm_healthy" / "trainer_state.json")])
    assert bare[0].history_only and bare[0].run_dir.endswith("trainer_state.json")
    single = discover([str(EXAMPLES / "lm_healthy" / "checkpoint-300")])
    assert single[0].history_only and single[0].run_dir.endswith("checkpoint-300")


def test_root_state_without_checkpoints_is_history_only(copy_run):
    run = copy_run("examples/lm_healthy")
    for folder in run.glob("checkpoint-*"):
        for file in folder.iterdir():
            file.unlink()
        folder.rmdir()
    (location,) = discover([str(run)])
    assert location.history_only and checkpoints_of(location) == ()


def test_last_checkpoint_and_odd_folders(copy_run):
    run = copy_run("examples/lm_overfit_rotated")
    (run / "checkpoint-60").rename(run / LAST_CHECKPOINT)
    (run / "checkpoint-abc").mkdir()
    (run / "tmp-checkpoint-420").mkdir()
    (location,) = discover([str(run)])
    assert [c.name for c in checkpoints_of(location)] == ["checkpoint-400", LAST_CHECKPOINT]
    notes = " ".join(location.notes)
    assert "checkpoint-abc/" in notes and "tmp-checkpoint-420/" in notes


def test_missing_path_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file or folder"):
        discover([str(tmp_path / "nope")])
