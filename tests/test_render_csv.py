"""The CSV report: the same columns as the DataFrames, one row per run or per step, no formulas."""

from __future__ import annotations

import csv
import io
import math

import pytest

import auditor
from auditor.frame import CHECKPOINT_COLUMNS, RUN_COLUMNS
from auditor.render import csv_report
from conftest import EXAMPLES, FIXTURES


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_one_row_per_run_with_the_frame_columns():
    result = auditor.audit(EXAMPLES, FIXTURES / "sweep", FIXTURES / "evidence")
    text = csv_report.render(result, "runs")
    assert text.splitlines()[0].split(",") == list(RUN_COLUMNS)
    table = rows(text)
    assert len(table) == len(result.runs) == 21
    flagged = next(r for r in table if r["run_dir"].endswith("noisy_dip"))
    assert flagged["verdict"] == "overfit"
    assert flagged["flagged"] == "true"
    assert flagged["eval_only_checkpoint"] == "checkpoint-30"
    assert flagged["scorer_checkpoint"] == "checkpoint-10"
    assert flagged["error"] == ""
    assert flagged["outcome"] == "flagged" and flagged["eval_samples"] == "4"
    assert flagged["decision"].startswith("compare checkpoint-10 with checkpoint-30 ")
    contradicted = next(r for r in table if r["run_dir"].endswith("metric_contradicts"))
    assert contradicted["contradicting_metric"] == "eval_accuracy"
    agreed = next(r for r in table if r["run_dir"].endswith("lm_healthy"))
    assert agreed["outcome"] == agreed["eval_noise"] == agreed["decision"] == ""


def test_one_row_per_step_across_runs_with_the_run_as_a_column():
    result = auditor.audit(FIXTURES / "sweep")
    table = rows(csv_report.render(result, "checkpoints"))
    assert list(table[0]) == list(CHECKPOINT_COLUMNS)
    assert len(table) == sum(len(run.checkpoints) for run in result.runs) == 60
    steps = [(r["run_dir"], int(r["step"])) for r in table]
    assert steps == [(run.run_dir, c.step) for run in result.runs for c in run.checkpoints]
    best = [r for r in table if r["run_dir"].endswith("run-0000") and r["is_best"] == "true"]
    assert [r["checkpoint"] for r in best] == ["checkpoint-400"]


def test_pandas_reads_back_the_values_of_to_frame():
    import pandas as pd

    result = auditor.audit(EXAMPLES / "lm_diverged", EXAMPLES / "lm_multi_eval")
    frame = result.to_frame("checkpoints")
    read = pd.read_csv(io.StringIO(csv_report.render(result, "checkpoints")))
    assert list(read.columns) == list(frame.columns)
    for name, kind in CHECKPOINT_COLUMNS.items():
        if kind == "float":
            expected, got = frame[name].tolist(), read[name].tolist()
            # Diverged steps carry NaN and +inf: both survive the round trip.
            pairs = zip(expected, got, strict=True)
            assert all((math.isnan(a) and math.isnan(b)) or a == b for a, b in pairs), name
    assert math.isinf(read["score"].max())


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+cmd", "'+cmd"),
        ("-cmd|' /C calc'!A0", "'-cmd|' /C calc'!A0"),
        ("-1+1", "'-1+1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("-0.25", "-0.25"),
        ("+3", "+3"),
        ("run-0000", "run-0000"),
        ("", ""),
    ],
)
def test_formula_cells_are_neutralised(text, written):
    assert csv_report.cell(text) == written


def test_tab_and_carriage_return_cannot_start_a_cell():
    # Escaped like the table shows them, so the cell starts with a backslash, not a control.
    assert csv_report.cell("\tcmd") == "\\tcmd"
    assert csv_report.cell("\r=cmd") == "\\r=cmd"


def test_numbers_flags_and_missing_values():
    assert csv_report.cell(None) == ""
    assert csv_report.cell(True) == "true"
    assert csv_report.cell(False) == "false"
    assert csv_report.cell(7) == "7"
    assert csv_report.cell(0.1) == "0.1"
    assert csv_report.cell(-0.1) == "-0.1"
    assert csv_report.cell(float("nan")) == "nan"
    assert csv_report.cell(float("inf")) == "inf"
    assert csv_report.cell(float("-inf")) == "-inf"


def test_a_hostile_folder_name_cannot_run_in_a_spreadsheet(copy_run, tmp_path, monkeypatch):
    name = '=HYPERLINK("http://evil","x")'
    copy_run("real_overfit_flagged", dest=name)
    monkeypatch.chdir(tmp_path)
    table = rows(csv_report.render(auditor.audit(name), "runs"))
    assert table[0]["run_dir"] == "'" + name
    steps = rows(csv_report.render(auditor.audit(name), "checkpoints"))
    assert {r["run_dir"] for r in steps} == {"'" + name}
