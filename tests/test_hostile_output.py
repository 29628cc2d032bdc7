"""Hostile folder names and file content never reach a terminal or spreadsheet as commands."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from auditor.cli import main

# Escape sequences (clear screen, recolour, set the window title), a carriage return that
# would overwrite the row, a right-to-left override, a byte that is not UTF-8, a formula.
HOSTILE = os.fsdecode(b"=1+2\x1b[2J\x1b]0;owned\x07\r\xe2\x80\xaeevil\xff")
# What may reach a terminal: no C0/C1 control except the newline, no bidi override, no lone
# surrogate (an undecodable byte).
FORBIDDEN = re.compile(
    r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_terminal_safe(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream
        assert FORBIDDEN.search(stream) is None, FORBIDDEN.findall(stream)


@pytest.fixture
def hostile_tree(copy_run, monkeypatch, tmp_path: Path) -> Path:
    """A flagged run, a run with escape codes in its log keys and a broken run, all in folders
    named with escape codes; returns the folder holding them (the current directory)."""
    monkeypatch.chdir(tmp_path)
    flagged = copy_run("real_overfit_flagged", HOSTILE)
    assert flagged.exists()
    keys = copy_run("examples/lm_healthy", "keys" + HOSTILE)
    for path in keys.rglob("trainer_state.json"):
        text = path.read_text()
        text = text.replace('"eval_loss"', '"eval_\\u001b[2J_loss"', 1)
        text = text.replace('"eval_loss"', '"eval_\\u009b31m_loss"')
        document = json.loads(text)
        document["best_model_checkpoint"] = "\x1b]8;;http://x\x07best\r"
        path.write_text(json.dumps(document))
    broken = copy_run("examples/lm_healthy", "broken" + HOSTILE)
    for path in broken.rglob("trainer_state.json"):
        path.write_bytes(b'{"log_history": [')
    return tmp_path


@pytest.mark.parametrize("fmt", ["table", "csv", "markdown"])
@pytest.mark.parametrize("command", ["scan", "check"])
def test_no_control_character_reaches_the_terminal(hostile_tree, fmt, command):
    result = cli(command, ".", "--format", fmt)

    assert_terminal_safe(result)
    assert result.exit_code == (0 if command == "scan" else 2)
    assert "\\x1b[2J" in result.stdout  # shown as an escape, so the user still sees it
    assert "error: ./broken" in result.stderr
    assert "warning: ./keys" in result.stderr


def test_show_and_its_errors_are_terminal_safe(hostile_tree):
    for run in (HOSTILE, "keys" + HOSTILE, "broken" + HOSTILE):
        result = cli("show", run)
        assert_terminal_safe(result)
    assert result.exit_code == 2
    assert "is not valid JSON" in result.stderr


def test_usage_errors_that_name_a_hostile_path_are_terminal_safe(hostile_tree):
    for args in (
        ("scan", "missing" + HOSTILE),
        ("check", "--deploy", f"{HOSTILE}/checkpoint-999"),
        ("check", "--deploy", f"{HOSTILE}/checkpoint-abc{HOSTILE}"),
        ("check", "--deploy", f"broken{HOSTILE}/checkpoint-300"),
        ("show", "."),
    ):
        result = cli(*args)
        assert_terminal_safe(result)
        assert result.exit_code == 2, args
        assert result.stderr.startswith("error: "), args


def test_deploy_judgement_of_a_hostile_run_is_terminal_safe(hostile_tree):
    result = cli("check", "--deploy", f"{HOSTILE}/checkpoint-90")

    assert_terminal_safe(result)
    assert result.exit_code == 1
    assert "gate: FAIL" in result.stderr


def test_report_file_with_a_hostile_name(hostile_tree):
    output = "report" + HOSTILE + ".txt"
    result = cli("scan", ".", "-o", output)

    assert_terminal_safe(result)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert FORBIDDEN.search(Path(output).read_text(encoding="utf-8")) is None


def test_json_report_is_strict_and_keeps_the_real_names(hostile_tree, copy_run):
    copy_run("examples/lm_diverged")  # NaN and Infinity in its history

    result = cli("scan", ".", "--format", "json")

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON token {token}")

    report = json.loads(result.stdout, parse_constant=refuse)
    names = {os.path.basename(r["run_dir"]) for r in report["runs"]}
    assert {HOSTILE, "keys" + HOSTILE, "broken" + HOSTILE, "lm_diverged"} <= names
    assert "\x1b" not in result.stdout and "\r" not in result.stdout


def test_csv_cells_cannot_run_as_formulas(hostile_tree):
    for view in (("scan", HOSTILE), ("show", HOSTILE)):
        result = cli(*view, "--format", "csv")
        assert result.exit_code == 0
        rows = list(csv.reader(io.StringIO(result.stdout)))
        assert len(rows) > 1
        for row in rows:
            for value in row:
                if value[:1] in ("=", "+", "-", "@"):
                    float(value)  # only a plain number may start with a sign
        assert rows[1][0].startswith("'=1+2")
