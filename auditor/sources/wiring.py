"""Connect the framework sources to today's walk and audit of Trainer output folders."""

from __future__ import annotations

from ..config import Config
from ..errors import StateFileError
from ..read import DiskCheckpoint, RunRecord, TrainerState
from ..storage import Storage, for_path
from . import Checkpoint, Folder, Found, lightning, llamafactory, mlflow, tensorboard
from . import RunRecord as SourceRecord
from .logged import KeyMap

#: The framework sources, in the order a folder is offered to them (the Trainer's own
#: checkpoint folders and trainer_state.json are found before any of these).
FRAMEWORKS = (
    tensorboard.SOURCE,
    llamafactory.SOURCE,
    lightning.SOURCE,
    mlflow.SOURCE,
)


def find_run(path: str) -> Found | None:
    """Return the run of a framework that the folder `path` is, else None."""
    storage = for_path(path)
    try:
        folder = Folder(path, tuple(storage.listdir(path)))
    except StateFileError:
        return None
    for source in FRAMEWORKS:
        found = source.find(folder)
        if found is not None:
            return found
    return None


def find_file(path: str) -> Found | None:
    """Return the run a file given alone is (an mlflow.db, a trainer_log.jsonl), or that a
    path names inside an mlflow.db (<folder>/mlflow.db/<run id>), else None."""
    storage = for_path(path)
    try:
        entry = storage.stat(path)
    except StateFileError:
        return mlflow.find_database_run(storage, path)
    for source in FRAMEWORKS:
        found = source.find_file(entry)
        if found is not None:
            return found
    return None


def read_found(found: Found, config: Config) -> list[RunRecord]:
    """Return the records of a framework run as the audit reads a Trainer's; raise
    StateFileError when nothing usable can be read."""
    storage = for_path(found.run_dir)
    keys = KeyMap(config.train_key)
    # Only these two map logged names to the Trainer's, with the config's train_key.
    if found.source == lightning.NAME:
        records = lightning.SOURCE.read(found, storage, keys, config.checkpoint_dir)
    elif found.source == mlflow.NAME:
        records = mlflow.SOURCE.read(found, storage, keys)
    else:
        records = next(s for s in FRAMEWORKS if s.name == found.source).read(found, storage)
    return [as_trainer_record(r) for r in records]


def fallback(run_dir: str, steps: dict[int, str]) -> RunRecord | None:
    """Return a Trainer run without a readable trainer_state.json, read from the history
    another writer left beside it (LLaMA-Factory's trainer_log.jsonl, else TensorBoard's
    runs/), with the checkpoint folders `steps` (step -> name); None when there is neither.
    Raises StateFileError when that history is broken too."""
    storage = for_path(run_dir)
    checkpoints = tuple(Checkpoint(name, step) for step, name in sorted(steps.items()))
    try:
        names = {e.name for e in storage.listdir(run_dir)}
    except StateFileError:
        return None
    if llamafactory.LOG_FILE in names:
        return as_trainer_record(llamafactory.read_run(storage, run_dir, checkpoints))
    if tensorboard.trainer_event_files(storage, run_dir):
        return as_trainer_record(tensorboard.read_trainer_run(storage, run_dir, checkpoints))
    return None


def trainer_metric(storage: Storage, run_dir: str) -> str | None:
    """Return the metric_for_best_model a Trainer run's TensorBoard args record, if any."""
    best, _ = tensorboard.best_and_settings(tensorboard.head_arguments(storage, run_dir))
    return best.metric


def as_trainer_record(record: SourceRecord) -> RunRecord:
    """Return a framework's neutral record in the shape the audit reads today."""
    steps = [e.get("step") for e in record.history]
    whole = [s for s in steps if isinstance(s, int) and not isinstance(s, bool)]
    state = TrainerState(
        path=record.run_dir,
        global_step=max(whole, default=None),
        log_history=record.history,
        best_model_checkpoint=record.best.checkpoint,
        best_global_step=record.best.step,
        best_metric=record.best.value,
    )
    return RunRecord(
        run_dir=record.run_dir,
        state=state,
        checkpoints=tuple(DiskCheckpoint(c.name, c.step, c.usable) for c in record.checkpoints),
        history_only=record.history_only,
        warnings=record.warnings,
        trainer_metric=record.best.metric,
    )
