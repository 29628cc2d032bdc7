"""The Hugging Face Trainer's runs: trainer_state.json, checkpoint-N/ and last-checkpoint/."""

from __future__ import annotations

import codecs
import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import long_history
from ..errors import StateFileError
from ..fastjson import loads
from ..lineage import Lineage, belongs, newest_losses, settings_of
from ..pair import Digest, digest_history
from ..pair import whole_number as _int_or_none
from ..storage import Entry, Range, ReadError, Storage, basename, join
from . import Best, Checkpoint, Folder, Found, RunRecord, register
from .trainer_ends import (
    Ends,
    end_ranges,
    ends_from,
    ends_of,
    parse_entries,
)

if TYPE_CHECKING:
    from ..config import Config

NAME = "hf_trainer"
STATE_FILE = "trainer_state.json"
#: The Trainer's TensorBoardCallback writes into <output_dir>/runs/<date>_<host>/.
RUNS_FOLDER = "runs"
#: LLaMA-Factory's log beside a Trainer run (see sources.llamafactory).
_LOG_FILE = "trainer_log.jsonl"
# ASCII digits only: int() also reads Arabic-Indic or fullwidth digits, which no Trainer writes.
_CHECKPOINT = re.compile(r"^checkpoint-([0-9]+)$")
# The Trainer's hub_strategy="checkpoint" keeps a copy of the newest checkpoint under this name.
LAST_CHECKPOINT = "last-checkpoint"
# Recent Trainer versions stage a save in tmp-checkpoint-N and rename it when complete.
_STAGING = re.compile(r"^(tmp-checkpoint-[0-9]+|checkpoint-[0-9]+\..+)$")
_LOOKS_LIKE_CHECKPOINT = re.compile(r"^checkpoint-")
_LFS_POINTER = b"version https://git-lfs"
#: How much of a file is looked at before it is read whole.
_HEAD_BYTES = 4096
#: orjson reads integers from here on (in size) as floats.
_ROUNDED_FROM = 2**63


def checkpoint_step(name: str) -> int | None:
    """Return N for a folder named checkpoint-N (leading zeros allowed), else None."""
    match = _CHECKPOINT.match(name)
    return int(match.group(1)) if match else None


def is_checkpoint_name(name: str) -> bool:
    """Return True for checkpoint-N and last-checkpoint."""
    return name == LAST_CHECKPOINT or checkpoint_step(name) is not None


class CheckpointDir(NamedTuple):
    """A checkpoint folder of a run, by name (a run's are sent to the process that reads it:
    no path each). `step` is None for last-checkpoint until its file is read."""

    name: str
    step: int | None


def state_file_of(found: Found) -> str | None:
    """Return the trainer_state.json a run is read from first (its own, beside its checkpoint
    folders; the file itself for a history-only run)."""
    return found.detail[0] if found.detail else None


def checkpoints_of(found: Found) -> tuple[CheckpointDir, ...]:
    """Return the checkpoint folders the walk listed for a run, in step order (last-checkpoint/
    last); none for a history-only run."""
    names = found.detail[1] if found.detail else ()
    return tuple(CheckpointDir(name, checkpoint_step(name)) for name in names)


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


class HfTrainer:
    """The Source of Hugging Face Trainer output folders (see `auditor.sources`)."""

    name = NAME

    def find(self, folder: Folder) -> Found | None:
        """A folder with a trainer_state.json or checkpoint-N/ folders is a run; a checkpoint
        folder named by the user, holding no checkpoint folders, is a run of its own history."""
        state_file = None
        checkpoints: list[CheckpointDir] = []
        notes: list[str] = []
        owned: list[str] = []
        others: list[str] = []
        for entry in folder.entries:
            name = entry.name
            if name == STATE_FILE:
                state_file = entry.path  # a folder of that name is said so when read
            elif not entry.is_dir:
                if name == _LOG_FILE:
                    others.append(name)
            elif (step := checkpoint_step(name)) is not None or name == LAST_CHECKPOINT:
                # Every run of a sweep has the same few names: one copy of each, not one a run
                # (a Found is kept for every run found until its audit).
                checkpoints.append(CheckpointDir(sys.intern(name), step))
            elif name == RUNS_FOLDER:
                others.append(name)
            elif _STAGING.match(name):
                notes.append(f"{name}/ looks like a checkpoint still being written: skipped")
                owned.append(name)
            elif _LOOKS_LIKE_CHECKPOINT.match(name):
                notes.append(
                    f"{name}/ is not a checkpoint-<step> folder (the step must be a whole "
                    "number): skipped"
                )
                owned.append(name)
        if folder.given and not checkpoints and is_checkpoint_name(basename(folder.path)):
            state = join(folder.path, STATE_FILE)
            inside = tuple(e.name for e in folder.entries if e.is_dir)
            return Found(NAME, folder.path, inside, history_only=True, detail=(state, (), ()))
        if state_file is None and checkpoints and folder.look is not None:
            # Without its own trainer_state.json (training still running, or no run at all),
            # a folder named like a checkpoint may be a run's output_dir: it holds checkpoints,
            # and is walked as a run of its own.
            look = folder.look
            checkpoints = [
                c for c in checkpoints if not _holds_checkpoints(look(join(folder.path, c.name)))
            ]
        if not checkpoints and state_file is None:
            return None
        owned.extend(c.name for c in checkpoints)
        checkpoints.sort(key=_step_order)
        return Found(
            NAME,
            folder.path,
            owned=tuple(owned),
            history_only=not checkpoints,
            notes=tuple(notes),
            detail=(state_file, tuple(c.name for c in checkpoints), tuple(others)),
        )

    def find_file(self, entry: Entry) -> Found | None:
        """A JSON file named alone is a history-only run."""
        if not entry.name.endswith(".json"):
            return None
        return Found(NAME, entry.path, history_only=True, detail=(entry.path, (), ()))

    def read(self, found: Found, store: Storage, config: Config | None = None) -> list[RunRecord]:
        """Return one RunRecord per training of `found`, oldest first; a run without a
        readable trainer_state.json is read from the history another writer left beside it
        (LLaMA-Factory's trainer_log.jsonl, else TensorBoard's runs/)."""
        others = found.detail[2] if found.detail else ()
        try:
            records = read_run(found, store)
        except StateFileError:
            fallback = None if found.history_only else _fallback(found, store, others)
            if fallback is None:
                raise
            return [fallback]
        if RUNS_FOLDER not in others:
            return list(records)
        from .tensorboard import best_and_settings, head_arguments

        metric = best_and_settings(head_arguments(store, found.run_dir))[0].metric
        if not metric:
            return list(records)
        return [replace(r, best=r.best._replace(metric=metric)) for r in records]


def _step_order(folder: CheckpointDir) -> tuple[bool, int, str]:
    """Sort key: by step, last-checkpoint/ (whose step its file says) last."""
    return folder.step is None, folder.step or 0, folder.name


def _holds_checkpoints(entries: Iterable[Entry]) -> bool:
    return any(e.is_dir and is_checkpoint_name(e.name) for e in entries)


def _fallback(found: Found, store: Storage, others: tuple[str, ...]) -> RunRecord | None:
    """Return a Trainer run read from trainer_log.jsonl or runs/, with its checkpoint folders;
    None when it has neither. Raises StateFileError when that history is broken too."""
    from . import llamafactory, tensorboard

    checkpoints = tuple(
        Checkpoint(c.name, c.step) for c in checkpoints_of(found) if c.step is not None
    )
    if _LOG_FILE in others:
        return llamafactory.read_run(store, found.run_dir, checkpoints)
    if RUNS_FOLDER in others and tensorboard.trainer_event_files(store, found.run_dir):
        return tensorboard.read_trainer_run(store, found.run_dir, checkpoints)
    return None


def parse_state(data: bytes, path: str) -> TrainerState:
    """Return the TrainerState in `data` (the bytes of `path`); raise StateFileError if unusable."""
    _refuse_nul(data[:_HEAD_BYTES], path)
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


def _refuse_nul(head: bytes, path: str) -> None:
    # JSON never holds a NUL byte: a file that opens with nothing else (space reserved for a
    # save that never came, a sparse file) is refused before gigabytes are read.
    if b"\x00" in head and not head.strip(b"\x00 \t\r\n"):
        raise StateFileError(
            path,
            "is not valid JSON (it starts with NUL bytes: a save that was never written?); "
            "restore it or delete it",
        )


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


def read_state(store: Storage, path: str) -> bytes | dict[str, Any]:
    """Return the bytes of the state file at `path`, or its top-level object when it is large
    enough to be parsed in pieces (see long_history); raise StateFileError."""
    blocks = store.stream(path, long_history.BLOCK_BYTES)
    try:
        parts: list[bytes] = []
        size = 0
        for block in blocks:
            if not parts:
                _refuse_nul(block[:_HEAD_BYTES], path)
            parts.append(block)
            size += len(block)
            if size >= long_history.PIECEWISE_FROM:
                document = long_history.parse_in_pieces(chain([b"".join(parts)], blocks))
                # A float global_step may be a rounded step past 64 bits: the whole parse
                # reads it exactly.
                if document is not None and not isinstance(document.get("global_step"), float):
                    return document
                return store.read(path)
        return parts[0] if len(parts) == 1 else b"".join(parts)
    finally:
        blocks.close()


def load_state(path: str, store: Storage | None = None) -> TrainerState:
    """Return the TrainerState of the trainer_state.json at `path` (a path or a URL); raise
    StateFileError naming the file and the fix."""
    from ..storage import for_path

    found = read_state(store or for_path(path), path)
    return parse_state(found, path) if isinstance(found, bytes) else _state_of(found, path)


class _Files:
    """The trainer_state.json files of one run: its newest read whole, the others by their two
    ends, asked for in one batch (each holds the whole history so far: parsing them all would
    cost time quadratic in the checkpoints, and reading them all, bytes). Each file is read
    once: a small one whole, which serves as its ends and its parse."""

    def __init__(self, store: Storage, whole: str | None, ends: list[str]) -> None:
        self.store = store
        self._read: dict[str, bytes | dict[str, Any] | StateFileError] = {}
        self._ends: dict[str, Ends | None] = {}
        wanted: list[Range] = []
        shapes: list[tuple[str, int | None, int]] = []
        for path in [whole] if whole is not None else []:
            try:
                size = store.size_of(path)
            except ReadError as exc:
                self._read[path] = exc
                continue
            if size is not None and size < long_history.PIECEWISE_FROM:
                wanted.append(Range(path, 0, None, size))
                shapes.append((path, None, 1))
            else:
                self._take(path)
        for path in ends:
            if path == whole or path in self._read:
                continue
            try:
                size = store.size_of(path)
            except ReadError as exc:
                self._read[path] = exc
                continue
            ranges = end_ranges(size)
            for start, end in ranges:
                wanted.append(Range(path, start, end, size))
            shapes.append((path, size, len(ranges)))
        replies = store.read_ranges(wanted)
        at = 0
        for path, size, count in shapes:
            parts = replies[at : at + count]
            at += count
            failed = _failed(parts)
            if failed is not None:
                self._read[path] = failed
            elif count == 1 and size is None:  # read whole
                self._read[path] = parts[0]
            else:
                self._keep(path, parts, size)

    def _keep(self, path: str, parts: list[Any], size: int | None) -> None:
        """Keep what the end ranges of `path` gave: the whole file when they hold it."""
        whole, self._ends[path] = ends_from(parts, size)
        if whole is not None:
            self._read[path] = whole

    def _take(self, path: str) -> None:
        try:
            self._read[path] = read_state(self.store, path)
        except StateFileError as exc:
            self._read[path] = exc

    def state(self, path: str) -> TrainerState:
        """Return the parsed file at `path`; raise StateFileError."""
        if path not in self._read:
            self._take(path)
        found = self._read[path]
        if isinstance(found, StateFileError):
            raise found
        return parse_state(found, path) if isinstance(found, bytes) else _state_of(found, path)

    def ends(self, path: str) -> Ends | None:
        """Return the Ends of the file at `path`, None when they cannot tell (parse it whole)."""
        if path in self._ends:
            return self._ends[path]
        found = self._read.get(path)
        if isinstance(found, bytes):
            self._ends[path] = ends_of(found, found) if found else None
        elif found is None:
            # Not asked for in the batch (last-checkpoint/ beside a root file): its ends now.
            try:
                size = self.store.size_of(path)
                parts = self.store.read_ranges(
                    [Range(path, a, b, size) for a, b in end_ranges(size)]
                )
            except ReadError as exc:
                parts = [exc]
            failed = _failed(parts)
            if failed is not None:
                self._read[path] = failed
                self._ends[path] = None
            else:
                self._keep(path, parts, size)
        else:
            self._ends[path] = None  # a read error or a document parsed in pieces
        return self._ends[path]


def _failed(replies: list[bytes | ReadError]) -> ReadError | None:
    """Return the first error among the replies to a file's ranges, if any."""
    for reply in replies:
        if isinstance(reply, ReadError):
            return reply
    return None


def read_run(found: Found, store: Storage) -> tuple[RunRecord, ...]:
    """Return one RunRecord per training found at `found`, oldest first; raise
    StateFileError when no state file is usable."""
    warnings = list(found.notes)
    state_file, checkpoints = state_file_of(found), checkpoints_of(found)
    if found.history_only:
        state = load_state(state_file or join(found.run_dir, STATE_FILE), store)
        return (
            _record(found.run_dir, state, digest_history(state.log_history), (), True, warnings),
        )

    # Each checkpoint's file path, built once.
    state_files = {c.name: join(found.run_dir, c.name, STATE_FILE) for c in checkpoints}

    def state_of(folder: CheckpointDir) -> str:
        return state_files[folder.name]

    # Only each training's newest file is parsed whole; of the others, the ends are read.
    whole = state_file or (
        state_of(checkpoints[-1]) if checkpoints and checkpoints[-1].step is not None else None
    )
    paths = [state_of(c) for c in checkpoints if c.step is not None]
    files = _Files(store, whole, paths)
    states: dict[str, TrainerState] = {}
    failures: dict[str, StateFileError] = {}

    def attempt(path: str) -> TrainerState | None:
        if path in states:
            return states[path]
        if path in failures:
            return None
        try:
            states[path] = files.state(path)
        except StateFileError as exc:
            failures[path] = exc
            return None
        return states[path]

    def recorded_step(path: str) -> int | None:
        ends = files.ends(path)
        if ends is not None:
            return _int_or_none(ends.global_step)
        state = attempt(path)
        return state.global_step if state is not None else None

    def lineage_of(path: str) -> Lineage | None:
        """Return the Lineage of a trainer_state.json, None when it cannot be read."""
        ends = files.ends(path)
        if ends is not None:
            entries = parse_entries(ends)
            if entries is not None:
                newest, enough = newest_losses(entries)
                if enough:
                    step = _int_or_none(ends.global_step)
                    return Lineage(step, newest, settings_of(ends.closing))
            # The tail held too few losses to tell the trainings apart: read the whole file.
        own = attempt(path)
        if own is None:
            return None
        return Lineage(own.global_step, newest_losses(own.log_history)[0], own.settings)

    folders = _resolve_steps(checkpoints, recorded_step, state_of, warnings)
    ordered: list[tuple[int, str, CheckpointDir | None]] = []
    if state_file is not None:
        root_step = recorded_step(state_file)
        if state_file in failures:
            warnings.append(f"{state_file} {failures[state_file].reason}")
        else:
            ordered.append((root_step or 0, state_file, None))
    ordered.extend((f.step or 0, state_of(f), f) for f in folders)
    # Newest first, the root file before a folder of its step (it may hold the closing entry):
    # the first file of each training met is its newest, the only one parsed whole.
    ordered.sort(key=lambda f: (f[0], f[2] is None), reverse=True)

    trainings: list[_Training] = []
    left_out: list[tuple[CheckpointDir, str, str | None]] = []
    for _, path, folder in ordered:
        # The first file met is the newest of a training, parsed whole: of its ends only its
        # step is needed. A later one is placed by the newest losses its ends hold.
        lineage = lineage_of(path) if trainings else None
        step = lineage.global_step if lineage is not None else recorded_step(path)
        if path in failures:
            if folder is None:
                warnings.append(f"{path} {failures[path].reason}")
            else:
                left_out.append((folder, failures[path].reason, _code(failures[path])))
            continue
        if folder is not None and step not in (None, folder.step):
            left_out.append((folder, f"says global_step {step}", _RENAMED))
            continue
        home = None
        if lineage is not None:
            for training in trainings:
                if belongs(lineage, training.digest, training.state.settings):
                    home = training
                    break
        if home is None:
            parsed = attempt(path)
            if parsed is None:  # its ends looked whole but its middle does not parse
                if folder is None:
                    warnings.append(f"{path} {failures[path].reason}")
                else:
                    left_out.append((folder, failures[path].reason, _code(failures[path])))
                continue
            home = _Training(parsed, digest_history(parsed.log_history))
            trainings.append(home)
        home.steps.append(step or 0)
        if folder is not None:
            home.folders.append(Checkpoint(folder.name, folder.step or 0, True))
    if not trainings:
        # Name the first few files: a run of fifty broken saves must still read as one line.
        listed = [f"{p} {r.reason}" for p, r in failures.items()]
        reasons = "; ".join(listed[:2])
        if len(listed) > 2:
            reasons += f"; and {len(listed) - 2} more {STATE_FILE} files that cannot be read"
        raise StateFileError(
            found.run_dir, f"no readable trainer_state.json ({reasons or 'none found'})"
        )
    # What cannot be placed is shown with the newest training, as a folder that is no candidate.
    newest = trainings[0]
    newest.warnings.extend(_left_out_warnings(left_out, newest.state.global_step))
    newest.folders.extend(Checkpoint(f.name, f.step or 0, False) for f, _, _ in left_out)
    if len(trainings) > 1:
        trainings.sort(key=lambda t: _age(t, store))
        warnings.append(
            f"holds {len(trainings)} trainings (steps "
            f"{_and(_span(t.steps) for t in trainings)}); audited separately"
        )
    held = {c.step: n for n, t in enumerate(trainings, 1) for c in t.folders if c.usable}
    return tuple(
        _record(
            found.run_dir,
            t.state,
            t.digest,
            tuple(sorted(t.folders, key=lambda c: c.step)),
            False,
            [*warnings, *t.warnings],
            training=number,
            trainings=len(trainings),
            overwritten=frozenset(step for step, n in held.items() if n != number),
        )
        for number, t in enumerate(trainings, 1)
    )


def _record(
    run_dir: str,
    state: TrainerState,
    digest: Digest,
    checkpoints: tuple[Checkpoint, ...],
    history_only: bool,
    warnings: list[str],
    **training: Any,
) -> RunRecord:
    """Return the neutral record of one training whose newest file is `state`."""
    return RunRecord(
        run_dir,
        NAME,
        state.log_history,
        checkpoints,
        history_only,
        Best(state.best_model_checkpoint, state.best_global_step, None, state.best_metric),
        warnings=tuple(warnings),
        history_path=state.path,
        history_digest=digest,
        **training,
    )


#: The left-out code of a checkpoint whose file says another step.
_RENAMED = "renamed"


def _code(error: StateFileError) -> str | None:
    """Return why a file could not be used, for decisions: a storage code, else None (its
    content is broken)."""
    return error.code if isinstance(error, ReadError) else None


@dataclass
class _Training:
    """One training of an output_dir while its checkpoints are placed."""

    state: TrainerState
    digest: Digest
    folders: list[Checkpoint] = field(default_factory=list)
    #: The global_step of each of its files.
    steps: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _age(training: _Training, store: Storage) -> tuple[int, int]:
    """Sort key: oldest first by the modification time of its newest file (whole seconds, so
    a folder copied at once sorts by step), then by step."""
    try:
        changed = int(store.stat(training.state.path).mtime or 0)
    except ReadError:
        changed = 0
    return changed, training.state.global_step or 0


def _span(steps: list[int]) -> str:
    low, high = min(steps), max(steps)
    return f"{low}-{high}" if low != high else str(low)


def _and(items: Iterable[str]) -> str:
    listed = list(items)
    return ", ".join(listed[:-1]) + " and " + listed[-1] if len(listed) > 1 else "".join(listed)


def _left_out_warnings(
    left_out: list[tuple[CheckpointDir, str, str | None]], newest: int | None
) -> list[str]:
    """Return one line per reason a checkpoint folder is no candidate, naming its folders.
    Each is (folder, reason, code): the code decides the line (`_code`, or "renamed")."""
    reasons: dict[str, list[str]] = {}
    for folder, reason, code in sorted(left_out, key=lambda item: item[0].step or 0):
        # A file the system would not read is no save in progress, whatever its step.
        in_progress = (
            newest is not None
            and (folder.step or 0) > newest
            and code not in (_RENAMED, "denied", "io")
        )
        if in_progress:
            # Training still running: the Trainer writes trainer_state.json last in a save.
            line = (
                "looks like a save in progress (newer than the history, and its "
                f"{STATE_FILE} cannot be read yet): not a candidate; the run is audited from the "
                "rest"
            )
            reasons.setdefault(line, []).append(f"{folder.name}/")
        elif code == "missing":
            line = (
                f"has no {STATE_FILE} (still being written, or the save was interrupted): "
                "not a candidate"
            )
            reasons.setdefault(line, []).append(f"{folder.name}/")
        elif code == _RENAMED:
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
    state_of: Callable[[CheckpointDir], str],
    warnings: list[str],
) -> list[CheckpointDir]:
    """Give last-checkpoint/ its step (from its file) and drop it when it duplicates a folder."""
    named = [c for c in checkpoints if c.step is not None]
    steps = {c.step for c in named}
    for folder in checkpoints:
        if folder.step is not None:
            continue
        step = recorded_step(state_of(folder))
        if step is None:
            warnings.append(f"{folder.name}/ has no readable global_step: skipped")
        elif step not in steps:
            named.append(CheckpointDir(folder.name, step))
            steps.add(step)
    named.sort(key=lambda c: c.step or 0)
    return named


SOURCE = register(HfTrainer())
