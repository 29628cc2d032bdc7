"""Read a run's trainer_state.json files into plain records; the only module that opens them."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from .discover import STATE_FILE, CheckpointDir, RunLocation, checkpoints_of
from .errors import StateFileError
from .fastjson import loads
from .pair import TRAIN_LOG_KEYS, Digest, digest_history, is_eval_loss
from .pair import whole_number as _int_or_none
from .skim import Ends, parse_entries, read_ends

_LFS_POINTER = b"version https://git-lfs"
_FOLDER = "is a folder, not a file; remove it or put the real file there"
# Compare a checkpoint's own newest log entries with the newest history: enough to tell two
# trainings apart, little enough to stay cheap.
_LINEAGE_ENTRIES = 4


@dataclass(frozen=True)
class TrainerState:
    """The parts of one trainer_state.json the audit uses."""

    path: str
    global_step: int | None
    log_history: list[Any]
    best_model_checkpoint: str | None
    best_global_step: int | None
    best_metric: float | None


class DiskCheckpoint(NamedTuple):
    """A checkpoint folder on disk; `usable` is False when it cannot be a candidate."""

    name: str
    step: int
    usable: bool


class RunRecord(NamedTuple):
    """Everything read from one run: the newest history and the checkpoints beside it."""

    run_dir: str
    state: TrainerState
    checkpoints: tuple[DiskCheckpoint, ...]
    history_only: bool
    warnings: tuple[str, ...]
    #: The newest history walked once; None until someone needs it (see `digest`).
    history_digest: Digest | None = None

    @property
    def digest(self) -> Digest:
        """Return the Digest of the newest history (computed here when read did not)."""
        return self.history_digest or digest_history(self.state.log_history)


def _read_bytes(path: str) -> bytes:
    # Non-blocking: a FIFO under this name would otherwise hang the scan before it is refused.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError as exc:
        if os.path.islink(path):
            raise StateFileError(
                path,
                f"is a symlink to {os.readlink(path)}, which is missing; "
                "restore the target or remove the link",
            ) from exc
        raise StateFileError(
            path, "does not exist (the save is incomplete, or it was deleted)"
        ) from exc
    except IsADirectoryError as exc:
        raise StateFileError(path, _FOLDER) from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateFileError(
                path, "is a symlink loop; point it at the real file or remove it"
            ) from exc
        hint = (
            "check its permissions"
            if exc.errno in (errno.EACCES, errno.EPERM)
            else "check the disk or the mount"
        )
        raise StateFileError(path, f"cannot be read ({exc.strerror}); {hint}") from exc
    kind = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(kind):
        os.close(descriptor)
        if stat.S_ISDIR(kind):
            raise StateFileError(path, _FOLDER)
        # A device (/dev/zero) would be read forever, a pipe would wait for a writer.
        raise StateFileError(
            path, "is not a regular file (a pipe, socket or device); put the real file there"
        )
    with os.fdopen(descriptor, "rb") as handle:
        try:
            return handle.read()
        except OSError as exc:
            raise StateFileError(
                path, f"cannot be read ({exc.strerror}); check the disk or the mount"
            ) from exc


def parse_state(data: bytes, path: str) -> TrainerState:
    """Return the TrainerState in `data` (the bytes of `path`); raise StateFileError if unusable."""
    if not data.strip():
        raise StateFileError(path, "is empty (an interrupted save?); restore it or delete it")
    if data.startswith(_LFS_POINTER):
        raise StateFileError(path, "is a Git LFS pointer, not the file; run `git lfs pull` first")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StateFileError(
            path, f"is not UTF-8 text (binary data at byte {exc.start}); restore the real file"
        ) from exc
    try:
        document = loads(text)
    except json.JSONDecodeError as exc:
        cause = (
            "something follows the JSON document (two saves written into one file?)"
            if exc.msg.startswith("Extra data")
            else "the file may have been cut short by an interrupted save"
        )
        raise StateFileError(
            path,
            f"is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            f"{cause}: restore it or delete it",
        ) from exc
    except RecursionError as exc:
        raise StateFileError(path, "is nested too deeply to be a trainer_state.json") from exc
    if not isinstance(document, dict):
        raise StateFileError(
            path,
            f"holds a JSON {type(document).__name__}, not an object with log_history; "
            "is it a Trainer's trainer_state.json?",
        )
    history = document.get("log_history")
    if history is None:
        raise StateFileError(
            path, "has no log_history: not a Hugging Face Trainer trainer_state.json?"
        )
    if not isinstance(history, list):
        raise StateFileError(path, "has a log_history that is not a list; the file is damaged")
    best_checkpoint = document.get("best_model_checkpoint")
    best_metric = document.get("best_metric")
    return TrainerState(
        path=path,
        global_step=_int_or_none(document.get("global_step")),
        log_history=history,
        best_model_checkpoint=best_checkpoint if isinstance(best_checkpoint, str) else None,
        best_global_step=_int_or_none(document.get("best_global_step")),
        best_metric=float(best_metric)
        if isinstance(best_metric, (int, float)) and not isinstance(best_metric, bool)
        else None,
    )


def load_state(path: str) -> TrainerState:
    """Return the TrainerState of the trainer_state.json at `path`; raise StateFileError."""
    return parse_state(_read_bytes(path), path)


_MISSING = object()


def _newest_losses(history: list[Any]) -> tuple[list[tuple[int, str, Any]], bool]:
    """Return the newest (step, key, loss) of `history`, newest first, and whether they are as
    many as the lineage check compares (`history` may be only the newest entries of a file)."""
    losses: list[tuple[int, str, Any]] = []
    for entry in reversed(history):
        if len(losses) >= _LINEAGE_ENTRIES:
            break
        if type(entry) is not dict:
            continue
        step = entry.get("step")
        if type(step) is not int:
            step = _int_or_none(step)
            if step is None:
                continue
        if "loss" in entry:
            losses.append((step, "loss", entry["loss"]))
        if not TRAIN_LOG_KEYS.issuperset(entry):
            for key, value in entry.items():
                if is_eval_loss(key):
                    losses.append((step, key, value))
    return losses, len(losses) >= _LINEAGE_ENTRIES


def _lineage_conflict(losses: list[tuple[int, str, Any]], digest: Digest) -> tuple[int, str] | None:
    """Return the first (step, key) where a checkpoint's newest losses are not among those the
    newest history (`digest`) logged, or None when they all are. A value a later entry for the
    same step replaced (a resumed run logs the step again) still counts as logged."""
    train, bad, evals = digest.train, digest.bad_train, digest.evals
    for step, key, value in losses:
        if key == "loss":
            known = bad[step] if step in bad else train.get(step, _MISSING)
        else:
            known = evals.get(key, {}).get(step, _MISSING)
        logged = [known, *digest.overridden.get((key, step), ())]
        if not any(_same_value(value, other) for other in logged if other is not _MISSING):
            return step, key
    return None


def _same_value(value: Any, other: Any) -> bool:
    if isinstance(value, bool) or isinstance(other, bool):
        return value is other
    # NaN is the only JSON value unequal to itself: two NaNs agree.
    return value == other or (value != value and other != other)


def read_run(location: RunLocation) -> RunRecord:
    """Return the RunRecord of `location`; raise StateFileError when no state file is usable."""
    warnings = list(location.notes)
    if location.history_only:
        path = location.state_file or os.path.join(location.run_dir, STATE_FILE)
        state = load_state(path)
        return RunRecord(location.run_dir, state, (), True, tuple(warnings))

    states: dict[str, TrainerState] = {}
    failures: dict[str, str] = {}
    skims: dict[str, Ends | None] = {}

    def attempt(path: str) -> TrainerState | None:
        if path in states:
            return states[path]
        if path in failures:
            return None
        try:
            states[path] = load_state(path)
        except StateFileError as exc:
            failures[path] = exc.reason
            return None
        return states[path]

    # Parsing every checkpoint's file costs time quadratic in the checkpoints (each holds the
    # history so far): only the newest file is parsed whole; of the others, the ends are read.
    def skim(path: str) -> Ends | None:
        if path not in skims:
            skims[path] = read_ends(path)
        return skims[path]

    def recorded_step(path: str) -> int | None:
        ends = skim(path)
        if ends is not None:
            return _int_or_none(ends.global_step)
        state = attempt(path)
        return state.global_step if state is not None else None

    def own_losses(path: str) -> tuple[int | None, list[tuple[int, str, Any]]] | None:
        """Return the global_step of an older checkpoint's file and its newest losses to
        compare with the newest history."""
        ends = skim(path)
        if ends is not None:
            step = _int_or_none(ends.global_step)
            entries = parse_entries(ends)
            if entries is not None:
                found, enough = _newest_losses(entries)
                if enough:
                    return step, found
            # The tail held too few losses to tell the trainings apart: read the whole file.
        own = attempt(path)
        if own is None:
            return None
        return own.global_step, _newest_losses(own.log_history)[0]

    folders = _resolve_steps(checkpoints_of(location), recorded_step, warnings)
    source = _newest_state(location.state_file, folders, attempt, skim, failures, warnings)
    if source is None:
        # Name the first few files: a run of fifty broken saves must still read as one line.
        listed = [f"{p} {r}" for p, r in failures.items()]
        reasons = "; ".join(listed[:2])
        if len(listed) > 2:
            reasons += f"; and {len(listed) - 2} more {STATE_FILE} files that cannot be read"
        raise StateFileError(
            location.run_dir, f"no readable trainer_state.json ({reasons or 'none found'})"
        )

    digest = digest_history(source.log_history)
    disk: list[DiskCheckpoint] = []
    for folder in folders:
        assert folder.step is not None
        path = os.path.join(folder.path, STATE_FILE)
        usable = True
        if path != source.path:
            own = own_losses(path)
            newer = source.global_step is not None and folder.step > source.global_step
            if own is None and newer:
                # Training still running: the Trainer writes trainer_state.json last in a save.
                warnings.append(
                    f"{folder.name}/ looks like a save in progress (newer than the history, "
                    f"and its {STATE_FILE} cannot be read yet): not a candidate; the run is "
                    "audited from the rest"
                )
                usable = False
            else:
                usable = _check_checkpoint(folder, own, failures.get(path), digest, warnings)
        disk.append(DiskCheckpoint(folder.name, folder.step, usable))
    return RunRecord(location.run_dir, source, tuple(disk), False, tuple(warnings), digest)


def _newest_state(
    root_file: str | None,
    folders: list[CheckpointDir],
    attempt: Callable[[str], TrainerState | None],
    skim: Callable[[str], Ends | None],
    failures: dict[str, str],
    warnings: list[str],
) -> TrainerState | None:
    """Return the newest readable state: the root file unless a newer checkpoint's is readable."""
    root_step: int | None = None
    if root_file is not None:
        ends = skim(root_file)
        if ends is not None:
            # The head's global_step decides without parsing the root file's history.
            root_step = _int_or_none(ends.global_step) or 0
        else:
            root = attempt(root_file)
            if root is None:
                warnings.append(f"{root_file} {failures[root_file]}")
            else:
                root_step = root.global_step or 0
    newest_first = sorted(folders, key=lambda c: c.step or 0, reverse=True)
    for folder in newest_first:
        assert folder.step is not None
        if root_step is not None and root_step >= folder.step:
            break
        newest = attempt(os.path.join(folder.path, STATE_FILE))
        if newest is not None:
            return newest
    if root_file is None or root_step is None:
        return None
    root = attempt(root_file)
    if root is not None:
        return root
    # Its ends looked whole but the middle does not parse: fall back on the checkpoints.
    warnings.append(f"{root_file} {failures[root_file]}")
    for folder in newest_first:
        assert folder.step is not None
        if folder.step <= root_step:
            older = attempt(os.path.join(folder.path, STATE_FILE))
            if older is not None:
                return older
    return None


def _resolve_steps(
    checkpoints: tuple[CheckpointDir, ...],
    recorded_step: Callable[[str], int | None],
    warnings: list[str],
) -> list[CheckpointDir]:
    """Give last-checkpoint/ its step (from its file) and drop it when it duplicates a folder."""
    named = [c for c in checkpoints if c.step is not None]
    steps = {c.step for c in named}
    for folder in checkpoints:
        if folder.step is not None:
            continue
        step = recorded_step(os.path.join(folder.path, STATE_FILE))
        if step is None:
            warnings.append(f"{folder.name}/ has no readable global_step: skipped")
        elif step not in steps:
            named.append(CheckpointDir(folder.name, folder.path, step))
            steps.add(step)
    named.sort(key=lambda c: c.step or 0)
    return named


def _check_checkpoint(
    folder: CheckpointDir,
    own: tuple[int | None, list[tuple[int, str, Any]]] | None,
    failure: str | None,
    digest: Digest,
    warnings: list[str],
) -> bool:
    """Return True when `folder` can be a candidate; explain in `warnings` when it cannot.
    `own` is the global_step and newest losses of its file, None when it cannot be read."""
    if own is None:
        if failure and "does not exist" in failure:
            warnings.append(
                f"{folder.name}/ has no {STATE_FILE} (still being written, or the save was "
                "interrupted): not a candidate"
            )
        else:
            warnings.append(f"{folder.name}/{STATE_FILE} {failure}: not a candidate")
        return False
    own_step, losses = own
    if own_step is not None and own_step != folder.step:
        warnings.append(
            f"{folder.name}/{STATE_FILE} says global_step {own_step}, not {folder.step}: "
            "the folder was renamed or copied; not a candidate"
        )
        return False
    conflict = _lineage_conflict(losses, digest)
    if conflict is not None:
        step, key = conflict
        warnings.append(
            f"{folder.name}/ comes from another training: its {key} at step {step} differs "
            "from the newest trainer_state.json (a reused output_dir?); not a candidate"
        )
        return False
    return True
