"""DataFrames of an audit: typed columns, NaN for missing, pandas imported only when asked for."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest

import auditor
from auditor.frame import CHECKPOINT_COLUMNS, RUN_COLUMNS
from auditor.results import AuditResult
from conftest import EXAMPLES, FIXTURES, expected_rows

EXPECTED_DTYPES = {"str": "string", "int": "Int64", "float": "float64", "bool": "bool"}
ROWS = expected_rows()


@pytest.fixture(scope="module")
def result() -> AuditResult:
    return auditor.audit(FIXTURES)


def test_run_frame_has_one_typed_row_per_run(result):
    frame = result.to_frame()
    assert len(frame) == len(ROWS)
    assert list(frame.columns) == list(RUN_COLUMNS)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == {
        name: EXPECTED_DTYPES[kind] for name, kind in RUN_COLUMNS.items()
    }
    wanted = {(str(FIXTURES / name), training): want for name, want, training in ROWS}
    flagged = frame[frame["flagged"]]
    assert sorted(zip(flagged["run_dir"], flagged["training"], strict=True)) == sorted(
        key for key, want in wanted.items() if want["verdict"] == "overfit"
    )
    for _, row in flagged.iterrows():
        want = wanted[row["run_dir"], row["training"]]
        assert (row["scorer_step"], row["outcome"]) == (want["scorer"], "flagged")
    counts: dict[str, int] = {}
    for want in wanted.values():
        counts[want["verdict"]] = counts.get(want["verdict"], 0) + 1
    assert frame["verdict"].value_counts().to_dict() == counts


def test_missing_values_are_nan_and_na(result):
    frame = result.to_frame().set_index("run_dir")
    agreed = frame.loc[str(EXAMPLES / "lm_healthy")]
    assert math.isnan(agreed["eval_noise"]) and agreed["outcome"] is pd.NA
    assert agreed["eval_samples"] is pd.NA
    assert agreed["error"] is pd.NA
    assert frame["checkpoints"].dtype == "Int64"


def test_checkpoint_frame_has_every_step_of_every_run(result):
    frame = result.to_frame(level="checkpoints")
    assert len(frame) == sum(len(run.checkpoints) for run in result.runs)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == {
        name: EXPECTED_DTYPES[kind] for name, kind in CHECKPOINT_COLUMNS.items()
    }
    # One scorer's pick per run that has candidates.
    picks = frame[frame["is_best"]].groupby(["run_dir", "training"]).size()
    with_picks = [name for name, want, _ in ROWS if want["scorer"] is not None]
    assert len(picks) == len(with_picks) and set(picks) == {1}


def test_diverged_steps_keep_nan_loss_and_infinite_score():
    frame = auditor.audit(EXAMPLES / "lm_diverged").to_frame("checkpoints")
    diverged = frame[frame["step"] >= 70]
    assert len(diverged) == 10
    assert not diverged["eval_loss"].map(math.isfinite).any()
    assert (diverged["score"] == math.inf).all()
    assert diverged["c_eval"].isna().all()


def test_an_empty_result_still_has_the_typed_columns():
    frame = AuditResult(()).to_frame("checkpoints")
    assert len(frame) == 0
    assert str(frame["step"].dtype) == "Int64" and str(frame["eval_loss"].dtype) == "float64"


def test_an_unknown_level_is_refused(result):
    with pytest.raises(ValueError, match="level must be one of runs, checkpoints"):
        result.to_frame("steps")


def test_pandas_is_imported_only_for_a_frame():
    code = (
        "import sys, auditor\n"
        "from auditor.render import render\n"
        f"result = auditor.audit({str(FIXTURES / 'sweep')!r})\n"
        "for fmt in ('table', 'json', 'csv', 'markdown', 'junit'):\n"
        "    render(result, fmt)\n"
        "assert 'pandas' not in sys.modules, 'imported by a report'\n"
        "result.to_frame()\n"
        "assert 'pandas' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_cli_never_imports_pandas_for_csv():
    code = (
        "import sys\n"
        "from auditor.cli import main\n"
        "try:\n"
        f"    main(['scan', {str(FIXTURES)!r}, '--per-checkpoint', '--format', 'csv', '-q'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stdout.flush()\n"
        "print('pandas' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stderr.strip().splitlines()[-1] == "False"
    assert done.stdout.splitlines()[0].startswith("run_dir,training,verdict,step,")


def test_the_smoothed_pick_has_its_columns_at_both_levels(result):
    runs = result.to_frame().set_index(["run_dir", "training"])
    wanted = {(str(FIXTURES / name), n): want["smoothed"] for name, want, n in ROWS}
    for key, step in wanted.items():
        row = runs.loc[key]
        if step is None:
            assert row["smoothed_step"] is pd.NA and row["smoothed_checkpoint"] is pd.NA
        else:
            assert row["smoothed_step"] == step
            assert row["smoothed_checkpoint"] == f"checkpoint-{step}"
    cls = runs.loc[str(EXAMPLES / "cls_accuracy"), 1]
    assert cls["smoothed_eval_loss"] > cls["eval_only_eval_loss"]
    steps = result.to_frame(level="checkpoints")
    marked = steps[steps["is_smoothed_pick"]]
    found = zip(marked["run_dir"], marked["training"], marked["step"], strict=True)
    assert sorted(found) == sorted((*key, step) for key, step in wanted.items() if step)
