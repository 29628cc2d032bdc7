"""Read a run's trainer_state.json files into plain records; the only module that opens them."""

from __future__ import annotations

import codecs
import errno
import json
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import long_history
from .discover import STATE_FILE, CheckpointDir, RunLocation, checkpoints_of
from .errors import StateFileError
from .fastjson import loads
from .lineage import Lineage, belongs, newest_losses, settings_of
from .pair import Digest, digest_history
from .pair import whole_number as _int_or_none
from .skim import Ends, parse_entries, read_ends

_LFS_POINTER = b"version https://git-lfs"
_FOLDER = "is a folder, not a file; remove it or put the real file there"
# How much of a file is looked at before it is read whole.
_HEAD_BYTES = 4096


@dataclass(frozen=True)
class TrainerState:
    """The parts of one trainer_state.json the audit uses."""

    path: str
    global_step: int | None
    log_history: list[Any]
    best_model_checkpoint: str | None
    best_global_step: int | None
    best_metric: float | None
    #: max_steps, num_train_epochs, train_batch_size (see lineage.SETTINGS).
    settings: tuple[Any, ...] = ()


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
    #: Which of the folder's trainings this is (1: the oldest), and how many it holds.
    training: int = 1
    trainings: int = 1
    #: Steps whose checkpoint folder now holds another training's files.
    overwritten: frozenset[int] = frozenset()
    #: The key the Trainer selected its best on, when a file records it (metric_for_best_model).
    trainer_metric: str | None = None

    @property
    def digest(self) -> Digest:
        """Return the Digest of the newest history (computed here when read did not)."""
        return self.history_digest or digest_history(self.state.log_history)


#: orjson reads integers from here on (in size) as floats.
_ROUNDED_FROM = 2**63


def _read_state(path: str) -> bytes | dict[str, Any]:
    """Return the bytes of the state file at `path`, or its top-level object when it is large
    enough to be parsed in pieces (see long_history)."""
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
        raise StateFileError(
            path, f"cannot be read ({exc.strerror}); {hint}", unreadable=True
        ) from exc
    info = os.fstat(descriptor)
    kind = info.st_mode
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
            # JSON never holds a NUL byte: a file that opens with nothing else (space reserved
            # for a save that never came, a sparse file) is refused before gigabytes are read.
            head = os.pread(descriptor, _HEAD_BYTES, 0)
            if b"\x00" in head and not head.strip(b"\x00 \t\r\n"):
                raise StateFileError(
                    path,
                    "is not valid JSON (it starts with NUL bytes: a save that was never "
                    "written?); restore it or delete it",
                )
            if info.st_size >= long_history.PIECEWISE_FROM:
                document = long_history.parse_in_pieces(descriptor)
                # A float global_step may be a rounded step past 64 bits: the whole parse
                # reads it exactly.
                if document is not None and not isinstance(document.get("global_step"), float):
                    return document
                handle.seek(0)
            return handle.read()
        except OSError as exc:
            raise StateFileError(
                path,
                f"cannot be read ({exc.strerror}); check the disk or the mount",
                unreadable=True,
            ) from exc


def parse_state(data: bytes, path: str) -> TrainerState:
    """Return the TrainerState in `data` (the bytes of `path`); raise StateFileError if unusable."""
    # No stripped or decoded copy of the bytes: a history of hundreds of MB would cost as much
    # memory again. orjson checks the UTF-8 itself; a byte order mark is skipped, not copied.
    if not data or data.isspace():
        raise StateFileError(path, "is empty (an interrupted save?); restore it or delete it")
    if data.startswith(_LFS_POINTER):
        raise StateFileError(path, "is a Git LFS pointer, not the file; run `git lfs pull` first")
    body = memoryview(data)[len(codecs.BOM_UTF8) :] if data.startswith(codecs.BOM_UTF8) else data
    try:
        document = loads(body)
        step = document.get("global_step") if isinstance(document, dict) else None
        if isinstance(step, float) and abs(step) >= _ROUNDED_FROM:
            # orjson reads integers beyond 64 bits as floats, rounding the steps apart from
            # their folders' names: json keeps them whole.
            document = loads(body, exact=True)
    except UnicodeDecodeError as exc:
        raise StateFileError.not_text(path, exc) from exc
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
    return _state_of(document, path)


def _state_of(document: Any, path: str) -> TrainerState:
    """Return the TrainerState of a parsed state file; raise StateFileError if unusable."""
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
        settings=settings_of(document),
    )


def load_state(path: str) -> TrainerState:
    """Return the TrainerState of the trainer_state.json at `path`; raise StateFileError."""
    found = _read_state(path)
    return parse_state(found, path) if isinstance(found, bytes) else _state_of(found, path)


def read_run(location: RunLocation) -> tuple[RunRecord, ...]:
    """Return one RunRecord per training found at `location`, oldest first; raise
    StateFileError when no state file is usable."""
    warnings = list(location.notes)
    if location.refused is not None:
        raise StateFileError(location.run_dir, location.refused)
    if location.history_only:
        path = location.state_file or os.path.join(location.run_dir, STATE_FILE)
        state = load_state(path)
        return (RunRecord(location.run_dir, state, (), True, tuple(warnings)),)

    states: dict[str, TrainerState] = {}
    failures: dict[str, str] = {}
    unreadable: set[str] = set()
    skims: dict[str, Ends | None] = {}

    def attempt(path: str) -> TrainerState | None:
        if path in states:
            return states[path]
        if path in failures:
            return None
        ends = skims.get(path)
        try:
            if ends is not None and ends.whole is not None:
                states[path] = parse_state(ends.whole, path)
            else:
                states[path] = load_state(path)
        except StateFileError as exc:
            failures[path] = exc.reason
            if exc.unreadable:
                unreadable.add(path)
            return None
        return states[path]

    # Parsing every checkpoint's file costs time quadratic in the checkpoints (each holds the
    # history so far): only each training's newest file is parsed whole; of the others, the
    # ends are read.
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

    def lineage_of(path: str) -> Lineage | None:
        """Return the Lineage of a trainer_state.json, None when it cannot be read."""
        ends = skim(path)
        if ends is not None:
            entries = parse_entries(ends)
            if entries is not None:
                found, enough = newest_losses(entries)
                if enough:
                    step = _int_or_none(ends.global_step)
                    return Lineage(step, found, settings_of(ends.closing))
            # The tail held too few losses to tell the trainings apart: read the whole file.
        own = attempt(path)
        if own is None:
            return None
        return Lineage(own.global_step, newest_losses(own.log_history)[0], own.settings)

    folders = _resolve_steps(checkpoints_of(location), recorded_step, warnings)
    files: list[tuple[int, str, CheckpointDir | None]] = []
    if location.state_file is not None:
        root_step = recorded_step(location.state_file)
        if location.state_file in failures:
            warnings.append(f"{location.state_file} {failures[location.state_file]}")
        else:
            files.append((root_step or 0, location.state_file, None))
    files.extend((f.step or 0, os.path.join(f.path, STATE_FILE), f) for f in folders)
    # Newest first, the root file before a folder of its step (it may hold the closing entry):
    # the first file of each training met is its newest, the only one parsed whole.
    files.sort(key=lambda f: (f[0], f[2] is None), reverse=True)

    trainings: list[_Training] = []
    left_out: list[tuple[CheckpointDir, str]] = []
    for _, path, folder in files:
        lineage = lineage_of(path)
        if lineage is None:
            if folder is None:
                warnings.append(f"{path} {failures[path]}")
            else:
                left_out.append((folder, failures[path]))
            continue
        if folder is not None and lineage.global_step not in (None, folder.step):
            left_out.append((folder, f"says global_step {lineage.global_step}"))
            continue
        home = next((t for t in trainings if belongs(lineage, t.digest, t.state.settings)), None)
        if home is None:
            parsed = attempt(path)
            if parsed is None:  # its ends looked whole but its middle does not parse
                if folder is None:
                    warnings.append(f"{path} {failures[path]}")
                else:
                    left_out.append((folder, failures[path]))
                continue
            home = _Training(parsed, digest_history(parsed.log_history))
            trainings.append(home)
        home.steps.append(lineage.global_step or 0)
        if folder is not None:
            home.folders.append(DiskCheckpoint(folder.name, folder.step or 0, True))
    if not trainings:
        # Name the first few files: a run of fifty broken saves must still read as one line.
        listed = [f"{p} {r}" for p, r in failures.items()]
        reasons = "; ".join(listed[:2])
        if len(listed) > 2:
            reasons += f"; and {len(listed) - 2} more {STATE_FILE} files that cannot be read"
        raise StateFileError(
            location.run_dir, f"no readable trainer_state.json ({reasons or 'none found'})"
        )
    # What cannot be placed is shown with the newest training, as a folder that is no candidate.
    newest = trainings[0]
    newest.warnings.extend(_left_out_warnings(left_out, newest.state.global_step, unreadable))
    newest.folders.extend(DiskCheckpoint(f.name, f.step or 0, False) for f, _ in left_out)
    trainings.sort(key=_age)
    if len(trainings) > 1:
        warnings.append(
            f"holds {len(trainings)} trainings (steps "
            f"{_and(_span(t.steps) for t in trainings)}); audited separately"
        )
    held = {c.step: n for n, t in enumerate(trainings, 1) for c in t.folders if c.usable}
    return tuple(
        RunRecord(
            location.run_dir,
            t.state,
            tuple(sorted(t.folders, key=lambda c: c.step)),
            False,
            (*warnings, *t.warnings),
            t.digest,
            training=number,
            trainings=len(trainings),
            overwritten=frozenset(step for step, n in held.items() if n != number),
        )
        for number, t in enumerate(trainings, 1)
    )


@dataclass
class _Training:
    """One training of an output_dir while its checkpoints are placed."""

    state: TrainerState
    digest: Digest
    folders: list[DiskCheckpoint] = field(default_factory=list)
    #: The global_step of each of its files.
    steps: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _age(training: _Training) -> tuple[int, int]:
    """Sort key: oldest first by the modification time of its newest file (whole seconds, so
    a folder copied at once sorts by step), then by step."""
    try:
        changed = int(os.stat(training.state.path).st_mtime)
    except OSError:
        changed = 0
    return changed, training.state.global_step or 0


def _span(steps: list[int]) -> str:
    low, high = min(steps), max(steps)
    return f"{low}-{high}" if low != high else str(low)


def _and(items: Iterable[str]) -> str:
    listed = list(items)
    return ", ".join(listed[:-1]) + " and " + listed[-1] if len(listed) > 1 else "".join(listed)


def _left_out_warnings(
    left_out: list[tuple[CheckpointDir, str]], newest: int | None, unreadable: set[str]
) -> list[str]:
    """Return one line per reason a checkpoint folder is no candidate, naming its folders.
    `unreadable` holds the files the system would not read (no save in progress, whatever step)."""
    reasons: dict[str, list[str]] = {}
    for folder, reason in sorted(left_out, key=lambda item: item[0].step or 0):
        in_progress = (
            newest is not None
            and (folder.step or 0) > newest
            and "global_step" not in reason
            and os.path.join(folder.path, STATE_FILE) not in unreadable
        )
        if in_progress:
            # Training still running: the Trainer writes trainer_state.json last in a save.
            line = (
                "looks like a save in progress (newer than the history, and its "
                f"{STATE_FILE} cannot be read yet): not a candidate; the run is audited from the "
                "rest"
            )
            reasons.setdefault(line, []).append(f"{folder.name}/")
        elif "does not exist" in reason:
            line = (
                f"has no {STATE_FILE} (still being written, or the save was interrupted): "
                "not a candidate"
            )
            reasons.setdefault(line, []).append(f"{folder.name}/")
        elif reason.startswith("says global_step"):
            line = f"{reason}, not {folder.step}: the folder was renamed or copied; not a candidate"
            reasons.setdefault(line, []).append(f"{folder.name}/{STATE_FILE}")
        else:
            reasons.setdefault(f"{reason}: not a candidate", []).append(
                f"{folder.name}/{STATE_FILE}"
            )
    lines = []
    for line, names in reasons.items():
        if len(names) == 1:
            lines.append(f"{names[0]} {line}")
            continue
        # A run of fifty broken saves must still read as one line.
        shown = names if len(names) <= 4 else [*names[:3], f"{len(names) - 3} more"]
        lines.append(f"{len(names)} checkpoints ({_and(shown)}): each {line}")
    return lines


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
