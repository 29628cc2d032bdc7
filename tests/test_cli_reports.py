"""Reports from the command line: every format, --output, --sort/--top, colour, job summaries."""

from __future__ import annotations

import csv
import io
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor import terminal
from auditor.cli import main
from auditor.render import RENDERERS
from conftest import EXAMPLES, FIXTURES, expected_rows

REPO = FIXTURES.parent
GOLDEN = REPO / "tests" / "golden"
SWEEP = str(FIXTURES / "sweep")
FLAGGED = str(FIXTURES / "real_overfit_flagged")
#: The runs `SWEEP` and `FLAGGED` hold, and those flagged, as fixtures/EXPECTED.yaml lists them.
_SWEEP_AND_FLAGGED = [
    want
    for name, want, _ in expected_rows()
    if name.startswith("sweep/") or name == "real_overfit_flagged"
]
SWEEP_AND_FLAGGED = len(_SWEEP_AND_FLAGGED)
FLAGGED_AMONG_THEM = sum(want["outcome"] == "flagged" for want in _SWEEP_AND_FLAGGED)
HEALTHY = str(EXAMPLES / "lm_healthy")
ANSI = "\x1b["


def invoke(*args: str, env: dict[str, str] | None = None, color: bool = False):
    base = {"GITHUB_STEP_SUMMARY": "", "NO_COLOR": ""}
    return CliRunner().invoke(main, list(args), env={**base, **(env or {})}, color=color)


def test_format_choices_come_from_the_registry():
    result = invoke("scan", "--help")
    assert result.exit_code == 0
    for fmt in RENDERERS:
        assert fmt in result.stdout
    assert {"table", "json", "csv", "markdown", "junit"} <= set(RENDERERS)


@pytest.mark.parametrize("command", ["scan", "show", "check"])
@pytest.mark.parametrize("fmt", ["csv", "markdown", "junit"])
def test_every_format_on_every_reporting_command(command, fmt):
    result = invoke(command, FLAGGED, "--format", fmt)
    assert result.exit_code == (1 if command == "check" else 0), result.stderr
    assert "audited 1 run: 1 overfit" in result.stderr
    assert "audited" not in result.stdout
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        # show gives one row per evaluated step; scan and check one per run.
        assert len(rows) == (10 if command == "show" else 1)
        assert {row["verdict"] for row in rows} == {"overfit"}
    elif fmt == "markdown":
        assert result.stdout.startswith("### Checkpoint audit: 1 of 1 run flagged\n")
    else:
        root = ET.fromstring(result.stdout.encode())
        assert root.get("failures") == "1"


def test_scan_csv_matches_the_reviewed_golden_file(monkeypatch):
    monkeypatch.chdir(REPO)
    result = invoke("scan", "fixtures/sweep", "fixtures/evidence", "--format", "csv")
    assert result.exit_code == 0
    assert result.stdout == (GOLDEN / "sweep.csv").read_text()


def test_scan_per_checkpoint_csv_has_every_step_with_its_run():
    result = invoke("scan", SWEEP, "--per-checkpoint", "--format", "csv", "-q")
    assert result.exit_code == 0
    assert result.stderr == ""
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 60
    assert len({row["run_dir"] for row in rows}) == 6
    assert sum(row["is_best"] == "true" for row in rows) == 6


def test_scan_sort_and_top_trim_the_table_but_not_the_summary():
    result = invoke("scan", SWEEP, "--sort", "score", "--top", "2")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    rows = lines[2:4]
    assert rows[0].startswith(str(Path(SWEEP) / "run-0001"))
    assert lines[4] == ""
    assert lines[-1].startswith(f"best of {SWEEP} (6 runs on eval_loss) by score: ")
    # between the table and the sweep's best: the decisions of the shown runs only
    shown = [row.split()[0] for row in rows]
    assert all(line.split(": ")[0] in shown for line in lines[5:-2])
    assert lines[-2] == ""
    assert "audited 6 runs: 2 differs, 4 agree" in result.stderr


def test_scan_top_in_json_keeps_the_sweep_best_of_all_runs():
    full = json.loads(invoke("scan", SWEEP, "--format", "json", "-q").stdout)
    top = json.loads(
        invoke("scan", SWEEP, "--format", "json", "-q", "--sort", "gap", "--top", "1").stdout
    )
    assert [run["run_dir"] for run in top["runs"]] == [str(Path(SWEEP) / "run-0003")]
    assert top["sweep_best"] == full["sweep_best"]
    assert [g["by_score"]["checkpoint"] for g in full["sweep_best"]] == ["checkpoint-1000"]


@pytest.mark.parametrize("args", [["--top", "0"], ["--sort", "name"]])
def test_bad_sort_or_top_is_a_usage_error(args):
    result = invoke("scan", SWEEP, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Invalid value" in result.stderr


def test_output_into_a_missing_folder_is_exit_2_naming_the_path(tmp_path):
    target = tmp_path / "no" / "such" / "report.csv"
    result = invoke("scan", SWEEP, "--format", "csv", "-o", str(target))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"error: cannot write {target}" in result.stderr
    assert not target.parent.exists()


def test_output_into_a_read_only_folder_is_exit_2(tmp_path):
    if os.geteuid() == 0:
        # root writes through file modes; sysfs refuses even root.
        folder = Path("/sys")
    else:
        folder = tmp_path / "locked"
        folder.mkdir()
        folder.chmod(0o555)
    target = folder / "ckpt-audit-report.md"
    result = invoke("check", FLAGGED, "--format", "markdown", "-o", str(target))
    assert result.exit_code == 2
    assert f"error: cannot write {target}" in result.stderr
    assert not target.exists()


def test_a_failed_write_leaves_the_existing_file_untouched(tmp_path, monkeypatch):
    target = tmp_path / "audit.json"
    target.write_text("previous report\n")

    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("auditor.report_file.os.replace", full_disk)
    result = invoke("scan", SWEEP, "--format", "json", "-o", str(target))
    assert result.exit_code == 2
    assert f"cannot write {target}: No space left on device" in result.stderr
    assert target.read_text() == "previous report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.json"]


def test_output_file_gets_the_whole_report(tmp_path):
    target = tmp_path / "junit.xml"
    result = invoke("check", SWEEP, FLAGGED, "--format", "junit", "-o", str(target))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"report written to {target}" in result.stderr
    assert ET.parse(target).getroot().get("tests") == str(SWEEP_AND_FLAGGED)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.json", "json"),
        ("a.csv", "csv"),
        ("a.md", "markdown"),
        ("a.XML", "junit"),
        ("a.txt", "table"),
    ],
)
def test_output_takes_the_format_its_suffix_names(tmp_path, name, fmt):
    target = tmp_path / name
    written = invoke("scan", SWEEP, FLAGGED, "-o", str(target))
    printed = invoke("scan", SWEEP, FLAGGED, "--format", fmt)
    assert written.exit_code == printed.exit_code == 0, written.stderr
    assert target.read_text() == printed.stdout


def test_format_given_wins_over_the_suffix(tmp_path):
    target = tmp_path / "audit.json"
    result = invoke("scan", FLAGGED, "--format", "csv", "-o", str(target))
    assert result.exit_code == 0, result.stderr
    assert next(csv.DictReader(io.StringIO(target.read_text())))["verdict"] == "overfit"


def test_an_html_suffix_writes_the_page(tmp_path):
    target = tmp_path / "audit.html"
    result = invoke("check", FLAGGED, "-o", str(target))
    assert result.exit_code == 1, result.stderr
    assert target.read_text().lstrip().lower().startswith("<!doctype html>")


def test_check_appends_its_summary_to_the_github_step_summary(tmp_path):
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    result = invoke("check", SWEEP, FLAGGED, "-q", env=env)
    assert result.exit_code == 1
    assert result.stdout.startswith("run ")
    text = summary.read_text()
    heading = f"### Checkpoint audit: {FLAGGED_AMONG_THEM} of {SWEEP_AND_FLAGGED} runs flagged"
    assert text.startswith(f"earlier step\n{heading}\n")
    assert "| **OVERFIT** |" in text and ": compare checkpoint-30 with checkpoint-90 " in text


def test_no_step_summary_turns_it_off(tmp_path):
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    result = invoke("check", HEALTHY, "--no-step-summary", env=env)
    assert result.exit_code == 0
    assert summary.read_text() == "earlier step\n"


def test_an_unwritable_step_summary_warns_and_the_gate_still_decides(tmp_path):
    env = {"GITHUB_STEP_SUMMARY": str(tmp_path / "missing" / "summary.md")}
    result = invoke("check", FLAGGED, env=env)
    assert result.exit_code == 1
    assert "warning: GITHUB_STEP_SUMMARY: cannot append to" in result.stderr
    assert "gate: FAIL" in result.stderr


def test_color_only_when_asked_or_on_a_terminal(monkeypatch):
    coloured = invoke("scan", SWEEP, FLAGGED, "--color", color=True)
    line = next(x for x in coloured.stdout.splitlines() if "real_overfit_flagged " in x)
    assert "\x1b[31m" in line and line.endswith("OVERFIT\x1b[0m")
    assert ANSI not in coloured.stderr
    plain = invoke("scan", SWEEP, "--no-color", color=True)
    assert ANSI not in plain.stdout
    # Not a terminal (CliRunner's stdout): no colour by default.
    assert ANSI not in invoke("scan", SWEEP, color=True).stdout
    # Other formats never carry colour codes.
    assert ANSI not in invoke("scan", SWEEP, "--color", "--format", "csv", color=True).stdout


@pytest.mark.parametrize(
    ("tty", "no_color", "fmt", "output", "expected"),
    [
        (True, "", "table", None, True),
        (True, "1", "table", None, False),
        (False, "", "table", None, False),
        (True, "", "markdown", None, False),
        (True, "", "table", "report.txt", False),
    ],
)
def test_default_colour_needs_a_terminal_and_no_no_color(
    monkeypatch, tty, no_color, fmt, output, expected
):
    monkeypatch.setattr(terminal.sys.stdout, "isatty", lambda: tty)
    monkeypatch.setenv("NO_COLOR", no_color)
    assert terminal.use_color(fmt, output) is expected


def test_quiet_leaves_only_the_report(tmp_path):
    result = invoke("scan", str(FIXTURES), "-q")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert "auditing runs" not in result.stdout


def test_no_progress_line_when_stderr_is_not_a_terminal():
    result = invoke("scan", str(FIXTURES))
    assert "auditing runs" not in result.stderr


def test_config_command_prints_a_complete_commented_file():
    result = invoke("config")
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout.startswith("# checkpoint-auditor config")
    assert "\nfail_on:\n- overfit\n" in result.stdout


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_a_streamed_scan_reports_what_the_whole_audit_does(fmt: str) -> None:
    # --sort run audits every run before rendering; without it the report is written as the
    # runs are audited. Runs are found in folder order, so both reports must be the same.
    runner = CliRunner()
    streamed = runner.invoke(main, ["scan", str(FIXTURES), "--format", fmt])
    whole = runner.invoke(main, ["scan", str(FIXTURES), "--format", fmt, "--sort", "run"])
    assert streamed.exit_code == whole.exit_code == 0
    assert streamed.stdout == whole.stdout
    assert streamed.stderr == whole.stderr
