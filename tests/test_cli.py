"""The ckpt-audit command end to end: stdout, stderr and exit code, on the bundled fixtures."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.results import VERDICT_ORDER
from conftest import EXAMPLES, FIXTURES, drop_evaluations, expected_rows

EXPECTED = [want for _, want, _ in expected_rows()]
README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
FLAGGED = str(FIXTURES / "real_overfit_flagged")
HEALTHY = str(EXAMPLES / "lm_healthy")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def test_scan_prints_one_row_per_run_and_a_summary():
    result = invoke("scan", str(FIXTURES))
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["run", "ckpts", "evals"]
    # header, rule, one row per run, then a blank line; the best checkpoint of each group of
    # comparable runs (two or more in one folder on one eval key) closes the report
    assert lines[2 + len(EXPECTED)] == ""
    judged = Counter(
        (os.path.dirname(name), want.get("eval_key", "eval_loss"))
        for name, want, _ in expected_rows()
        if want["eval_only"] is not None
    )
    groups = sum(1 for runs in judged.values() if runs > 1)
    assert all(line.startswith("best of ") for line in lines[-groups:])
    assert not lines[-groups - 1].startswith("best of ")
    flagged = next(line for line in lines if "real_overfit_flagged " in line)
    assert "checkpoint-90 (eval 2.721, overfit 0.34)" in flagged
    assert "checkpoint-30 (eval 2.725, overfit 0.14)" in flagged
    assert flagged.rstrip().endswith("OVERFIT")
    # below the table, one decision per run whose picks differ
    for name, want, _ in expected_rows():
        if want["verdict"] in ("overfit", "differs"):
            said = [line for line in lines if line.startswith(f"{FIXTURES / name}: ")]
            assert len(said) == 1 and any(
                f" {verb} " in said[0] for verb in ("ship", "keep", "compare")
            ), name
    # One row per training; the folders are counted too when one holds several trainings.
    rows = expected_rows()
    verdicts = Counter(want["verdict"] for _, want, _ in rows)
    summary = ", ".join(f"{verdicts[v]} {v}" for v in VERDICT_ORDER if verdicts[v])
    folders = len({name for name, _, _ in rows})
    counted = f"{len(rows)} runs" + (f" in {folders} folders" if folders != len(rows) else "")
    assert f"audited {counted}: {summary}" in result.stderr
    assert "warning:" in result.stderr and "warning:" not in result.stdout


def test_the_summary_counts_folders_only_when_one_holds_several_trainings():
    two = invoke("scan", str(FIXTURES / "real_two_trainings"), "--format", "json")
    assert len(json.loads(two.stdout)["runs"]) == 2
    assert "audited 2 runs in 1 folder: 2 agree" in two.stderr
    one_each = invoke("scan", str(FIXTURES / "sweep"), FLAGGED, "--format", "json")
    runs = len(json.loads(one_each.stdout)["runs"])
    assert f"audited {runs} runs: 1 overfit, " in one_each.stderr


def test_scan_json_on_stdout_only():
    result = invoke("scan", FLAGGED, "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    run = data["runs"][0]
    assert run["verdict"] == "overfit" and run["flagged"] is True
    assert run["eval_only_pick"] == {"checkpoint": "checkpoint-90", "step": 90}
    assert run["scorer_pick"] == {"checkpoint": "checkpoint-30", "step": 30}
    assert run["evidence"]["outcome"] == "flagged"
    assert "audited 1 run" in result.stderr


def test_quiet_silences_warnings_and_summary():
    result = invoke("scan", str(EXAMPLES / "lm_diverged"), "-q")
    assert result.exit_code == 0 and result.stderr == ""


def test_eval_key_option():
    result = invoke(
        "scan", str(EXAMPLES / "lm_multi_eval"), "--eval-key", "eval_ood_loss", "--format", "json"
    )
    run = json.loads(result.stdout)["runs"][0]
    assert run["eval_key"] == "eval_ood_loss" and run["verdict"] != "no_candidates"


@pytest.mark.parametrize("args", [("scan", "/nonexistent/outputs"), ("check", "/nonexistent")])
def test_missing_path_is_exit_2_with_a_message(args):
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "error: /nonexistent" in result.stderr and "no such file or folder" in result.stderr


def test_no_run_found_is_exit_2(tmp_path):
    result = invoke("scan", str(tmp_path))
    assert result.exit_code == 2
    assert "no Trainer run found" in result.stderr


def test_show_lists_every_evaluation_with_components_and_marks():
    result = invoke("show", str(EXAMPLES / "lm_epoch_strategy"))
    assert result.exit_code == 0
    rows = [line for line in result.stdout.splitlines() if re.match(r"^\d+\s", line)]
    assert len(rows) == 20
    assert next(r for r in rows if r.startswith("42 ")).rstrip().endswith("scorer")
    assert next(r for r in rows if r.startswith("54 ")).rstrip().endswith("eval-only, trainer")
    header = result.stdout.splitlines()[1]
    for column in ("c.eval", "c.gap", "c.ppl", "c.improv", "score"):
        assert column in header


def test_show_refuses_a_folder_of_several_runs():
    result = invoke("show", str(FIXTURES / "sweep"))
    assert result.exit_code == 2
    assert "holds 6 runs" in result.stderr


def test_a_folder_of_exactly_two_runs_is_named_without_an_ellipsis(tmp_path):
    for name in ("a", "b"):
        shutil.copytree(FIXTURES / "sweep" / "run-0001", tmp_path / name)
    result = invoke("show", str(tmp_path))
    assert result.exit_code == 2
    assert f"holds 2 runs ({tmp_path / 'a'}, {tmp_path / 'b'}); show takes one" in result.stderr


def test_a_stray_file_is_an_error_row_and_an_empty_folder_a_warning(tmp_path):
    (tmp_path / "README.md").write_text("# outputs\n")
    (tmp_path / "empty").mkdir()
    stray, empty = str(tmp_path / "README.md"), str(tmp_path / "empty")

    result = invoke("scan", HEALTHY, empty, stray, "--format", "json")

    assert result.exit_code == 0
    runs = json.loads(result.stdout)["runs"]
    assert [(r["run_dir"], r["verdict"]) for r in runs] == [(HEALTHY, "agree"), (stray, "error")]
    assert "is not a folder or a trainer_state.json" in runs[1]["error"]
    assert f"warning: {empty}: no Trainer run below it" in result.stderr
    assert f"warning: {HEALTHY}:" not in result.stderr
    gate = invoke("check", HEALTHY, stray)
    assert gate.exit_code == 2  # the gate fails closed on what it could not read


def test_two_trainings_in_one_folder_are_two_rows_and_one_warning():
    two = FIXTURES / "real_two_trainings"
    result = invoke("scan", str(two))
    assert result.exit_code == 0
    rows = [line for line in result.stdout.splitlines() if line.startswith(str(two))]
    assert [row.split(")")[0] + ")" for row in rows] == [
        f"{two} (training 1/2)",
        f"{two} (training 2/2)",
    ]
    assert result.stderr.count("holds 2 trainings") == 1
    assert "the Trainer's best, checkpoint-40, was overwritten by a later training" in (
        result.stderr
    )
    shown = invoke("show", str(two))
    assert shown.exit_code == 0
    assert shown.stdout.count("(training ") == 2
    report = json.loads(invoke("scan", str(two), "--format", "json").stdout)
    assert [(r["training"], r["trainings"]) for r in report["runs"]] == [(1, 2), (2, 2)]


def test_check_passes_a_healthy_run():
    result = invoke("check", HEALTHY)
    assert result.exit_code == 0
    assert "gate: pass" in result.stderr


def test_check_fails_a_flagged_run():
    result = invoke("check", str(FIXTURES / "sweep"), FLAGGED)
    assert result.exit_code == 1
    assert "gate: FAIL" in result.stderr and "real_overfit_flagged" in result.stderr
    assert invoke("check", str(FIXTURES / "sweep")).exit_code == 0


def test_check_fails_a_run_that_was_never_evaluated(copy_run):
    run = drop_evaluations(copy_run("examples/lm_healthy"))
    result = invoke("check", str(run))
    assert result.exit_code == 1
    assert "no_candidates" in result.stderr


def test_an_eval_key_no_run_logs_is_a_usage_error():
    for command in ("check", "scan"):
        result = invoke(command, str(FIXTURES / "sweep"), "--eval-key", "eval_los")
        assert result.exit_code == 2, command
        assert result.stdout == ""
        assert "eval_los" in result.stderr and "eval_loss" in result.stderr
    json_scan = invoke("scan", str(FIXTURES), "--eval-key", "eval_los", "--format", "json")
    assert json_scan.exit_code == 2 and json_scan.stdout == ""


def test_a_sweep_mixing_several_eval_sets_and_plain_runs_needs_no_option(tmp_path):
    import shutil

    for name in ("lm_multi_eval", "lm_healthy"):
        shutil.copytree(EXAMPLES / name, tmp_path / name)
    result = invoke("scan", str(tmp_path), "--format", "json")
    runs = {Path(r["run_dir"]).name: r for r in json.loads(result.stdout)["runs"]}
    assert runs["lm_multi_eval"]["eval_key"] == "eval_in_domain_loss"
    assert runs["lm_healthy"]["eval_key"] == "eval_loss"
    assert {r["verdict"] for r in runs.values()} == {"agree"}


def test_check_fails_closed_on_an_unreadable_run(copy_run):
    run = copy_run("examples/lm_healthy")
    for state in run.rglob("trainer_state.json"):
        state.write_bytes(b"")
    result = invoke("check", str(run), HEALTHY)
    assert result.exit_code == 2
    assert "could not be read" in result.stderr
    assert invoke("check", str(run), HEALTHY, "--allow-unreadable").exit_code == 0


def test_check_deploy_judges_the_checkpoint_you_ship():
    shipped = invoke("check", "--deploy", f"{FLAGGED}/checkpoint-90")
    assert shipped.exit_code == 1
    assert "deploy checkpoint-90: FAIL: compare checkpoint-30 with checkpoint-90 " in shipped.stdout
    preferred = invoke("check", "--deploy", f"{FLAGGED}/checkpoint-30")
    assert preferred.exit_code == 0
    assert "scorer's pick" in preferred.stdout


CLS = str(EXAMPLES / "cls_accuracy")  # eval-only pick checkpoint-50, smoothed pick checkpoint-75


def test_check_deploy_names_the_smoothed_pick_when_another_checkpoint_is_shipped():
    advice = "the smoothed eval minimum is checkpoint-75 (lowest 3-point mean eval loss "
    other = invoke("check", "--deploy", f"{CLS}/checkpoint-50")
    assert other.exit_code == 0  # the advice leaves the gate alone
    line = next(x for x in other.stderr.splitlines() if x.startswith(advice))
    assert line.endswith("); see docs/selection.md")
    assert advice not in other.stdout
    # Shipping the smoothed pick itself, or from a run too short to have one: no advice.
    itself = invoke("check", "--deploy", f"{CLS}/checkpoint-75")
    assert itself.exit_code == 1 and "smoothed" not in itself.stderr
    short = invoke("check", "--deploy", f"{FLAGGED}/checkpoint-90")
    assert short.exit_code == 1 and "smoothed" not in short.stderr


def test_check_deploy_of_a_non_checkpoint_is_an_error():
    result = invoke("check", "--deploy", HEALTHY)
    assert result.exit_code == 2
    assert "not a checkpoint folder" in result.stderr


def test_output_file_gets_the_report_and_stdout_stays_empty(tmp_path):
    target = tmp_path / "audit.json"
    result = invoke("scan", FLAGGED, "--format", "json", "-o", str(target))
    assert result.exit_code == 0 and result.stdout == ""
    assert json.loads(target.read_text())["runs"][0]["verdict"] == "overfit"
    assert f"report written to {target}" in result.stderr


def test_python_dash_m_runs_the_same_command():
    done = subprocess.run(
        [sys.executable, "-m", "auditor", "check", HEALTHY, "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == ""


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_command_has_help_with_an_example_and_a_readme_entry(name):
    result = invoke(name, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert f"ckpt-audit {name}" in README


def test_every_option_is_in_the_readme():
    for command in main.commands.values():
        for param in command.params:
            if isinstance(param, click.Option) and "--help" not in param.opts:
                assert any(opt in README for opt in param.opts), (command.name, param.opts)


def test_streamed_json_report_is_the_library_report(tmp_path):
    import auditor
    from auditor.render import render

    expected = render(auditor.audit(str(FIXTURES)), "json")
    result = invoke("scan", str(FIXTURES), "--format", "json")
    assert result.exit_code == 0
    assert result.stdout == expected
    target = tmp_path / "audit.json"
    assert invoke("scan", str(FIXTURES), "--format", "json", "-o", str(target)).exit_code == 0
    assert target.read_text() == expected
    sorted_runs = json.loads(
        invoke("scan", str(FIXTURES), "--format", "json", "--sort", "score").stdout
    )["runs"]
    assert sorted(r["run_dir"] for r in sorted_runs) == sorted(
        r["run_dir"] for r in json.loads(expected)["runs"]
    )


def test_table_names_the_settings_that_differ_from_the_defaults(tmp_path):
    config = tmp_path / "strict.yaml"
    config.write_text("min_gap_delta: 0.2\nweights:\n  gap: 0.5\n")
    default = invoke("scan", str(FIXTURES / "sweep"), "-q")
    assert "config:" not in default.stdout
    strict = invoke("scan", str(FIXTURES / "sweep"), "-q", "--config", str(config))
    last = strict.stdout.splitlines()[-1]
    assert last == "config: weights.gap 0.5; min_gap_delta 0.2 (the rest as default)"
