"""LLaMA-Factory's trainer_log.jsonl, written by its LogCallback during a real Trainer run."""

from __future__ import annotations

import json
import shutil

import auditor
from auditor.pair import digest_history
from auditor.sources.llamafactory import parse_log
from conftest import FRAMEWORKS

RUN = FRAMEWORKS / "llamafactory" / "lf_output"
REFERENCE = FRAMEWORKS / "llamafactory" / "trainer_state.reference.json"


def test_the_step_is_current_steps_and_the_history_is_the_trainers():
    log = RUN / "trainer_log.jsonl"
    history, warnings = parse_log(log.read_bytes(), str(log))
    assert warnings == []
    ours = digest_history(history)
    reference = digest_history(json.loads(REFERENCE.read_text())["log_history"])
    assert ours.train == reference.train
    assert ours.evals == reference.evals


def test_the_audit_uses_the_log_when_no_trainer_state_is_readable():
    assert not list(RUN.rglob("trainer_state.json"))
    (run,) = auditor.audit(RUN).runs
    assert run.error is None and run.eval_only_pick is not None
    assert run.eval_only_pick.checkpoint.startswith("checkpoint-")
    assert any("trainer_log.jsonl" in w for w in run.warnings)


def test_a_readable_trainer_state_wins_over_the_log(copy_run):
    run = copy_run("frameworks/llamafactory/lf_output", "out")
    (run / "trainer_state.json").write_text(REFERENCE.read_text())
    (audited,) = auditor.audit(run).runs
    assert not any("trainer_log.jsonl" in w for w in audited.warnings)
    assert audited.trainer_best is not None  # the state records the Trainer's best


def test_a_torn_last_line_is_a_warning(copy_run):
    run = copy_run("frameworks/llamafactory/lf_output", "out")
    log = run / "trainer_log.jsonl"
    log.write_text(log.read_text()[:-20])
    (audited,) = auditor.audit(run).runs
    assert audited.error is None
    assert any(str(log) in w and "torn" in w for w in audited.warnings)


def test_a_broken_line_mid_file_is_an_error_naming_the_file_and_line(copy_run):
    run = copy_run("frameworks/llamafactory/lf_output", "out")
    log = run / "trainer_log.jsonl"
    lines = log.read_text().splitlines()
    lines[2] = lines[2][:10]
    log.write_text("\n".join(lines) + "\n")
    (audited,) = auditor.audit(run).runs
    assert audited.verdict == "error"
    assert str(log) in audited.error and "line 3" in audited.error


def test_nan_and_wrong_types_as_the_trainer_source_treats_them(copy_run):
    run = copy_run("frameworks/llamafactory/lf_output", "out")
    log = run / "trainer_log.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    evals = [r for r in rows if "eval_loss" in r]
    evals[0]["eval_loss"] = float("nan")  # json.dumps writes NaN, as LLaMA-Factory's writer
    trains = [r for r in rows if "loss" in r]
    trains[0]["loss"] = "high"
    trains[1]["current_steps"] = "5"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (audited,) = auditor.audit(run).runs
    assert audited.error is None
    assert any("NaN or infinite" in w for w in audited.warnings)
    assert any("non-numeric values ignored for loss" in w for w in audited.warnings)
    assert any("without a whole-number current_steps" in w for w in audited.warnings)


def test_a_log_without_checkpoint_folders_is_a_history_only_run(copy_run):
    run = copy_run("frameworks/llamafactory/lf_output", "out")
    for folder in run.glob("checkpoint-*"):
        shutil.rmtree(folder)
    (audited,) = auditor.audit(run).runs
    assert audited.error is None and audited.history_only
    (named,) = auditor.audit(run / "trainer_log.jsonl").runs
    assert named.run_dir == str(run) and named.eval_only_pick == audited.eval_only_pick
