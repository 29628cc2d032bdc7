"""Read TensorBoard event files: a Trainer's runs/<date>_<host>/ folders, Lightning's scalars."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..errors import StateFileError
from ..storage import Range, Storage, join
from . import Best, Folder, Found, RunRecord, Settings, register
from .hf_trainer import RUNS_FOLDER, STATE_FILE, is_checkpoint_name
from .tfrecord import EventFile, parse_event_file

NAME = "tensorboard"
EVENT_FILE_PREFIX = "events.out.tfevents."
#: The Trainer's TensorBoardCallback logs its TrainingArguments as this text summary.
ARGS_TAG = "args/text_summary"
# The Trainer's closing summary: logged under train/ but not a training log (SPEC section 1).
_SUMMARY_KEYS = frozenset(
    {
        "train_runtime",
        "train_samples_per_second",
        "train_steps_per_second",
        "total_flos",
        "train_loss",
    }
)
# Files a Trainer leaves in its output_dir besides checkpoints: with runs/ beside one of them
# and no trainer_state.json, the folder is a run whose history is its event files.
_TRAINER_FILES = frozenset(
    {
        "training_args.bin",
        "all_results.json",
        "train_results.json",
        "config.json",
        "adapter_config.json",
        "model.safetensors",
        "README.md",
    }
)
# The args text is written when training begins: the first records of a file hold it.
_HEAD_BYTES = 1 << 16


def event_files(storage: Storage, folder: str) -> list[str]:
    """Return the event files directly in `folder`, by name ([] when it cannot be listed)."""
    try:
        entries = storage.listdir(folder)
    except StateFileError:
        return []
    return [e.path for e in entries if not e.is_dir and e.name.startswith(EVENT_FILE_PREFIX)]


def trainer_event_files(storage: Storage, run_dir: str) -> list[str]:
    """Return the event files of a Trainer run: one runs/<date>_<host>/ folder per start."""
    try:
        folders = storage.listdir(join(run_dir, RUNS_FOLDER))
    except StateFileError:
        return []
    return [path for f in folders if f.is_dir for path in event_files(storage, f.path)]


def read_event_files(storage: Storage, paths: Iterable[str]) -> list[EventFile]:
    """Return the parsed event files in the order they were started (a resumed run's files
    after the first run's); raise StateFileError for a damaged file."""
    files = [parse_event_file(storage.read(path), path) for path in paths]
    files.sort(key=lambda f: (f.first_wall_time, f.path))
    return files


def trainer_history(files: list[EventFile]) -> list[dict[str, Any]]:
    """Return the Trainer-style log_history of the TensorBoardCallback's scalars: `train/x`
    back to `x`, `eval/x` to `eval_x`, one entry per logging call (consecutive scalars of
    one step and one group), in the order the files were started, so that a step logged
    again after a resume comes later and wins."""
    history: list[dict[str, Any]] = []
    for event_file in files:
        current: dict[str, Any] | None = None
        current_kind = ""
        for scalar in event_file.scalars:
            group, _, name = scalar.tag.partition("/")
            if not name:
                continue
            if group == "eval":
                key, kind = f"eval_{name}", "eval"
            elif group == "train":
                key = name
                kind = "summary" if name in _SUMMARY_KEYS else "train"
            else:
                continue
            if current is None or current["step"] != scalar.step or current_kind != kind:
                current = {"step": scalar.step}
                current_kind = kind
                history.append(current)
            current[key] = scalar.value
    return history


def trainer_arguments(files: list[EventFile]) -> dict[str, Any]:
    """Return the TrainingArguments of the newest `args` text summary ({} when none)."""
    for event_file in reversed(files):
        for text in reversed(event_file.texts):
            if text.tag == ARGS_TAG:
                return arguments_from_text(text.text)
    return {}


def arguments_from_text(text: str) -> dict[str, Any]:
    """Return the TrainingArguments JSON object in `text`, {} when it is not one."""
    try:
        arguments = json.loads(text)
    except ValueError:
        return {}
    return arguments if isinstance(arguments, dict) else {}


def best_and_settings(arguments: dict[str, Any]) -> tuple[Best, Settings]:
    """Return what TrainingArguments say about the Trainer's best (its metric and direction;
    which checkpoint it kept is not in them) and the settings that change how a pick reads."""
    metric = arguments.get("metric_for_best_model")
    if isinstance(metric, str) and metric and not metric.startswith("eval_"):
        # The Trainer prefixes the name the same way before it looks the metric up.
        metric = f"eval_{metric}"
    greater = arguments.get("greater_is_better")
    load_best = arguments.get("load_best_model_at_end")
    limit = arguments.get("save_total_limit")
    return (
        Best(
            metric=metric if isinstance(metric, str) and metric else None,
            greater_is_better=greater if isinstance(greater, bool) else None,
        ),
        Settings(
            load_best_model_at_end=load_best if isinstance(load_best, bool) else None,
            save_total_limit=limit
            if isinstance(limit, int) and not isinstance(limit, bool)
            else None,
        ),
    )


def head_arguments(storage: Storage, run_dir: str) -> dict[str, Any]:
    """Return the TrainingArguments a Trainer run's TensorBoardCallback logged, reading only
    the head of each event file (the args are logged when training begins); {} when none."""
    paths = trainer_event_files(storage, run_dir)
    if not paths:
        return {}
    heads = []
    for path, data in zip(
        paths, storage.read_ranges([Range(p, 0, _HEAD_BYTES) for p in paths]), strict=True
    ):
        if isinstance(data, bytes):
            try:
                heads.append(parse_event_file(data, path))
            except StateFileError:
                continue
    heads.sort(key=lambda f: (f.first_wall_time, f.path))
    return trainer_arguments(heads)


def read_trainer_run(
    storage: Storage, run_dir: str, checkpoints: tuple[Any, ...] = ()
) -> RunRecord:
    """Return a Trainer run from its event files alone, with `checkpoints` (those the
    caller found on disk; none: every evaluated step is a candidate)."""
    paths = trainer_event_files(storage, run_dir)
    if not paths:
        raise StateFileError(
            join(run_dir, RUNS_FOLDER), "holds no TensorBoard event file: nothing to audit"
        )
    files = read_event_files(storage, paths)
    history = trainer_history(files)
    best, settings = best_and_settings(trainer_arguments(files))
    warnings = [w for f in files for w in f.warnings]
    warnings.append(
        "history from TensorBoard event files (no trainer_state.json): which checkpoint the "
        "Trainer kept as best is not recorded there"
    )
    return RunRecord(
        run_dir=run_dir,
        source=NAME,
        history=history,
        checkpoints=checkpoints,
        history_only=not checkpoints,
        best=best,
        settings=settings,
        warnings=tuple(warnings),
    )


def trainer_owns(names: set[str]) -> bool:
    """Return True when a folder holding `names` is read as a Trainer run (a trainer_state.json
    or checkpoint folders): its other histories are read only when no state is readable."""
    return STATE_FILE in names or any(is_checkpoint_name(n) for n in names)


class TensorBoardSource:
    """A Trainer output_dir whose only history is runs/ (report_to="tensorboard")."""

    name = NAME

    def find(self, folder: Folder) -> Found | None:
        names = {e.name for e in folder.entries}
        runs = folder.entry(RUNS_FOLDER)
        if runs is None or not runs.is_dir or trainer_owns(names):
            return None
        if not names & _TRAINER_FILES:
            return None
        return Found(NAME, folder.path, owned=(RUNS_FOLDER,), history_only=True)

    def find_file(self, entry: Any) -> Found | None:
        return None

    def read(self, found: Found, storage: Storage, config: Any = None) -> list[RunRecord]:
        return [read_trainer_run(storage, found.run_dir)]


SOURCE = TensorBoardSource()
register(SOURCE)
