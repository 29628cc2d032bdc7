"""The SQLite history of audits: each audit appended to one file, whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

from . import __version__
from .errors import ReportWriteError
from .results import AuditResult

#: Marks a SQLite file as a ckpt-audit history ("ckpa"), so another program's file is refused.
APPLICATION_ID = 0x636B7061
HISTORY_VERSION = 1
_SQLITE_HEADER = b"SQLite format 3\x00"

# The fixed columns of each table; every other column comes from the JSON report's fields.
_TABLES = {
    "audits": "id INTEGER PRIMARY KEY, time TEXT NOT NULL, tool_version TEXT NOT NULL, "
    "cwd TEXT NOT NULL, paths TEXT NOT NULL",
    "runs": "id INTEGER PRIMARY KEY, audit_id INTEGER NOT NULL REFERENCES audits(id)",
    "checkpoints": "id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(id)",
}


def check_history(path: str) -> None:
    """Return when `path` can take an audit: missing, empty, or a history of ours.

    Raises ReportWriteError naming the path and the fix otherwise (another program's file is
    never touched).
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ReportWriteError(f"cannot write {path}: its folder {folder} does not exist")
    if not os.path.exists(path) or (os.path.isfile(path) and os.path.getsize(path) == 0):
        return
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise ReportWriteError(f"cannot read {path}: {exc.strerror}") from exc
    if header != _SQLITE_HEADER:
        raise ReportWriteError(
            f"{path} is not a SQLite file: ckpt-audit appends audits only to its own "
            "history; choose another file name"
        )
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        try:
            (found,) = db.execute("PRAGMA application_id").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ReportWriteError(f"cannot read {path}: {exc}") from exc
    if found != APPLICATION_ID:
        raise ReportWriteError(
            f"{path} is a SQLite file of another program, not a ckpt-audit history; choose "
            "another file name"
        )


def append_audit(path: str, result: AuditResult, paths: Iterable[str], time: str) -> int:
    """Append `result` (audited from `paths` at `time`, ISO 8601) to the history at `path` and
    return the new audit's id.

    A new file is built beside its place and renamed into it; an existing one takes the audit in
    one transaction. Either way a reader sees every earlier audit and the new one whole, or the
    file as it was. Raises ReportWriteError naming the path when it cannot be written.
    """
    check_history(path)
    fresh = not os.path.exists(path) or os.path.getsize(path) == 0
    try:
        if not fresh:
            with _connect(path) as db:
                return _insert(db, result, paths, time)
        folder = os.path.dirname(os.path.abspath(path))
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder
        )
        os.close(descriptor)
        try:
            with _connect(temporary) as db:
                audit_id = _insert(db, result, paths, time)
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        return audit_id
    except (OSError, sqlite3.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ReportWriteError(f"cannot write {path}: {reason}") from exc


@contextlib.contextmanager
def _connect(path: str) -> Iterator[sqlite3.Connection]:
    # isolation_level=None: the transaction is ours, so table changes roll back with the rows.
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    finally:
        db.close()


def _insert(db: sqlite3.Connection, result: AuditResult, paths: Iterable[str], time: str) -> int:
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {HISTORY_VERSION}")
    for table, columns in _TABLES.items():
        db.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
    report = result.to_dict()
    runs = report.pop("runs")
    audit = {
        "time": time,
        "tool_version": __version__,
        "cwd": os.getcwd(),
        "paths": json.dumps(list(paths)),
        **{key: _cell(value) for key, value in report.items()},
    }
    audit_id = _add_rows(db, "audits", [audit])[0]
    checkpoints = [run.pop("checkpoints") for run in runs]
    run_ids = _add_rows(db, "runs", [{"audit_id": audit_id, **_flatten(run)} for run in runs])
    _add_rows(
        db,
        "checkpoints",
        [
            {"run_id": run_id, **_flatten(checkpoint)}
            for run_id, rows in zip(run_ids, checkpoints, strict=True)
            for checkpoint in rows
        ],
    )
    return audit_id


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Return a report record as columns: nested objects become prefix_key columns (a pick
    gives eval_only_pick_checkpoint and eval_only_pick_step), lists become JSON text."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}_"))
        else:
            flat[name] = _cell(value)
    return flat


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, allow_nan=False)
    return value


def _add_rows(db: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> list[int]:
    """Insert `rows` and return their ids, adding the columns the table lacks (a newer report
    has more fields)."""
    known = {info[1] for info in db.execute(f"PRAGMA table_info({table})")}
    names: dict[str, str] = {}
    for row in rows:
        for name, value in row.items():
            if names.get(name, "") == "":
                names[name] = _type(value)
    # A field that is null here and an object elsewhere (a run without a pick) is its columns.
    nested = [n for n in names if any(o.startswith(f"{n}_") for o in [*names, *known])]
    for name in nested:
        if names[name] == "":
            del names[name]
    for name, kind in names.items():
        if name not in known:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {_quote(name)} {kind}".rstrip())
    ids = []
    for row in rows:
        kept = {name: value for name, value in row.items() if name in names}
        columns = ", ".join(_quote(name) for name in kept)
        marks = ", ".join("?" for _ in kept)
        cursor = db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", [*kept.values()])
        assert cursor.lastrowid is not None
        ids.append(cursor.lastrowid)
    return ids


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _type(value: Any) -> str:
    if isinstance(value, (bool, int)):
        return "INTEGER"
    if isinstance(value, float):
        return "REAL"
    if isinstance(value, str):
        return "TEXT"
    return ""
