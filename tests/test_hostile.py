"""Broken and hostile trainer_state.json files: a clear message per run, never a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from auditor.cli import main

LFS_POINTER = (
    b"version https://git-lfs.github.com/spec/v1\n"
    b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    b"size 18670\n"
)
# What another program might leave under the same name: no log_history.
FOREIGN_STATE = b'{"epoch": 3, "global_step": 300, "optimizer_states": [], "callbacks": {}}'


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def state_files(run: Path) -> list[Path]:
    return sorted(run.rglob("trainer_state.json"))


def rewrite_history(path: Path, change: Callable[[list], None]) -> None:
    document = json.loads(path.read_text())
    change(document["log_history"])
    path.write_text(json.dumps(document, indent=2))


@pytest.fixture
def two_runs(copy_run, monkeypatch, tmp_path: Path) -> tuple[Path, Path]:
    """A run to break (lm_healthy) and a flagged run beside it that must still be audited."""
    monkeypatch.chdir(tmp_path)
    broken = copy_run("examples/lm_healthy", "outputs/broken")
    flagged = copy_run("real_overfit_flagged", "outputs/flagged")
    return broken, flagged


def assert_clean(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.stdout + result.stderr


def assert_other_run_audited(result: Result) -> None:
    assert "outputs/flagged" in result.stdout
    assert "OVERFIT" in result.stdout


def _truncated(real: bytes) -> bytes:
    return real[: len(real) // 2]


def _invalid_utf8(real: bytes) -> bytes:
    return real.replace(b'"global_step"', b'"global_\xff\xfestep"', 1)


# Each breaker turns a real trainer_state.json into a broken one; the error must name the file
# and say what to do about it.
WHOLE_FILE_BREAKS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated": (_truncated, "cut short"),
    "empty": (lambda real: b"", "is empty"),
    "whitespace": (lambda real: b"  \n\t\n", "is empty"),
    "binary": (lambda real: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "not UTF-8"),
    "nul bytes": (lambda real: b"\x00" * 64, "not valid JSON"),
    "invalid utf-8": (_invalid_utf8, "not UTF-8"),
    "json array": (lambda real: b"[1, 2, 3]", "not an object"),
    "json string": (lambda real: b'"trainer_state"', "not an object"),
    "no log_history": (lambda real: b'{"global_step": 300}', "no log_history"),
    "log_history not a list": (
        lambda real: b'{"log_history": {"step": 1}}',
        "log_history that is not a list",
    ),
    "log_history null": (lambda real: b'{"log_history": null}', "no log_history"),
    "deeply nested": (
        lambda real: b'{"log_history": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
        "nested too deeply",
    ),
    "deeply nested objects": (
        lambda real: b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,
        "nested too deeply",
    ),
    "other program": (lambda real: FOREIGN_STATE, "Trainer"),
    "git lfs pointer": (lambda real: LFS_POINTER, "git lfs pull"),
    "trailing garbage": (lambda real: real + b"\n}{", "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(WHOLE_FILE_BREAKS))
def test_a_run_whose_every_state_file_is_broken_is_an_error_row(two_runs, name):
    broken, _ = two_runs
    breaker, fragment = WHOLE_FILE_BREAKS[name]
    for path in state_files(broken):
        path.write_bytes(breaker(path.read_bytes()))

    result = cli("scan", "outputs")

    assert_clean(result)
    assert result.exit_code == 0
    assert_other_run_audited(result)
    row = next(line for line in result.stdout.splitlines() if "outputs/broken" in line)
    assert row.split()[-1] == "error"
    error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert "outputs/broken/trainer_state.json" in error
    assert fragment in error


@pytest.mark.parametrize("name", sorted(WHOLE_FILE_BREAKS))
def test_a_broken_root_file_is_a_warning_and_the_checkpoints_still_count(two_runs, name):
    broken, _ = two_runs
    breaker, fragment = WHOLE_FILE_BREAKS[name]
    root = broken / "trainer_state.json"
    root.write_bytes(breaker(root.read_bytes()))

    result = cli("scan", "outputs", "--format", "json")

    assert_clean(result)
    assert result.exit_code == 0
    runs = {Path(r["run_dir"]).name: r for r in json.loads(result.stdout)["runs"]}
    assert runs["flagged"]["verdict"] == "overfit"
    assert runs["broken"]["error"] is None
    assert runs["broken"]["scorer_pick"] == {"checkpoint": "checkpoint-300", "step": 300}
    assert any(
        "broken/trainer_state.json" in w and fragment in w for w in runs["broken"]["warnings"]
    )


def test_a_broken_checkpoint_file_is_listed_but_never_picked(two_runs):
    broken, _ = two_runs
    (broken / "checkpoint-150" / "trainer_state.json").write_bytes(b'{"log_history": [')
    rewrite_history(
        broken / "trainer_state.json",
        lambda log: [e.update(eval_loss=0.01) for e in log if e.get("step") == 150],
    )

    result = cli("scan", "outputs", "--format", "json")

    run = next(r for r in json.loads(result.stdout)["runs"] if r["run_dir"].endswith("broken"))
    row = next(c for c in run["checkpoints"] if c["step"] == 150)
    assert row["on_disk"] and not row["candidate"]
    assert run["eval_only_pick"]["step"] != 150
    assert any("checkpoint-150/trainer_state.json" in w for w in run["warnings"])


def test_a_bare_broken_file_given_by_path_is_an_error_not_a_crash(two_runs):
    broken, _ = two_runs
    bare = broken / "trainer_state.json"
    bare.write_bytes(LFS_POINTER)

    result = cli("scan", str(bare), "outputs/flagged")

    assert_clean(result)
    assert result.exit_code == 0
    assert_other_run_audited(result)
    assert "git lfs pull" in result.stderr


def test_utf8_bom_is_read_like_plain_utf8(two_runs):
    broken, _ = two_runs
    for path in state_files(broken):
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())

    result = cli("scan", "outputs/broken", "--format", "json")

    run = json.loads(result.stdout)["runs"][0]
    assert result.exit_code == 0
    assert run["verdict"] == "agree" and run["scorer_pick"]["step"] == 300
    assert not any("trainer_state.json" in w for w in run["warnings"])


# --- the file is there, but it is not a file ------------------------------------------------


def test_a_folder_named_trainer_state_json(two_runs):
    broken, _ = two_runs
    for path in state_files(broken):
        path.unlink()
        path.mkdir()

    result = cli("scan", "outputs")

    assert_clean(result)
    assert_other_run_audited(result)
    assert "outputs/broken/trainer_state.json is a folder" in result.stderr


@pytest.mark.parametrize("target", ["dangling", "loop", "folder", "fifo", "device"])
def test_a_symlink_or_special_file_in_place_of_the_state_file(two_runs, target):
    broken, _ = two_runs
    for path in state_files(broken):
        path.unlink()
        if target == "dangling":
            path.symlink_to(path.parent / "gone.json")
        elif target == "loop":
            path.symlink_to(path)
        elif target == "folder":
            path.symlink_to(path.parent)
        elif target == "fifo":
            os.mkfifo(path)  # opening a FIFO for reading blocks until a writer comes
        else:
            path.symlink_to("/dev/zero")  # reads forever

    result = cli("scan", "outputs")

    assert_clean(result)
    assert result.exit_code == 0
    assert_other_run_audited(result)
    error = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert "outputs/broken/trainer_state.json" in error
    assert "permissions" not in error  # none of these is a permissions problem


def test_a_symlink_to_a_good_file_is_followed(two_runs, tmp_path):
    broken, _ = two_runs
    store = tmp_path / "store"
    store.mkdir()
    for index, path in enumerate(state_files(broken)):
        blob = store / f"blob-{index}"
        path.rename(blob)
        path.symlink_to(blob)  # the Hugging Face cache keeps files this way

    result = cli("scan", "outputs/broken", "--format", "json")

    run = json.loads(result.stdout)["runs"][0]
    assert run["verdict"] == "agree" and run["scorer_pick"]["step"] == 300


# --- readable JSON, hostile values --------------------------------------------------------


def test_entries_that_are_not_objects_or_lack_a_step_are_skipped_with_a_warning(two_runs):
    broken, _ = two_runs

    def damage(log: list) -> None:
        log[1:1] = [1, "loss", None, [], {"loss": 0.1}, {"step": "ten", "loss": 0.2}]

    for path in state_files(broken):
        rewrite_history(path, damage)

    result = cli("scan", "outputs", "--format", "json")

    run = next(r for r in json.loads(result.stdout)["runs"] if r["run_dir"].endswith("broken"))
    assert run["verdict"] == "agree" and run["scorer_pick"]["step"] == 300
    assert any("6 log_history entries skipped" in w for w in run["warnings"])


def test_strings_nulls_and_booleans_where_numbers_belong(two_runs):
    broken, _ = two_runs

    def damage(log: list) -> None:
        for entry in log:
            if entry.get("step") == 100 and "eval_loss" in entry:
                entry["eval_loss"] = "2.5"
            if entry.get("step") == 150 and "eval_loss" in entry:
                entry["eval_loss"] = None
            if entry.get("step") == 200 and "eval_loss" in entry:
                entry["eval_loss"] = True
            if entry.get("step") == 290 and "loss" in entry:
                entry["loss"] = "NaN"

    for path in state_files(broken):
        rewrite_history(path, damage)

    result = cli("scan", "outputs", "--format", "json")

    assert_clean(result)
    run = next(r for r in json.loads(result.stdout)["runs"] if r["run_dir"].endswith("broken"))
    evaluated = [c["step"] for c in run["checkpoints"] if c["eval_loss"] is not None]
    assert evaluated == [50, 250, 300]
    assert run["scorer_pick"]["step"] == 300
    assert any("non-numeric values ignored for eval_loss, loss" in w for w in run["warnings"])


@pytest.mark.parametrize(
    "literal",
    [b"1e400", b"-1e400", b"9" * 400, b"7" * 5000, b"NaN", b"Infinity"],
    ids=["1e400", "-1e400", "400 digits", "5000 digits", "NaN", "Infinity"],
)
def test_huge_and_non_finite_eval_losses_make_a_checkpoint_unscorable(two_runs, literal):
    broken, _ = two_runs
    log = json.loads((broken / "trainer_state.json").read_text())["log_history"]
    value = next(e["eval_loss"] for e in log if e["step"] == 300 and "eval_loss" in e)
    for path in state_files(broken):
        path.write_bytes(path.read_bytes().replace(json.dumps(value).encode(), literal))

    result = cli("scan", "outputs", "--format", "json")

    assert_clean(result)
    assert result.exit_code == 0
    run = next(r for r in json.loads(result.stdout)["runs"] if r["run_dir"].endswith("broken"))
    row = next(c for c in run["checkpoints"] if c["step"] == 300)
    assert row["score"] is None and not row["candidate"] and not row["is_best"]
    assert run["scorer_pick"]["step"] != 300
    assert any("NaN or infinite at step 300" in w for w in run["warnings"])


@pytest.mark.parametrize("literal", [b"1e400", b"9" * 400], ids=["1e400", "400 digits"])
def test_huge_train_losses_and_best_metric_count_as_missing(two_runs, literal):
    broken, _ = two_runs
    for path in state_files(broken):
        text = path.read_bytes()
        document = json.loads(text)
        best = b'"best_metric": ' + json.dumps(document["best_metric"]).encode()
        assert best in text
        text = text.replace(best, b'"best_metric": ' + literal)
        path.write_bytes(text.replace(b'"loss": ', b'"loss": ' + literal + b', "x": '))

    result = cli("scan", "outputs", "--format", "json")

    assert_clean(result)
    run = next(r for r in json.loads(result.stdout)["runs"] if r["run_dir"].endswith("broken"))
    assert run["verdict"] == "agree"
    assert all(c["train_loss"] is None for c in run["checkpoints"])
    assert any("train loss is NaN or infinite" in w for w in run["warnings"])


@pytest.mark.parametrize("value", [0.0, -0.5])
def test_zero_or_negative_eval_loss_has_no_gap_term_and_a_warning(two_runs, value):
    broken, _ = two_runs

    def damage(log: list) -> None:
        for entry in log:
            if entry.get("step") == 250 and "eval_loss" in entry:
                entry["eval_loss"] = value

    for path in state_files(broken):
        rewrite_history(path, damage)

    result = cli("scan", "outputs", "--format", "json")

    assert_clean(result)
    run = next(r for r in json.loads(result.stdout)["runs"] if r["run_dir"].endswith("broken"))
    row = next(c for c in run["checkpoints"] if c["step"] == 250)
    assert row["components"]["gap"] == 0.0
    assert row["score"] is not None
    assert any("zero or negative at step 250" in w for w in run["warnings"])


def test_global_step_that_disagrees_with_the_folder_name(two_runs):
    broken, _ = two_runs
    path = broken / "checkpoint-200" / "trainer_state.json"
    document = json.loads(path.read_text())
    document["global_step"] = 250
    path.write_text(json.dumps(document))

    result = cli("scan", "outputs/broken", "--format", "json")

    run = json.loads(result.stdout)["runs"][0]
    row = next(c for c in run["checkpoints"] if c["step"] == 200)
    assert row["on_disk"] and not row["candidate"]
    assert any(
        "checkpoint-200/trainer_state.json says global_step 250" in w for w in run["warnings"]
    )


@pytest.mark.parametrize("name", ["checkpoint-abc", "checkpoint-", "checkpoint-10.tmp"])
def test_folders_that_only_look_like_checkpoints_are_skipped(two_runs, name):
    broken, _ = two_runs
    (broken / name).mkdir()
    (broken / name / "trainer_state.json").write_bytes(b"{")

    result = cli("scan", "outputs")

    assert_clean(result)
    assert_other_run_audited(result)
    row = next(line for line in result.stdout.splitlines() if "outputs/broken" in line)
    assert row.split()[1:3] == ["6", "6"] and row.split()[-1] == "agree"
    assert f"warning: outputs/broken: {name}/ " in result.stderr
    assert "skipped" in result.stderr


# --- training still running ----------------------------------------------------------------


def test_a_checkpoint_being_written_is_in_progress_and_the_rest_is_audited(two_runs):
    broken, _ = two_runs
    # Mid-training: no root trainer_state.json yet, the newest save half written.
    (broken / "trainer_state.json").unlink()
    newest = broken / "checkpoint-350"
    newest.mkdir()
    real = (broken / "checkpoint-300" / "trainer_state.json").read_bytes()
    (newest / "trainer_state.json").write_bytes(real[: len(real) // 3])
    (broken / "checkpoint-400").mkdir()  # the save after that: weights first, state last
    (broken / "tmp-checkpoint-450").mkdir()

    result = cli("scan", "outputs")

    assert_clean(result)
    assert result.exit_code == 0
    assert_other_run_audited(result)
    row = next(line for line in result.stdout.splitlines() if "outputs/broken" in line)
    assert row.split()[1] == "8"
    assert "checkpoint-300" in row and row.split()[-1] == "agree"
    warnings = [line for line in result.stderr.splitlines() if "outputs/broken" in line]
    assert any("checkpoint-350/" in w and "in progress" in w for w in warnings)
    assert any("checkpoint-400/" in w and "in progress" in w for w in warnings)
    assert any("tmp-checkpoint-450/" in w for w in warnings)


def test_error_messages_of_a_run_with_many_broken_files_stay_readable(two_runs, copy_run):
    broken = copy_run("examples/lm_overfit_full", "outputs/many")
    for path in state_files(broken):
        path.write_bytes(b"\x00\xff")

    result = cli("scan", "outputs")

    error = next(line for line in result.stderr.splitlines() if "outputs/many" in line)
    assert error.startswith("error: outputs/many: ")
    assert "outputs/many/trainer_state.json is not UTF-8" in error
    assert len(error) < 600


# --- the gate fails closed -----------------------------------------------------------------


@pytest.fixture
def gate_tree(copy_run, monkeypatch, tmp_path: Path) -> Path:
    """An unreadable run beside a readable one that passes."""
    monkeypatch.chdir(tmp_path)
    broken = copy_run("examples/lm_healthy", "outputs/broken")
    copy_run("sweep/run-0001", "outputs/passing")
    for path in state_files(broken):
        path.write_bytes(b"")
    return tmp_path


def test_check_fails_closed_on_an_unreadable_run(gate_tree):
    result = cli("check", "outputs")

    assert result.exit_code == 2
    assert "outputs/passing" in result.stdout
    assert "error: outputs/broken: no readable trainer_state.json" in result.stderr
    assert "gate: 1 run(s) could not be read; the gate fails closed" in result.stderr
    assert "--allow-unreadable" in result.stderr


def test_check_allow_unreadable_by_flag_and_by_config(gate_tree):
    (gate_tree / "lenient.yaml").write_text("allow_unreadable: true\n")

    by_flag = cli("check", "outputs", "--allow-unreadable")
    by_config = cli("check", "outputs", "--config", "lenient.yaml")

    for result in (by_flag, by_config):
        assert result.exit_code == 0
        assert "error: outputs/broken" in result.stderr  # accepted, not hidden
        assert "gate: pass" in result.stderr


def test_allow_unreadable_still_fails_on_a_flagged_run(gate_tree, copy_run):
    copy_run("real_overfit_flagged", "outputs/flagged")

    result = cli("check", "outputs", "--allow-unreadable")

    assert result.exit_code == 1
    assert "gate: FAIL" in result.stderr


def test_quiet_check_still_names_the_unreadable_run(gate_tree):
    result = cli("check", "outputs", "-q")

    assert result.exit_code == 2
    assert "warning:" not in result.stderr
    assert "error: outputs/broken: no readable trainer_state.json" in result.stderr


def test_deploy_from_an_unreadable_run_is_an_error(gate_tree):
    result = cli("check", "--deploy", "outputs/broken/checkpoint-300")

    assert result.exit_code == 2
    assert result.stderr.startswith("error: --deploy outputs/broken/checkpoint-300: ")
    assert "is empty" in result.stderr


def test_a_best_model_checkpoint_of_5000_digits_stops_no_run(two_runs):
    broken, _ = two_runs
    for path in state_files(broken):
        document = json.loads(path.read_text())
        document["best_model_checkpoint"] = "/old/place/checkpoint-" + "9" * 5000
        path.write_text(json.dumps(document, indent=2))

    result = cli("scan", "outputs")

    assert_clean(result)
    assert result.exit_code == 0
    assert_other_run_audited(result)
    warning = next(line for line in result.stderr.splitlines() if "best_model_checkpoint" in line)
    assert warning.startswith("warning: outputs/broken: best_model_checkpoint '/old/place/")
    assert warning.endswith(
        "does not end in a checkpoint-<step> folder name: the Trainer's best is not known"
    )
    assert len(warning) < 300


_PEAK = """
import resource, sys
import auditor
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = auditor.audit(sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(result.runs[0].error, (after - before) * 1024)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kilobytes on Linux only")
def test_a_gigabyte_of_nul_bytes_is_refused_before_it_is_read(two_runs):
    broken, _ = two_runs
    for path in state_files(broken):
        path.write_bytes(b"")
        os.truncate(path, 1 << 30)  # sparse: a gigabyte of NUL bytes that takes no disk

    out = subprocess.run(
        [sys.executable, "-c", _PEAK, str(broken)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    error, growth = out.rsplit(" ", 1)

    assert "trainer_state.json is not valid JSON (it starts with NUL bytes" in error
    assert int(growth) < 50_000_000, f"peak memory grew {int(growth) / 1e6:.0f} MB"


def test_steps_beyond_64_bits_keep_their_checkpoints(two_runs):
    broken, _ = two_runs
    shift = 2**64

    def shifted(text: str) -> str:
        text = re.sub(
            r'("(?:step|global_step|best_global_step)": )(\d+)',
            lambda m: f"{m.group(1)}{int(m.group(2)) + shift}",
            text,
        )
        return re.sub(r"checkpoint-(\d+)", lambda m: f"checkpoint-{int(m.group(1)) + shift}", text)

    for path in state_files(broken):
        path.write_text(shifted(path.read_text()))
    for folder in sorted(broken.glob("checkpoint-*")):
        folder.rename(broken / shifted(folder.name))

    result = cli("scan", "outputs/broken", "--format", "json")

    assert_clean(result)
    (run,) = json.loads(result.stdout)["runs"]
    assert run["verdict"] == "agree"
    assert run["eval_only_pick"]["step"] == 300 + shift
    assert run["eval_only_pick"]["checkpoint"] == f"checkpoint-{300 + shift}"
    assert not any("renamed or copied" in warning for warning in run["warnings"])
