"""Lightning runs: CSVLogger and TensorBoardLogger of one fit, ModelCheckpoint's file names."""

from __future__ import annotations

import auditor
from auditor.config import Config
from auditor.sources.lightning import checkpoints_in, list_checkpoints, read_run
from auditor.sources.logged import KeyMap
from auditor.storage import Entry, for_path
from conftest import FRAMEWORKS

CSV_RUN = FRAMEWORKS / "lightning" / "lightning_logs" / "version_0"
TB_RUN = FRAMEWORKS / "lightning_tb" / "lightning_logs" / "version_0"


def _read(path) -> object:
    return read_run(for_path(str(path)), str(path), KeyMap())


def test_csv_and_tensorboard_loggers_of_one_fit_give_the_same_history():
    csv_run, tb_run = _read(CSV_RUN), _read(TB_RUN)
    assert csv_run.history == tb_run.history
    assert csv_run.checkpoints == tb_run.checkpoints
    keys = {k for e in csv_run.history for k in e}
    # val_loss and val_mae as the Trainer would name them; train_loss as its `loss`.
    assert keys == {"step", "loss", "eval_loss", "eval_mae"}


def test_every_checkpoint_file_has_the_evaluation_logged_for_its_step():
    # Lightning logs one step behind ModelCheckpoint's step=: after the shift they meet.
    run = _read(CSV_RUN)
    evaluated = {e["step"] for e in run.history if "eval_loss" in e}
    assert run.checkpoints and {c.step for c in run.checkpoints} <= evaluated


def test_checkpoint_names_give_steps_without_opening_the_files():
    files = sorted(p.name for p in (CSV_RUN / "checkpoints").iterdir())
    assert "last.ckpt" in files and any("-v1" in f for f in files)
    found, warnings = list_checkpoints(for_path(str(CSV_RUN)), str(CSV_RUN), "checkpoints")
    steps = [c.step for c in found]
    assert steps == sorted(set(steps))  # a -vN copy of a step is the same checkpoint
    assert all(c.name in files and c.name != "last.ckpt" for c in found)
    assert warnings == []


def test_custom_templates_and_names_without_a_step():
    entries = [
        Entry(name, f"/x/{name}", False)
        for name in ("model-step=300-val_loss=0.41.ckpt", "best.ckpt", "last-v2.ckpt")
    ]
    found, warnings = checkpoints_in(entries)
    assert [(c.step, c.name) for c in found] == [(300, "model-step=300-val_loss=0.41.ckpt")]
    assert len(warnings) == 1 and "best.ckpt" in warnings[0] and "{step}" in warnings[0]


def test_the_audit_picks_among_the_checkpoint_files():
    (run,) = auditor.audit(CSV_RUN).runs
    assert run.error is None and run.eval_key == "eval_loss"
    assert run.eval_only_pick is not None and run.eval_only_pick.checkpoint.endswith(".ckpt")


def test_a_torn_last_row_is_a_warning_naming_the_file(copy_run):
    run = copy_run("frameworks/lightning/lightning_logs/version_0", "version_0")
    metrics = run / "metrics.csv"
    metrics.write_text(metrics.read_text()[:-9])
    (audited,) = auditor.audit(run).runs
    assert audited.error is None
    assert any(str(metrics) in w and "torn" in w for w in audited.warnings)


def test_wrong_types_and_nan_in_cells(copy_run):
    run = copy_run("frameworks/lightning/lightning_logs/version_0", "version_0")
    metrics = run / "metrics.csv"
    lines = metrics.read_text().splitlines()
    header = lines[0].split(",")
    at = header.index("val_loss")
    rows = [i for i, line in enumerate(lines) if i and line.split(",")[at]]
    first, second = rows[0], rows[1]
    cells = lines[first].split(",")
    cells[header.index("val_loss")] = "nan"
    lines[first] = ",".join(cells)
    cells = lines[second].split(",")
    cells[header.index("val_mae")] = "oops"
    lines[second] = ",".join(cells)
    metrics.write_text("\n".join(lines) + "\n")
    (audited,) = auditor.audit(run).runs
    assert audited.error is None
    assert any("NaN or infinite" in w for w in audited.warnings)
    assert any(str(metrics) in w and "not numbers skipped: 1" in w for w in audited.warnings)


def test_a_row_of_the_wrong_width_mid_file_is_an_error_naming_the_file(copy_run):
    run = copy_run("frameworks/lightning/lightning_logs/version_0", "version_0")
    metrics = run / "metrics.csv"
    lines = metrics.read_text().splitlines()
    lines[3] += ",1,2"
    metrics.write_text("\n".join(lines) + "\n")
    (audited,) = auditor.audit(run).runs
    assert audited.verdict == "error"
    assert str(metrics) in audited.error and "row 4" in audited.error


def test_train_key_from_the_config():
    (run,) = auditor.audit(CSV_RUN, config=Config(train_key="val_mae")).runs
    # The named key is the train loss now, and no longer an evaluation metric.
    assert run.error is None
    assert "eval_mae" not in run.eval_curves
    (missing,) = auditor.audit(CSV_RUN, config=Config(train_key="nope")).runs
    assert any("train key 'nope'" in w for w in missing.warnings)


def test_checkpoints_in_a_configured_folder(copy_run, tmp_path):
    run = copy_run("frameworks/lightning/lightning_logs/version_0", "version_0")
    (run / "checkpoints").rename(tmp_path / "elsewhere")
    (alone,) = auditor.audit(run).runs
    assert alone.history_only
    (placed,) = auditor.audit(run, config=Config(checkpoint_dir="../elsewhere")).runs
    (original,) = auditor.audit(CSV_RUN).runs
    assert not placed.history_only
    steps = [c.step for c in placed.checkpoints if c.on_disk]
    assert steps == [c.step for c in original.checkpoints if c.on_disk]
    assert all(
        (tmp_path / "elsewhere" / c.checkpoint).is_file() for c in placed.checkpoints if c.on_disk
    )
    (wrong,) = auditor.audit(run, config=Config(checkpoint_dir=str(tmp_path / "nope"))).runs
    assert any("config checkpoint_dir" in w for w in wrong.warnings)
