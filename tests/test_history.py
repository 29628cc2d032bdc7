"""The SQLite history: audits appended to one file, every field of the JSON report kept, another
program's file refused, and a failed append leaving the file as it was."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

import auditor
from auditor import history
from auditor.cli import main
from conftest import FIXTURES

README = FIXTURES.parent / "README.md"
SWEEP = str(FIXTURES / "sweep")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def rows(path: Path, query: str, *params: object) -> list[sqlite3.Row]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(query, params).fetchall()
    finally:
        db.close()


def columns_of(record: dict, prefix: str = "") -> dict[str, object]:
    """Return the columns a JSON report record should become (objects flattened with _)."""
    found: dict[str, object] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            found.update(columns_of(value, f"{prefix}{key}_"))
        elif isinstance(value, list):
            found[f"{prefix}{key}"] = json.dumps(value)
        else:
            found[f"{prefix}{key}"] = value
    return found


def assert_stored(row: sqlite3.Row, record: dict) -> None:
    """Assert that `row` holds every field of a JSON report record."""
    # A Row's `in` looks at its values: ask its column names.
    names = list(row.keys())
    for column, value in columns_of(record).items():
        if value is None and column not in names:
            # An object missing here (no pick, no score) is its columns, all NULL.
            nested = [name for name in names if name.startswith(f"{column}_")]
            assert nested and all(row[name] is None for name in nested), column
            continue
        expected = pytest.approx(value) if isinstance(value, float) else value
        assert row[column] == expected, column


def test_each_audit_is_appended_with_every_field_of_the_json_report(tmp_path):
    path = tmp_path / "audit.sqlite"
    assert invoke("scan", str(FIXTURES), "-q", "-o", str(path)).exit_code == 0
    one = str(FIXTURES / "sweep" / "run-0001")
    assert invoke("show", one, "-q", "--format", "sqlite", "-o", str(path)).exit_code == 0
    audits = rows(path, "SELECT * FROM audits ORDER BY id")
    assert [json.loads(a["paths"]) for a in audits] == [[str(FIXTURES)], [one]]
    assert all(a["tool_version"] == auditor.__version__ for a in audits)
    report = json.loads(invoke("scan", str(FIXTURES), "-q", "--format", "json").stdout)
    assert json.loads(audits[0]["config"]) == report["config"]
    stored = rows(path, "SELECT * FROM runs WHERE audit_id = ? ORDER BY id", audits[0]["id"])
    assert len(stored) == len(report["runs"])
    for run, row in zip(report["runs"], stored, strict=True):
        checkpoints = run.pop("checkpoints")
        assert_stored(row, run)
        kept = rows(path, "SELECT * FROM checkpoints WHERE run_id = ? ORDER BY id", row["id"])
        assert len(kept) == len(checkpoints)
        for checkpoint, line in zip(checkpoints, kept, strict=True):
            assert_stored(line, checkpoint)


def test_the_readme_query_lists_every_run_ever_flagged_with_its_picks(tmp_path):
    path = tmp_path / "audit.sqlite"
    for _ in range(2):
        assert invoke("scan", str(FIXTURES), "-q", "-o", str(path)).exit_code == 0
    query = re.search(r"```sql\n(.*?)```", README.read_text(), re.DOTALL)
    assert query is not None, "the README has no example query"
    found = rows(path, query.group(1))
    flagged = [r for r in auditor.audit(str(FIXTURES)).runs if r.flagged]
    assert flagged and len(found) == 2 * len(flagged)
    for row in found:
        run = next(r for r in flagged if r.run_dir == row["run_dir"])
        assert row["eval_only_pick"] == run.eval_only_pick.checkpoint
        assert row["scorer_pick"] == run.scorer_pick.checkpoint


def test_format_sqlite_needs_a_file():
    done = invoke("scan", SWEEP, "--format", "sqlite")
    assert done.exit_code == 2
    assert "-o" in done.stderr and done.stdout == ""


@pytest.mark.parametrize("kind", ["text", "sqlite"])
def test_a_file_of_another_program_is_refused_untouched(tmp_path, kind):
    path = tmp_path / "audit.sqlite"
    if kind == "text":
        path.write_text("name,score\n")
    else:
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE notes (body TEXT)")
        db.commit()
        db.close()
    before = path.read_bytes()
    done = invoke("scan", SWEEP, "-o", str(path))
    assert done.exit_code == 2
    assert str(path) in done.stderr and "choose another file" in done.stderr
    assert path.read_bytes() == before


def test_a_failed_append_keeps_every_earlier_audit_and_adds_nothing(tmp_path, monkeypatch):
    path = tmp_path / "audit.sqlite"
    assert invoke("scan", SWEEP, "-q", "-o", str(path)).exit_code == 0
    before = path.read_bytes()
    real = history._add_rows

    def fail_on_checkpoints(db, table, records):
        if table == "checkpoints":
            raise sqlite3.OperationalError("disk I/O error")
        return real(db, table, records)

    monkeypatch.setattr(history, "_add_rows", fail_on_checkpoints)
    done = invoke("scan", SWEEP, "-q", "-o", str(path))
    assert done.exit_code == 2 and "disk I/O error" in done.stderr
    assert path.read_bytes() == before
    # A new file that fails is not left behind, half made or as a temporary file.
    fresh = tmp_path / "fresh.sqlite"
    assert invoke("scan", SWEEP, "-q", "-o", str(fresh)).exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.sqlite"]


def test_a_newer_report_field_becomes_a_new_column_and_old_rows_stay(tmp_path):
    path = tmp_path / "audit.sqlite"
    result = auditor.audit(SWEEP)
    history.append_audit(str(path), result, [SWEEP], "2026-01-01T00:00:00+00:00")

    class Newer(auditor.AuditResult):
        def to_dict(self) -> dict:
            data = super().to_dict()
            for run in data["runs"]:
                run["provenance"] = {"source": "trainer", "files": ["trainer_state.json"]}
            return data

    history.append_audit(str(path), Newer(result.runs), [SWEEP], "2026-01-02T00:00:00+00:00")
    found = rows(path, "SELECT audit_id, provenance_source, provenance_files FROM runs")
    assert {r["audit_id"] for r in found} == {1, 2}
    assert {r["provenance_source"] for r in found if r["audit_id"] == 1} == {None}
    assert {r["provenance_source"] for r in found if r["audit_id"] == 2} == {"trainer"}
    assert {r["provenance_files"] for r in found if r["audit_id"] == 2} == {
        '["trainer_state.json"]'
    }
