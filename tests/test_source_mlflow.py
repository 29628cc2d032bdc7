"""MLflow's local stores: the SQLite mlflow.db (Trainer's MLflowCallback) and the mlruns/
file store (Lightning's MLFlowLogger), read without MLflow."""

from __future__ import annotations

import json
import os
import shutil

import auditor
from auditor.pair import digest_history
from auditor.sources.logged import KeyMap
from auditor.sources.mlflow import read_database
from auditor.storage import for_path
from conftest import FRAMEWORKS

SQLITE = FRAMEWORKS / "mlflow_sqlite"
DATABASE = SQLITE / "mlflow.db"
REFERENCE = SQLITE / "trainer_state.reference.json"
FILE_STORE = FRAMEWORKS / "mlflow_files" / "mlruns"
LIGHTNING_CSV = FRAMEWORKS / "lightning" / "lightning_logs" / "version_0"


def test_the_database_holds_the_trainers_history_and_arguments():
    (run,) = read_database(for_path(str(DATABASE)), str(DATABASE), KeyMap())
    ours = digest_history(run.history)
    reference = digest_history(json.loads(REFERENCE.read_text())["log_history"])
    assert ours.train == reference.train
    assert ours.evals == reference.evals
    assert (run.best.metric, run.best.greater_is_better) == ("eval_loss", False)
    assert (run.settings.load_best_model_at_end, run.settings.save_total_limit) == (True, 6)


def test_the_database_is_opened_read_only(tmp_path):
    copy = tmp_path / "mlflow.db"
    shutil.copy(DATABASE, copy)
    before = (copy.read_bytes(), copy.stat().st_mtime_ns)
    os.chmod(copy, 0o444)
    os.chmod(tmp_path, 0o555)  # sqlite could not create a journal beside it either
    try:
        (run,) = auditor.audit(tmp_path).runs
    finally:
        os.chmod(tmp_path, 0o755)
    assert run.error is None, run.error
    assert (copy.read_bytes(), copy.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]


def test_each_run_of_the_database_is_a_row_named_by_its_id():
    (run,) = auditor.audit(SQLITE).runs
    assert run.run_dir.startswith(str(DATABASE) + os.sep)
    assert run.history_only and run.eval_only_pick is not None


def test_a_file_that_is_not_a_database_is_an_error_naming_it(tmp_path):
    (tmp_path / "mlflow.db").write_bytes(b"not sqlite at all" * 100)
    (run,) = auditor.audit(tmp_path).runs
    assert run.verdict == "error"
    assert str(tmp_path / "mlflow.db") in run.error and "MLflow" in run.error


def test_the_file_store_run_matches_the_lightning_csv_of_the_same_fit():
    (run,) = auditor.audit(FILE_STORE).runs
    (csv_run,) = auditor.audit(LIGHTNING_CSV).runs
    assert run.error is None
    assert [c.checkpoint for c in run.checkpoints] == [c.checkpoint for c in csv_run.checkpoints]
    assert run.eval_only_pick == csv_run.eval_only_pick
    assert run.scorer_pick == csv_run.scorer_pick


def test_a_torn_metric_line_is_a_warning_a_broken_one_an_error(tmp_path):
    store = tmp_path / "mlruns"
    shutil.copytree(FILE_STORE, store)
    (val_loss,) = store.glob("*/*/metrics/val_loss")
    text = val_loss.read_text()
    val_loss.write_text(text[:-4])
    (run,) = auditor.audit(store).runs
    assert run.error is None
    assert any(str(val_loss) in w and "torn" in w for w in run.warnings)
    lines = text.splitlines()
    lines[1] = "1700000000000 oops 15"
    val_loss.write_text("\n".join(lines) + "\n")
    (run,) = auditor.audit(store).runs
    assert run.verdict == "error"
    assert str(val_loss) in run.error and "line 2" in run.error


def test_a_database_given_alone_and_one_run_of_it(tmp_path):
    (whole,) = auditor.audit(DATABASE).runs
    (one,) = auditor.audit(whole.run_dir).runs
    assert one.run_dir == whole.run_dir and one.eval_only_pick == whole.eval_only_pick
    missing = auditor.audit(str(DATABASE / "0123456789abcdef")).runs[0]
    assert missing.verdict == "error" and "holds no run 0123456789abcdef" in missing.error
