"""The terminal table: it fits any width from 80 columns, drops columns in the documented order,
shortens run names in the middle, and keeps the full table when piped."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest
from click.testing import CliRunner

import auditor
from auditor.cli import main
from auditor.render.fit import ELLIPSIS, shorten_middle
from auditor.render.table import CHECKPOINT_HEADERS, RUN_DROP_ORDER, RUN_HEADERS, render
from conftest import EXAMPLES, FIXTURES

DIVERGED = EXAMPLES / "lm_diverged"


@pytest.fixture(scope="module")
def everything() -> auditor.AuditResult:
    return auditor.audit(str(FIXTURES))


def table_lines(text: str) -> list[str]:
    """Return the header and row lines of the run table (up to the first blank line)."""
    return text.split("\n\n")[0].splitlines()


@pytest.mark.parametrize("width", [80, 81, 100, 120, 140])
def test_every_row_fits_the_width_on_one_line(width, everything):
    text = render(everything, width=width)
    lines = table_lines(text)
    assert len(lines) == 2 + len(everything.runs)
    assert all(len(line) <= width for line in text.splitlines())


@pytest.mark.parametrize("width", [80, 100, 120, 140, 160])
def test_columns_drop_in_the_documented_order(width, everything):
    header = table_lines(render(everything, width=width))[0]
    shown = {name for name in RUN_HEADERS if f"  {name}" in f"  {header}"}
    # "numbers" is a pick's numbers, not a column of its own.
    missing = [name for name in RUN_DROP_ORDER if name != "numbers" and name not in shown]
    documented = [name for name in RUN_DROP_ORDER if name != "numbers"]
    assert missing == documented[: len(missing)]
    # The run, both picks and the verdict never go.
    assert {"run", "eval-only pick", "scorer pick", "verdict"} <= shown


def test_at_80_columns_long_names_are_shortened_in_the_middle(everything):
    rows = table_lines(render(everything, width=80))[2:]
    names = [row.split("  ")[0] for row in rows]
    shortened = [name for name in names if ELLIPSIS in name]
    assert shortened, "no name needed shortening at 80 columns"
    labels = [r.label for r in everything.runs]
    for name in shortened:
        # A row is named by its label: the folder, and "(training k/n)" when it holds several.
        # Cut in the middle, it keeps both ends of a label, and is shorter than it.
        head, tail = name.split(ELLIPSIS)
        assert any(
            full.startswith(head) and full.endswith(tail) and len(full) > len(name)
            for full in labels
        ), name


def test_without_a_width_the_table_is_full(everything):
    text = render(everything)
    header = table_lines(text)[0]
    assert all(name in header for name in RUN_HEADERS)
    assert ELLIPSIS not in text
    assert all(run.run_dir in text for run in everything.runs)


@pytest.mark.parametrize(
    ("name", "limit", "expected"),
    [
        ("fixtures/sweep/run-0003", 30, "fixtures/sweep/run-0003"),
        ("fixtures/sweep/run-0003", 20, f"fixtures/{ELLIPSIS}/run-0003"),
        ("outputs/a/b/lr-3e-4/seed-1", 22, f"outputs/{ELLIPSIS}/seed-1"),
        ("outputs/a/b/lr-3e-4/seed-1", 26, "outputs/a/b/lr-3e-4/seed-1"),
        ("a-very-long-single-folder-name", 12, f"a-v{ELLIPSIS}der-name"),
    ],
)
def test_shorten_middle_keeps_both_ends(name, limit, expected):
    assert shorten_middle(name, limit) == expected
    assert len(shorten_middle(name, limit)) <= limit


def test_show_of_a_diverged_run_fits_80_columns_in_scientific_notation():
    result = auditor.audit(str(DIVERGED))
    full = render(result, "checkpoints")
    assert "3.763e+30" in full and "3763350906309389929398080110592" not in full
    assert all(name in full.splitlines()[1] for name in CHECKPOINT_HEADERS)
    narrow = render(result, "checkpoints", width=80)
    assert all(len(line) <= 80 for line in narrow.splitlines())
    rows = narrow.splitlines()[3 : 3 + len(result.runs[0].checkpoints)]
    assert len(rows) == len(result.runs[0].checkpoints)
    # The picks stay marked, as initials the legend explains.
    assert rows[[c.step for c in result.runs[0].checkpoints].index(30)].endswith("EST")
    assert narrow.rstrip("\n").splitlines()[-1].startswith("k: ")
    assert "pick: E eval-only, S scorer, T trainer" in narrow.rstrip("\n").splitlines()[-1]


def test_show_has_a_one_line_legend_for_its_columns():
    text = render(auditor.audit(str(DIVERGED)), "checkpoints")
    legend = text.rstrip("\n").splitlines()[-1]
    for column in ("k:", "c.*:", "ppl:", "gap:"):
        assert column in legend


def on_a_terminal(
    args: list[str],
    columns: int | None,
    rows_cols: tuple[int, int] = (40, 200),
    stderr_too: bool = False,
):
    """Run ckpt-audit with stdout (and with `stderr_too`, stderr) on a real pseudo-terminal;
    return (what the terminal showed, stderr when piped, code)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", *rows_cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    done = subprocess.Popen(
        [sys.executable, "-m", "auditor", *args],
        stdout=follower,
        stderr=follower if stderr_too else subprocess.PIPE,
        env=env,
        cwd=FIXTURES.parent,
    )
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # the terminal closes when the command exits
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    stderr = done.stderr.read().decode() if done.stderr else ""
    code = done.wait(timeout=60)
    return out.decode().replace("\r\n", "\n"), stderr, code


def visible(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


@pytest.mark.parametrize("columns", [80, 120])
def test_on_a_terminal_columns_is_honoured(columns):
    out, _, code = on_a_terminal(["scan", "fixtures/"], columns)
    assert code == 0
    lines = visible(out).splitlines()
    assert max(len(line) for line in lines) <= columns
    assert sum(1 for line in lines if "OVERFIT" in line) == 2


def test_on_a_terminal_without_columns_the_terminal_width_is_used():
    out, _, _ = on_a_terminal(["scan", "fixtures/"], None, rows_cols=(40, 96))
    assert max(len(line) for line in visible(out).splitlines()) <= 96


def test_on_a_terminal_warnings_fit_its_width_and_piped_they_stay_whole():
    shown, _, code = on_a_terminal(["scan", "fixtures/"], 80, stderr_too=True)
    assert code == 0
    lines = visible(shown).splitlines()
    assert any(line.startswith("warning: ") for line in lines)
    assert max(len(line) for line in lines) <= 80

    _, piped, _ = on_a_terminal(["scan", "fixtures/"], 80)
    warnings = [line for line in piped.splitlines() if line.startswith("warning: ")]
    assert max(len(line) for line in warnings) > 80


def test_on_a_terminal_the_summary_and_the_gate_fit_its_width():
    shown, _, code = on_a_terminal(["check", "fixtures/evidence/noisy_dip"], 80, stderr_too=True)
    assert code == 1
    lines = visible(shown).splitlines()
    assert any(line.startswith("gate: FAIL: ") for line in lines)
    assert any(line.startswith("audited 1 run") for line in lines)
    assert max(len(line) for line in lines) <= 80


def test_piped_output_keeps_the_full_table():
    done = CliRunner().invoke(main, ["scan", str(FIXTURES)], env={"COLUMNS": "80"})
    header = done.stdout.splitlines()[0]
    assert all(name in header for name in RUN_HEADERS)
    assert "next:" not in done.stdout


def test_on_a_terminal_a_scan_ends_with_the_next_commands():
    out, _, _ = on_a_terminal(["scan", "fixtures/sweep", "fixtures/real_overfit_flagged"], 200)
    last = visible(out).rstrip("\n").splitlines()[-1]
    assert last == (
        "next: ckpt-audit show fixtures/real_overfit_flagged to see why it is flagged; "
        "ckpt-audit report fixtures/sweep fixtures/real_overfit_flagged -o report.html "
        "for the charts"
    )


def test_next_commands_name_a_run_whose_picks_differ_when_none_is_flagged():
    out, _, _ = on_a_terminal(["scan", "fixtures/examples/trl_sft"], 200)
    assert "ckpt-audit show fixtures/examples/trl_sft to see why its picks differ" in out


def test_quiet_leaves_out_the_next_commands():
    out, _, _ = on_a_terminal(["scan", "-q", "fixtures/sweep"], 200)
    assert "next:" not in out


def test_the_smoothed_pick_is_a_column_and_a_mark_in_show():
    result = auditor.audit(str(EXAMPLES / "cls_accuracy"))
    header, _, row = table_lines(render(result))[:3]
    start = header.index("smoothed pick")
    assert row[start:].split()[0] == "checkpoint-75"
    full = render(result, "checkpoints")
    assert next(x for x in full.splitlines() if x.startswith("75 ")).endswith("  smoothed")
    narrow = render(result, "checkpoints", width=80)
    assert all(len(line) <= 80 for line in narrow.splitlines())
    assert next(x for x in narrow.splitlines() if x.startswith("75 ")).endswith("  M")
    assert "pick: E eval-only, S scorer, M smoothed, T trainer" in narrow.splitlines()
