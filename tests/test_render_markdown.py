"""The Markdown summary: flagged runs first, picks with gaps, names that cannot break the page."""

from __future__ import annotations

import os
import re

import yaml

import auditor
from auditor.config import Config
from auditor.render import markdown
from conftest import EXAMPLES, FIXTURES, expected_rows

GOLDEN = FIXTURES.parent / "tests" / "golden"
REPO = FIXTURES.parent


def audit_relative(*paths: str, config: Config | None = None) -> auditor.AuditResult:
    """Audit paths given relative to the repository, as a user in its root would."""
    here = os.getcwd()
    os.chdir(REPO)
    try:
        return auditor.audit(*paths, config=config)
    finally:
        os.chdir(here)


def cells(line: str) -> list[str]:
    """Split a table row on the pipes GitHub treats as cell borders (not escaped ones)."""
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def test_sweep_summary_matches_the_reviewed_golden_file():
    text = markdown.render(audit_relative("fixtures/sweep", "fixtures/evidence"), "runs")
    assert text == (GOLDEN / "sweep.md").read_text()


def test_flagged_runs_come_first_with_each_pick_and_its_gap():
    flagged = FIXTURES / "real_overfit_flagged"
    text = markdown.render(auditor.audit(EXAMPLES, FIXTURES / "sweep", flagged), "runs")
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert cells(table[0]) == [
        " run ",
        " verdict ",
        " eval-only pick ",
        " scorer pick ",
        " smoothed pick ",
        " trainer best ",
    ]
    first = cells(table[1])
    assert "real_overfit_flagged" in first[0] and first[1].strip() == "**OVERFIT**"
    assert first[2].strip() == "checkpoint-90 (eval 2.721, overfit 0.34)"
    assert first[3].strip() == "checkpoint-30 (eval 2.725, overfit 0.14)"
    assert first[4].strip() == "-"  # 10 evaluations: too few for a smoothed pick
    smoothed = next(cells(row) for row in table if "cls_accuracy" in row)
    assert smoothed[4].strip() == "checkpoint-75"
    audited = [
        want
        for name, want, _ in expected_rows()
        if name.startswith(("examples/", "sweep/")) or name == "real_overfit_flagged"
    ]
    flagged_count = sum(want["verdict"] == "overfit" for want in audited)
    assert len(table) == 1 + len(audited)
    assert text.startswith(
        f"### Checkpoint audit: {flagged_count} of {len(audited)} runs flagged\n"
    )
    decisions = [line for line in text.splitlines() if line.startswith("- `")]
    assert decisions[0].startswith(f"- `{flagged}`: compare checkpoint-30 with checkpoint-90 ")


def test_the_sweep_best_closes_the_summary():
    text = markdown.render(auditor.audit(FIXTURES / "sweep"), "runs")
    line = next(x for x in text.splitlines() if x.startswith("**Best of `"))
    assert "run-0001/checkpoint-1000" in line and "score 0.1520" in line


def test_the_config_is_recorded_as_yaml():
    config = Config().replace(min_gap_delta=0.25, fail_on=["overfit", "differs"])
    text = markdown.render(auditor.audit(FIXTURES / "sweep", config=config), "runs")
    block = text.split("```yaml\n", 1)[1].split("\n```", 1)[0]
    assert yaml.safe_load(block) == config.to_dict()


def test_checkpoint_view_has_one_table_per_run_with_every_step():
    result = auditor.audit(FIXTURES / "sweep" / "run-0000")
    text = markdown.render(result, "checkpoints")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "step" not in line]
    assert len(rows) == len(result.runs[0].checkpoints) == 10
    row_500 = next(cells(r) for r in rows if cells(r)[0].strip() == "500")
    assert row_500[-1].strip() == "eval-only, trainer"


def test_hostile_folder_names_stay_inside_their_cell(copy_run):
    name = "a|b*c_d [x](e) <img> `t` @team #1"
    run = copy_run("real_overfit_flagged", dest=name)
    text = markdown.render(auditor.audit(run), "runs")
    row = next(line for line in text.splitlines() if line.startswith("| `"))
    assert len(cells(row)) == 6
    assert "a\\|b*c_d [x](e) <img> `t` @team #1" in row
    # A longer fence than any backtick run keeps the name one code span.
    assert "``" in row


def test_escaped_text_and_code_spans():
    assert markdown.text("a|b*c_[x]<y>") == "a\\|b\\*c\\_\\[x\\]\\<y\\>"
    assert markdown.code("x`y") == "``x`y``"
    assert markdown.code("`x") == "`` `x ``"
    assert markdown.code("a|b") == "`a\\|b`"
    assert markdown.code("a|b", cell=False) == "`a|b`"
    assert markdown.code("bad\x1b[31m") == "`bad\\x1b[31m`"


def test_unreadable_runs_are_listed_with_their_reason(copy_run):
    run = copy_run("sweep/run-0001")
    (run / "trainer_state.json").write_text("{not json")
    for checkpoint in run.glob("checkpoint-*"):
        (checkpoint / "trainer_state.json").write_text("{not json")
    text = markdown.render(auditor.audit(run), "runs")
    assert "| **error** |" in text
    assert "**Unreadable runs**" in text and "1 unreadable" in text
