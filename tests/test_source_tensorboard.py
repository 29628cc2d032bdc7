"""TensorBoard event files read with the standard library, on files the real writers made."""

from __future__ import annotations

import json
import math
import shutil
import struct
from pathlib import Path

import pytest

import auditor
from auditor.errors import StateFileError
from auditor.pair import digest_history
from auditor.sources.tensorboard import (
    best_and_settings,
    read_event_files,
    trainer_arguments,
    trainer_event_files,
    trainer_history,
)
from auditor.sources.tfrecord import crc32c, parse_event_file, records
from auditor.storage import for_path
from conftest import FRAMEWORKS

FRAMEWORKS = FRAMEWORKS
HF_RUN = FRAMEWORKS / "hf_tensorboard" / "tb_output"
REFERENCE = FRAMEWORKS / "hf_tensorboard" / "trainer_state.reference.json"


def _float32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


def _files(run: Path) -> list:
    storage = for_path(str(run))
    return read_event_files(storage, trainer_event_files(storage, str(run)))


def test_crc32c_matches_the_published_check_value():
    # RFC 3720, B.4: CRC-32C of the ASCII digits 1 to 9.
    assert crc32c(b"123456789") == 0xE3069283


def test_a_resumed_trainer_run_is_one_history_the_later_events_winning():
    files = _files(HF_RUN)
    assert len(files) == 2  # one runs/<date>_<host>/ folder per start
    ours = digest_history(trainer_history(files))
    reference = digest_history(json.loads(REFERENCE.read_text())["log_history"])
    # The event files hold float32: the Trainer's values rounded to that precision.
    assert ours.train == {s: _float32(v) for s, v in reference.train.items()}
    assert {k: v for k, v in ours.evals.items()} == {
        key: {s: _float32(v) for s, v in values.items()} for key, values in reference.evals.items()
    }
    # Steps 60 and 70 were logged by both starts: the resumed training's values count.
    logged_twice = [e["step"] for e in trainer_history(files) if "eval_loss" in e]
    assert logged_twice.count(60) == 2 and logged_twice.count(70) == 2


def test_the_args_summary_gives_the_trainers_metric_and_settings():
    best, settings = best_and_settings(trainer_arguments(_files(HF_RUN)))
    assert (best.metric, best.greater_is_better) == ("eval_loss", False)
    assert (settings.load_best_model_at_end, settings.save_total_limit) == (True, 6)


def test_the_audit_reads_the_run_from_its_event_files_alone():
    (run,) = auditor.audit(HF_RUN).runs
    assert run.error is None
    assert run.trainer_metric == "eval_loss"
    assert any("TensorBoard event files" in w for w in run.warnings)
    # Candidates are the checkpoint folders on disk (save_total_limit removed the others).
    on_disk = sorted(int(p.name.split("-")[1]) for p in HF_RUN.glob("checkpoint-*"))
    assert sorted(c.step for c in run.checkpoints if c.on_disk) == on_disk


def _copy(tmp_path: Path, copy_run) -> tuple[Path, Path]:
    run = copy_run("frameworks/hf_tensorboard/tb_output", "out")
    newest = max(run.glob("runs/*/events.out.tfevents.*"), key=lambda p: p.parent.name)
    return run, newest


def test_a_torn_last_record_is_a_warning_naming_the_file(tmp_path, copy_run):
    run, newest = _copy(tmp_path, copy_run)
    newest.write_bytes(newest.read_bytes()[:-7])
    (audited,) = auditor.audit(run).runs
    assert audited.error is None
    assert any(str(newest) in w and "torn" in w for w in audited.warnings)


def test_a_damaged_record_in_the_middle_is_an_error_naming_the_file_and_the_fix(tmp_path, copy_run):
    run, newest = _copy(tmp_path, copy_run)
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    (audited,) = auditor.audit(run).runs
    assert audited.verdict == "error"
    assert str(newest) in audited.error and "restore the file" in audited.error


def test_a_file_that_is_no_event_file_is_refused():
    with pytest.raises(StateFileError, match="not a TensorBoard event file"):
        parse_event_file(b'{"log_history": []}\n' * 3, "runs/x/events.out.tfevents.1")


def _frame(payload: bytes) -> bytes:
    def masked(crc: int) -> int:
        return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF

    header = struct.pack("<Q", len(payload))
    return (
        header
        + struct.pack("<I", masked(crc32c(header)))
        + payload
        + struct.pack("<I", masked(crc32c(payload)))
    )


def test_a_nan_eval_loss_reaches_the_audit_as_nan(tmp_path, copy_run):
    # The writer's own newest eval/loss record, its value set to NaN and framed again.
    run, newest = _copy(tmp_path, copy_run)
    payloads = list(records(newest.read_bytes(), str(newest), []))
    at = max(i for i, p in enumerate(payloads) if b"eval/loss" in p)
    payload = payloads[at]
    value_at = payload.index(b"eval/loss") + len(b"eval/loss")
    assert payload[value_at] == 0x15  # Summary.Value.simple_value, a float32
    payloads[at] = payload[: value_at + 1] + struct.pack("<f", math.nan) + payload[value_at + 5 :]
    newest.write_bytes(b"".join(_frame(p) for p in payloads))
    step = parse_event_file(newest.read_bytes(), str(newest)).scalars
    nan_steps = [s.step for s in step if s.tag == "eval/loss" and math.isnan(s.value)]
    assert len(nan_steps) == 1
    (audited,) = auditor.audit(run).runs
    assert audited.error is None
    assert any("NaN or infinite" in w and str(nan_steps[0]) in w for w in audited.warnings)


def test_a_trainer_run_with_both_files_takes_its_metric_from_the_args(tmp_path, copy_run):
    run, _ = _copy(tmp_path, copy_run)
    state = json.loads(REFERENCE.read_text())
    # Without best_metric the Trainer's metric cannot be matched by value: the args name it.
    del state["best_metric"]
    (run / "trainer_state.json").write_text(json.dumps(state, indent=2))
    (audited,) = auditor.audit(run).runs
    assert audited.error is None
    assert audited.trainer_metric == "eval_loss"
    assert not any("TensorBoard event files" in w for w in audited.warnings)


def test_an_output_folder_with_runs_and_no_checkpoints_is_a_history_only_run(copy_run):
    run = copy_run("frameworks/hf_tensorboard/tb_output", "out")
    newest = max(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    # What trainer.save_model() leaves in the output folder, then the checkpoints removed.
    shutil.copy(newest / "config.json", run / "config.json")
    for folder in run.glob("checkpoint-*"):
        shutil.rmtree(folder)
    (audited,) = auditor.audit(run).runs
    assert audited.error is None and audited.history_only
    evaluated = {e["step"] for e in trainer_history(_files(run)) if "eval_loss" in e}
    assert audited.eval_only_pick.step in evaluated
