"""Read MLflow's local tracking stores: the SQLite `mlflow.db` and the `mlruns/` file store."""

from __future__ import annotations

import math
import os
from contextlib import closing
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import StateFileError
from ..storage import Entry, Storage, basename, is_url, join, parent
from . import Folder, Found, RunRecord, register
from .lightning import CHECKPOINT_FOLDER, list_checkpoints, shift
from .logged import KeyMap, number, to_history
from .tensorboard import best_and_settings

if TYPE_CHECKING:
    import sqlite3

NAME = "mlflow"
DATABASE = "mlflow.db"
#: A file-store run folder: mlruns/<experiment id>/<run id>/ with these.
_RUN_MARKERS = ("meta.yaml", "metrics")
_SETTINGS_PARAMS = (
    "metric_for_best_model",
    "greater_is_better",
    "load_best_model_at_end",
    "save_total_limit",
)


def _arguments(params: dict[str, str]) -> dict[str, Any]:
    """Return the TrainingArguments settings among a run's params (the Trainer's
    MLflowCallback logs every argument as text: "True", "6", "None")."""
    found: dict[str, Any] = {}
    for key in _SETTINGS_PARAMS:
        text = params.get(key)
        if text is None or text == "None":
            continue
        if text in ("True", "False"):
            found[key] = text == "True"
        elif text.isdigit():
            found[key] = int(text)
        else:
            found[key] = text
    return found


def _record(
    run_dir: str,
    rows: list[tuple[int, str, float]],
    params: dict[str, str],
    keys: KeyMap,
    checkpoints: list[Any],
    warnings: list[str],
) -> RunRecord:
    """Return the record of one MLflow run's metric rows (step, key, value) in log order."""
    grouped: list[tuple[int, dict[str, float]]] = []
    index: dict[tuple[int, bool], int] = {}
    for step, key, value in rows:
        # MLflow keeps each metric's series apart: the values of one step make one log row
        # (an evaluation's keys apart from the training log's, as the Trainer logged them).
        group = (step, key.startswith("eval_"))
        at = index.get(group)
        if at is None or key in grouped[at][1]:
            index[group] = len(grouped)
            grouped.append((step, {key: value}))
        else:
            grouped[at][1][key] = value
    if checkpoints:
        # Checkpoints named epoch=E-step=S.ckpt beside the metrics: a Lightning run, which
        # logs one step behind the step its checkpoints name.
        grouped = shift(grouped)
    history, key_warnings = to_history(grouped, keys)
    best, settings = best_and_settings(_arguments(params))
    return RunRecord(
        run_dir=run_dir,
        source=NAME,
        history=history,
        checkpoints=tuple(checkpoints),
        history_only=not checkpoints,
        best=best,
        settings=settings,
        warnings=(*warnings, *key_warnings),
    )


def _connect(storage: Storage, path: str) -> sqlite3.Connection:
    import sqlite3  # only where an MLflow database is read

    if is_url(path):
        # sqlite reads files only: a remote database is read whole into memory.
        connection = sqlite3.connect(":memory:")
        deserialize = getattr(connection, "deserialize", None)
        if deserialize is None:
            raise StateFileError(path, "is remote; copy it locally to audit it (Python < 3.11)")
        deserialize(storage.read(path))
        return connection
    # Read-only, by URI: the auditor never writes inside what it audits, and sqlite must not
    # create an empty database where the file went missing.
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro"
    try:
        return sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise StateFileError(path, f"cannot be opened as SQLite ({exc}); check the path") from exc


def _query(
    connection: sqlite3.Connection, path: str, sql: str, args: tuple[Any, ...] = ()
) -> list[tuple[Any, ...]]:
    import sqlite3

    try:
        return connection.execute(sql, args).fetchall()
    except sqlite3.Error as exc:
        raise StateFileError(
            path,
            f"is not an MLflow tracking database ({exc}); restore it, or move it away from "
            "the audited folder",
        ) from exc


def read_database(
    storage: Storage, path: str, keys: KeyMap, only: str | None = None
) -> list[RunRecord]:
    """Return every run of the SQLite store at `path` that is not deleted, oldest first (or
    only the run whose id is `only`). Its runs report as <path>/<run id>; MLflow keeps no
    checkpoint files the auditor can match, so every evaluated step is a candidate."""
    with closing(_connect(storage, path)) as connection:
        runs = _query(
            connection,
            path,
            "SELECT run_uuid FROM runs WHERE (lifecycle_stage IS NULL "
            "OR lifecycle_stage != 'deleted') AND (? IS NULL OR run_uuid = ?) "
            "ORDER BY start_time, run_uuid",
            (only, only),
        )
        records = []
        for (run_uuid,) in runs:
            metrics = _query(
                connection,
                path,
                "SELECT step, key, value, is_nan FROM metrics WHERE run_uuid = ? "
                "ORDER BY timestamp, step",
                (run_uuid,),
            )
            params = _query(
                connection, path, "SELECT key, value FROM params WHERE run_uuid = ?", (run_uuid,)
            )
            rows: list[tuple[int, str, float]] = []
            for step, key, value, is_nan in metrics:
                # MLflow stores a NaN as 0 with is_nan set.
                found = math.nan if is_nan else number(value)
                if isinstance(step, int) and isinstance(key, str) and found is not None:
                    rows.append((step, key, found))
            records.append(
                _record(
                    join(path, str(run_uuid)),
                    rows,
                    {str(k): str(v) for k, v in params},
                    keys,
                    [],
                    [],
                )
            )
    if not records:
        if only is not None:
            raise StateFileError(
                path,
                f"holds no run {only}; `ckpt-audit scan` of its folder lists the runs it holds",
            )
        raise StateFileError(path, "holds no MLflow run: nothing to audit")
    return records


def find_database_run(storage: Storage, path: str) -> Found | None:
    """Return the run that `path` names when it is <folder>/mlflow.db/<run id> (how the
    audit reports a run of the SQLite store), else None."""
    database = parent(path)
    if basename(database) != DATABASE:
        return None
    try:
        entry = storage.stat(database)
    except StateFileError:
        return None
    if entry.is_dir:
        return None
    return Found(NAME, path, history_only=True, detail=("sqlite", database, basename(path)))


def _metric_lines(
    data: bytes, path: str, key: str, warnings: list[str]
) -> list[tuple[int, int, str, float]]:
    lines = data.decode("utf-8", "replace").split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    rows = []
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        parts = line.split()
        parsed = [number(p) for p in parts]
        if (
            len(parts) != 3
            or None in parsed
            or not all(p is not None and p.is_integer() for p in (parsed[0], parsed[2]))
        ):
            if index == last and not data.endswith(b"\n"):
                warnings.append(f"{path}: the last line is torn; the lines before it are used")
                continue
            raise StateFileError(
                path,
                f"line {index + 1} is not `timestamp value step`; the file is damaged: restore it",
            )
        timestamp, value, step = parsed
        assert timestamp is not None and value is not None and step is not None
        rows.append((int(timestamp), int(step), key, value))
    return rows


def read_file_store_run(storage: Storage, run_dir: str, keys: KeyMap) -> RunRecord:
    """Return the run in `run_dir` (mlruns/<experiment>/<run>/): its metrics/<key> files
    (lines `timestamp value step`), its params, and Lightning's checkpoints/ when there."""
    warnings: list[str] = []
    rows: list[tuple[int, int, str, float]] = []
    metrics_dir = join(run_dir, "metrics")
    pending = [(metrics_dir, "")]
    while pending:
        folder, prefix = pending.pop()
        for entry in storage.listdir(folder):
            # A key with "/" in it (train/loss) is a folder of the file store.
            key = prefix + entry.name
            if entry.is_dir:
                pending.append((entry.path, key + "/"))
            else:
                rows.extend(_metric_lines(storage.read(entry.path), entry.path, key, warnings))
    if not rows:
        raise StateFileError(metrics_dir, "holds no metric with a step: nothing to audit")
    params: dict[str, str] = {}
    try:
        listed = storage.listdir(join(run_dir, "params"))
    except StateFileError:
        listed = []
    for entry in listed:
        if entry.name in _SETTINGS_PARAMS and not entry.is_dir:
            params[entry.name] = storage.read(entry.path).decode("utf-8", "replace").strip()
    rows.sort(key=lambda r: (r[0], r[1]))
    checkpoints, checkpoint_warnings = list_checkpoints(storage, run_dir, CHECKPOINT_FOLDER)
    return _record(
        run_dir,
        [(step, key, value) for _, step, key, value in rows],
        params,
        keys,
        checkpoints,
        [*warnings, *checkpoint_warnings],
    )


class MlflowSource:
    """A folder holding `mlflow.db` (every run in it), or one run folder of the file store."""

    name = NAME

    def find(self, folder: Folder) -> Found | None:
        database = folder.entry(DATABASE)
        if database is not None and not database.is_dir:
            return Found(NAME, folder.path, history_only=True, detail=("sqlite", database.path))
        if all(folder.entry(name) is not None for name in _RUN_MARKERS):
            metrics = folder.entry("metrics")
            if metrics is not None and metrics.is_dir:
                return Found(
                    NAME,
                    folder.path,
                    owned=("metrics", "params", "tags", "artifacts", CHECKPOINT_FOLDER),
                    detail=("files", folder.path),
                )
        return None

    def find_file(self, entry: Entry) -> Found | None:
        if entry.name != DATABASE or entry.is_dir:
            return None
        return Found(NAME, entry.path, history_only=True, detail=("sqlite", entry.path))

    def read(self, found: Found, storage: Storage, config: Any = None) -> list[RunRecord]:
        keys = KeyMap(config.train_key if config is not None else None)
        kind, path, *only = found.detail
        if kind == "sqlite":
            return read_database(storage, path, keys, *only)
        return [read_file_store_run(storage, path, keys)]


SOURCE = MlflowSource()
register(SOURCE)
