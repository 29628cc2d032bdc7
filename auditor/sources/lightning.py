"""Read a PyTorch Lightning run: CSVLogger's metrics.csv or TensorBoard scalars, and the
steps of ModelCheckpoint's files from their names (a .ckpt is a pickle: never opened)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import StateFileError
from ..storage import Entry, Storage, join
from . import Checkpoint, Folder, Found, RunRecord, register
from .logged import KeyMap, number, to_history
from .tensorboard import EVENT_FILE_PREFIX, read_event_files
from .tfrecord import EventFile

if TYPE_CHECKING:
    from ..config import Config

NAME = "lightning"
METRICS_FILE = "metrics.csv"
HPARAMS_FILE = "hparams.yaml"
CHECKPOINT_FOLDER = "checkpoints"
CHECKPOINT_SUFFIX = ".ckpt"
# ModelCheckpoint's default name is epoch={epoch}-step={step}.ckpt, and a custom template
# keeps `step=` wherever the user put {step}; `-vN` is added when the name was taken.
_STEP = re.compile(r"(?:^|[^A-Za-z0-9])step=(\d+)")
_LAST = re.compile(r"^last(-v\d+)?\.ckpt$")
#: Lightning logs a value with the count of optimizer steps *before* the current one (step
#: 7 for the work that ModelCheckpoint saves as step=8): add this to a logged step.
LOGGED_STEP_OFFSET = 1

Rows = list[tuple[int, dict[str, float]]]


def checkpoints_in(entries: Iterable[Entry]) -> tuple[list[Checkpoint], list[str]]:
    """Return the .ckpt files among `entries` whose names carry a step, one per step (the
    first name wins over its `-vN` copies), and warnings about the others. `last.ckpt` names
    no step and is a copy of a save: it is left out."""
    found: dict[int, str] = {}
    nameless: list[str] = []
    for entry in sorted(entries, key=lambda e: e.name):
        name = entry.name
        if entry.is_dir or not name.endswith(CHECKPOINT_SUFFIX):
            continue
        match = _STEP.search(name)
        if match is None:
            if not _LAST.match(name):
                nameless.append(name)
            continue
        found.setdefault(int(match.group(1)), name)
    warnings = []
    if nameless:
        more = f" and {len(nameless) - 3} more" if len(nameless) > 3 else ""
        warnings.append(
            f"{', '.join(nameless[:3])}{more}: no step= in the name, so not a candidate "
            "(put {step} in ModelCheckpoint's filename)"
        )
    return [Checkpoint(name, step) for step, name in sorted(found.items())], warnings


def list_checkpoints(
    storage: Storage, run_dir: str, folder: str
) -> tuple[list[Checkpoint], list[str]]:
    """Return the checkpoints in `folder` of `run_dir` (see `checkpoints_in`), named by their
    file names; none when the folder is missing."""
    try:
        entries = storage.listdir(join(run_dir, folder))
    except StateFileError:
        return [], []
    return checkpoints_in(entries)


def read_metrics_csv(data: bytes, path: str) -> tuple[Rows, list[str]]:
    """Return (logged step, {key: value}) per row of CSVLogger's metrics.csv (the bytes
    `data` of `path`), and warnings.

    Rows are sparse (a cell is empty where a key was not logged); CSVLogger rewrites the
    whole file with a wider header when a new key appears, so the header is the first line.
    A torn last row (no line break after it) is skipped with a warning; cells that are not
    numbers are skipped and counted; a row of the wrong width means the file is damaged
    (StateFileError).
    """
    import csv  # only for Lightning runs: a Trainer audit does not load it
    import io

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StateFileError.not_text(path, exc) from exc
    if not text.strip():
        raise StateFileError(path, "is empty (the run logged nothing yet?); wait or delete it")
    try:
        lines = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise StateFileError(path, f"is not CSV ({exc}); restore the file") from exc
    header, body = lines[0], lines[1:]
    if "step" not in header:
        raise StateFileError(path, "has no step column: is it Lightning CSVLogger's metrics.csv?")
    step_at = header.index("step")
    rows: Rows = []
    warnings: list[str] = []
    bad_cells = 0
    if not text.endswith("\n") and body:
        # CSVLogger ends every row with a line break: a row without one was cut mid-write,
        # even when its cells look whole (a number cut short is still a number).
        body = body[:-1]
        warnings.append(
            f"{path}: the last row is torn (the writer was stopped); the rows before it are used"
        )
    for index, cells in enumerate(body):
        if len(cells) != len(header):
            raise StateFileError(
                path,
                f"row {index + 2} has {len(cells)} cells for {len(header)} columns; the file "
                "is damaged: restore it",
            )
        step = number(cells[step_at])
        if step is None or not step.is_integer():
            bad_cells += 1
            continue
        row: dict[str, float] = {}
        for key, cell in zip(header, cells, strict=True):
            if key in ("step", "epoch") or cell == "":
                continue
            value = number(cell)
            if value is None:
                bad_cells += 1
                continue
            row[key] = value
        if row:
            rows.append((int(step), row))
    if bad_cells:
        warnings.append(f"{path}: cells that are not numbers skipped: {bad_cells}")
    return rows, warnings


def event_rows(files: list[EventFile]) -> Rows:
    """Return (logged step, {tag: value}) per logging call of Lightning's scalars."""
    rows: Rows = []
    for event_file in files:
        for scalar in event_file.scalars:
            if rows and rows[-1][0] == scalar.step and scalar.tag not in rows[-1][1]:
                rows[-1][1][scalar.tag] = scalar.value
            else:
                rows.append((scalar.step, {scalar.tag: scalar.value}))
    return rows


def shift(rows: Iterable[tuple[int, dict[str, float]]]) -> Rows:
    """Return `rows` with each logged step made the global step ModelCheckpoint names."""
    return [(step + LOGGED_STEP_OFFSET, row) for step, row in rows]


def read_run(
    storage: Storage, run_dir: str, keys: KeyMap, checkpoint_dir: str | None = None
) -> RunRecord:
    """Return the Lightning run logged in `run_dir` (a `version_N/` folder) with the
    checkpoints of `checkpoint_dir` (relative to `run_dir`, or absolute; default: its
    checkpoints/ folder)."""
    entries = storage.listdir(run_dir)
    names = {e.name for e in entries}
    warnings: list[str] = []
    if METRICS_FILE in names:
        path = join(run_dir, METRICS_FILE)
        rows, warnings = read_metrics_csv(storage.read(path), path)
    else:
        paths = [e.path for e in entries if e.name.startswith(EVENT_FILE_PREFIX)]
        if not paths:
            raise StateFileError(
                run_dir, f"has neither {METRICS_FILE} nor event files: nothing to audit"
            )
        files = read_event_files(storage, paths)
        warnings = [w for f in files for w in f.warnings]
        rows = event_rows(files)
    history, key_warnings = to_history(shift(rows), keys)
    warnings.extend(key_warnings)
    folder = checkpoint_dir or CHECKPOINT_FOLDER
    checkpoints, checkpoint_warnings = list_checkpoints(storage, run_dir, folder)
    if checkpoint_dir and not checkpoints:
        checkpoint_warnings.append(
            f"no .ckpt file with step= in its name in {join(run_dir, folder)} "
            "(config checkpoint_dir)"
        )
    warnings.extend(checkpoint_warnings)
    return RunRecord(
        run_dir=run_dir,
        source=NAME,
        history=history,
        checkpoints=tuple(checkpoints),
        history_only=not checkpoints,
        warnings=tuple(warnings),
    )


class LightningSource:
    """A Lightning logger's `version_N/` folder: metrics.csv (CSVLogger) or event files
    (TensorBoardLogger) beside hparams.yaml or checkpoints/."""

    name = NAME

    def find(self, folder: Folder) -> Found | None:
        names = {e.name for e in folder.entries}
        has_events = any(n.startswith(EVENT_FILE_PREFIX) for n in names)
        # A Trainer's runs/<date>_<host>/ holds event files alone: not a Lightning run.
        if METRICS_FILE not in names and not (
            has_events and (HPARAMS_FILE in names or CHECKPOINT_FOLDER in names)
        ):
            return None
        checkpoints = folder.entry(CHECKPOINT_FOLDER)
        return Found(
            NAME,
            folder.path,
            owned=(CHECKPOINT_FOLDER,),
            history_only=checkpoints is None or not checkpoints.is_dir,
        )

    def find_file(self, entry: Entry) -> Found | None:
        return None

    def read(self, found: Found, storage: Storage, config: Config | None = None) -> list[RunRecord]:
        keys = KeyMap(config.train_key if config is not None else None)
        checkpoint_dir = config.checkpoint_dir if config is not None else None
        return [read_run(storage, found.run_dir, keys, checkpoint_dir)]


SOURCE = LightningSource()
register(SOURCE)
