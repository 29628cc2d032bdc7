"""Read LLaMA-Factory's trainer_log.jsonl: the history of a run whose trainer_state.json is gone."""

from __future__ import annotations

import json
import math
from typing import Any

from ..errors import StateFileError
from ..storage import Entry, Storage, join, parent
from . import Checkpoint, Folder, Found, RunRecord, register
from .tensorboard import trainer_owns

NAME = "llamafactory"
LOG_FILE = "trainer_log.jsonl"
# LLaMA-Factory's LogCallback copies these from the Trainer's newest log entry under its own
# names; `accuracy` is a preference trainer's rewards/accuracies (a training value) and
# `predict_loss` a prediction run's: neither is an evaluation of a checkpoint.
_TRAIN_KEYS = {"loss": "loss", "lr": "learning_rate", "epoch": "epoch"}
_CONSTANTS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def parse_log(data: bytes, path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Return the Trainer-style history in a trainer_log.jsonl (`data`, the bytes of `path`),
    and warnings.

    The step of each line is its `current_steps` (the Trainer's global_step when it logged),
    never the line number: an evaluation line shares the step of the training line before it.
    A torn last line (the writer was stopped) is skipped with a warning; a line that is no
    JSON object anywhere else, or a log with no usable line, raises StateFileError.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StateFileError.not_text(path, exc) from exc
    lines = text.split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    history: list[dict[str, Any]] = []
    warnings: list[str] = []
    no_step = 0
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            # Python's json writes NaN and Infinity for a diverged loss: real values.
            row = json.loads(line, parse_constant=_CONSTANTS.__getitem__)
        except ValueError as exc:
            if index == last and not text.endswith("\n"):
                warnings.append(
                    f"{path}: line {index + 1} is torn (the writer was stopped mid-line); "
                    "the lines before it are used"
                )
                continue
            raise StateFileError(
                path,
                f"line {index + 1} is not JSON ({exc}); the file is damaged: restore it, or "
                "delete that line",
            ) from exc
        if not isinstance(row, dict):
            raise StateFileError(
                path,
                f"line {index + 1} holds a JSON {type(row).__name__}, not an object: is it "
                "LLaMA-Factory's trainer_log.jsonl?",
            )
        step = row.get("current_steps")
        if isinstance(step, bool) or not isinstance(step, int):
            no_step += 1
            continue
        if "eval_loss" in row:
            history.append({"step": step, "eval_loss": row["eval_loss"]})
        elif "loss" in row:
            entry = {ours: row[theirs] for theirs, ours in _TRAIN_KEYS.items() if theirs in row}
            entry["step"] = step
            history.append(entry)
    if no_step:
        warnings.append(
            f"{path}: {no_step} line{'s' if no_step > 1 else ''} without a whole-number "
            "current_steps skipped"
        )
    if not history:
        raise StateFileError(
            path,
            "has no line with a loss or eval_loss at a current_steps: is the training still "
            "starting? Audit it when it has logged",
        )
    return history, warnings


def read_run(storage: Storage, run_dir: str, checkpoints: tuple[Checkpoint, ...] = ()) -> RunRecord:
    """Return the run in `run_dir` from its trainer_log.jsonl, with `checkpoints` (those the
    caller found on disk; none: every evaluated step is a candidate)."""
    path = join(run_dir, LOG_FILE)
    history, warnings = parse_log(storage.read(path), path)
    warnings.append(
        f"history from {LOG_FILE} (no readable trainer_state.json): it holds eval_loss alone "
        "(no task metrics) and not which checkpoint the Trainer kept as best"
    )
    return RunRecord(
        run_dir=run_dir,
        source=NAME,
        history=history,
        checkpoints=checkpoints,
        history_only=not checkpoints,
        warnings=tuple(warnings),
    )


class LlamaFactorySource:
    """A LLaMA-Factory output_dir without checkpoint folders or trainer_state.json (with them
    it is a Trainer run, read from its log only when no state is readable)."""

    name = NAME

    def find(self, folder: Folder) -> Found | None:
        names = {e.name for e in folder.entries}
        if LOG_FILE not in names or trainer_owns(names):
            return None
        return Found(NAME, folder.path, history_only=True)

    def find_file(self, entry: Entry) -> Found | None:
        if entry.name != LOG_FILE or entry.is_dir:
            return None
        return Found(NAME, parent(entry.path) or ".", history_only=True)

    def read(self, found: Found, storage: Storage, config: Any = None) -> list[RunRecord]:
        return [read_run(storage, found.run_dir)]


SOURCE = LlamaFactorySource()
register(SOURCE)
