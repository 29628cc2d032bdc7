"""Walk the paths a user gives and find every Trainer run (output_dir) below them, once each."""

from __future__ import annotations

import errno
import os
import re
from typing import Any, NamedTuple

from .errors import UsageError

STATE_FILE = "trainer_state.json"
#: The Trainer's TensorBoardCallback writes into <output_dir>/runs/<date>_<host>/.
TENSORBOARD_FOLDER = "runs"
# ASCII digits only: int() also reads Arabic-Indic or fullwidth digits, which no Trainer writes.
_CHECKPOINT = re.compile(r"^checkpoint-([0-9]+)$")
# The Trainer's hub_strategy="checkpoint" keeps a copy of the newest checkpoint under this name.
LAST_CHECKPOINT = "last-checkpoint"
# Recent Trainer versions stage a save in tmp-checkpoint-N and rename it when complete.
_STAGING = re.compile(r"^(tmp-checkpoint-[0-9]+|checkpoint-[0-9]+\..+)$")
_LOOKS_LIKE_CHECKPOINT = re.compile(r"^checkpoint-")


class CheckpointDir(NamedTuple):
    """A checkpoint folder on disk. `step` is None for last-checkpoint until its file is read."""

    name: str
    path: str
    step: int | None


class RunLocation(NamedTuple):
    """Where one run lives: its folder and its root trainer_state.json. Its checkpoint folders
    are listed when it is read (`checkpoints_of`): a sweep of thousands of runs is not held in
    memory folder by folder.

    `history_only` runs (a bare trainer_state.json, one checkpoint folder given alone, or an
    output folder without checkpoint folders) have no checkpoint folders to choose from: every
    evaluated step is a candidate. A folder the walk could not enter is a location `refused`
    (why, and the fix): runs may hide below it, so it is reported, never skipped.
    """

    run_dir: str
    state_file: str | None
    history_only: bool = False
    notes: tuple[str, ...] = ()
    #: Why this path is no run that can be read (a stray file given by the user, a folder the
    #: walk cannot enter): reported as an unreadable run, never skipped.
    refused: str | None = None
    #: The `auditor.sources.Found` of a run another framework wrote (Lightning, MLflow...).
    found: Any = None
    #: A Trainer run with a runs/ folder: its TensorBoard args may name the Trainer's metric.
    tensorboard: bool = False
    #: Subfolders named like checkpoints that are runs of their own (see `_holds_checkpoints`).
    not_checkpoints: tuple[str, ...] = ()


class _Listing(NamedTuple):
    state_file: str | None
    checkpoints: list[CheckpointDir]
    notes: list[str]
    subfolders: list[str]


def checkpoint_step(name: str) -> int | None:
    """Return N for a folder named checkpoint-N (leading zeros allowed), else None."""
    match = _CHECKPOINT.match(name)
    return int(match.group(1)) if match else None


def discover(paths: list[str] | tuple[str, ...]) -> list[RunLocation]:
    """Return every run found below `paths`, each once, in path order.

    Raises UsageError for a path that does not exist or is neither a folder nor a JSON file.
    """
    runs: list[RunLocation] = []
    seen_runs: set[str] = set()
    seen_dirs: set[tuple[int, int]] = set()
    for path in paths:
        try:
            os.stat(path)
        except OSError as exc:
            # Missing, or a run inside a file (mlflow.db/<run id>): decided below. A path the
            # system will not let us look at is said so, not called missing.
            if exc.errno in (errno.EACCES, errno.EPERM, errno.ENAMETOOLONG):
                raise UsageError(f"{path}: {_cannot_enter(exc)}") from None
        if os.path.isfile(path):
            # A stray file among many paths (`scan outputs/*` with a README.md) is a row that
            # says so, never the end of the scan.
            framework = _framework_file(path)
            if framework is not None:
                found = [framework]
            else:
                refused = (
                    None
                    if path.endswith(".json")
                    else "is not a folder or a trainer_state.json; give a training output "
                    "folder, a checkpoint folder, a trainer_state.json, an mlflow.db or a "
                    "trainer_log.jsonl"
                )
                found = [RunLocation(path, path, history_only=True, refused=refused)]
        elif os.path.isdir(path):
            name = os.path.basename(os.path.normpath(path))
            is_checkpoint = checkpoint_step(name) is not None or name == LAST_CHECKPOINT
            if is_checkpoint and not _holds_checkpoints(path):
                state = os.path.join(path, STATE_FILE)
                found = [RunLocation(path, state, history_only=True)]
            else:
                found = _walk(path, seen_dirs)
        else:
            framework = _framework_file(path)
            if framework is None:
                raise UsageError(f"{path}: no such file or folder")
            found = [framework]
        for run in found:
            key = os.path.realpath(run.run_dir)
            if key not in seen_runs:
                seen_runs.add(key)
                runs.append(run)
    return runs


def without_runs(paths: list[str] | tuple[str, ...], run_dirs: list[str]) -> list[str]:
    """Return the folders among `paths` below which none of `run_dirs` lies."""
    found = {os.path.abspath(d) for d in run_dirs} | {os.path.realpath(d) for d in run_dirs}

    def holds_a_run(folder: str) -> bool:
        return any(run == folder or run.startswith(folder.rstrip(os.sep) + os.sep) for run in found)

    return [
        path
        for path in paths
        if os.path.isdir(path)
        and not holds_a_run(os.path.abspath(path))
        and not holds_a_run(os.path.realpath(path))
    ]


def checkpoints_of(location: RunLocation) -> tuple[CheckpointDir, ...]:
    """Return the checkpoint folders of `location` as they are now, in step order
    (last-checkpoint/ last); none for a history-only run or a folder that cannot be listed."""
    if location.history_only:
        return ()
    try:
        listing = _list(location.run_dir, location.not_checkpoints)
    except OSError:
        return ()
    return tuple(listing.checkpoints)


def _cannot_enter(exc: OSError) -> str:
    """Return why a folder cannot be entered, and the fix."""
    if exc.errno == errno.ENAMETOOLONG:
        fix = "the path is longer than the system allows: audit it from a folder nearer to it"
    elif exc.errno in (errno.EACCES, errno.EPERM):
        fix = "give read and search permission on it"
    else:
        fix = "check the folder"
    return (
        f"cannot be listed ({exc.strerror}), so runs below it are not audited; {fix}, "
        "or pass --allow-unreadable to let check pass without them"
    )


def _holds_checkpoints(folder: str) -> bool:
    """Return True when `folder`, named like a checkpoint, holds checkpoint folders: it is the
    output folder of a run (a Trainer's output_dir may be named checkpoint-N), not a save."""
    try:
        # A folder's link count is 2 plus its subfolders where the file system keeps it (1 where
        # it does not): a checkpoint without subfolders, the usual one, costs no listing.
        if os.stat(folder).st_nlink == 2:
            return False
        with os.scandir(folder) as entries:
            return any(
                (checkpoint_step(e.name) is not None or e.name == LAST_CHECKPOINT) and e.is_dir()
                for e in entries
            )
    except OSError:
        return False


def _list(folder: str, not_checkpoints: tuple[str, ...] | None = None) -> _Listing:
    """Return what `folder` holds that matters here; raise OSError when it cannot be listed.

    Subfolders named like checkpoints are looked into (a stat each) unless `not_checkpoints`
    already names those that are runs, as the walk found them.
    """
    with os.scandir(folder) as entries:
        listing = sorted(entries, key=lambda e: e.name)
    checkpoints: list[CheckpointDir] = []
    notes: list[str] = []
    state_file = None
    subfolders: list[str] = []
    for entry in listing:
        name = entry.name
        if name == STATE_FILE:
            state_file = entry.path
            continue
        try:
            is_dir = entry.is_dir()
        except OSError as exc:
            # A link to itself or to nothing is no folder; anything else (no permission to
            # look) might be one: the walk tries to enter it, and says so when it cannot.
            is_dir = exc.errno not in (errno.ELOOP, errno.ENOENT)
        if not is_dir:
            continue
        step = checkpoint_step(name)
        if (step is not None or name == LAST_CHECKPOINT) and (
            name in not_checkpoints
            if not_checkpoints is not None
            else _holds_checkpoints(entry.path)
        ):
            subfolders.append(entry.path)
        elif step is not None:
            checkpoints.append(CheckpointDir(name, entry.path, step))
        elif name == LAST_CHECKPOINT:
            checkpoints.append(CheckpointDir(name, entry.path, None))
        elif _STAGING.match(name):
            notes.append(f"{name}/ looks like a checkpoint still being written: skipped")
        elif _LOOKS_LIKE_CHECKPOINT.match(name):
            notes.append(
                f"{name}/ is not a checkpoint-<step> folder (the step must be a whole "
                "number): skipped"
            )
        elif not name.startswith("."):
            subfolders.append(entry.path)
    checkpoints.sort(key=lambda c: (c.step is None, c.step or 0, c.name))
    return _Listing(state_file, checkpoints, notes, subfolders)


def _walk(root: str, seen_dirs: set[tuple[int, int]]) -> list[RunLocation]:
    runs: list[RunLocation] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder)
            # A symlink may lead back up the tree or to a folder already walked: visit each once.
            identity = (info.st_dev, info.st_ino)
            if identity in seen_dirs:
                continue
            seen_dirs.add(identity)
            listing = _list(folder)
        except FileNotFoundError:
            continue  # removed while the walk ran
        except OSError as exc:
            runs.append(RunLocation(folder, None, refused=_cannot_enter(exc)))
            continue
        subfolders = listing.subfolders
        if listing.checkpoints or listing.state_file is not None:
            runs.append(
                RunLocation(
                    folder,
                    listing.state_file,
                    history_only=not listing.checkpoints,
                    notes=tuple(listing.notes),
                    tensorboard=os.path.join(folder, TENSORBOARD_FOLDER) in subfolders,
                    not_checkpoints=tuple(
                        os.path.basename(sub)
                        for sub in listing.subfolders
                        if _CHECKPOINT.match(os.path.basename(sub))
                        or os.path.basename(sub) == LAST_CHECKPOINT
                    ),
                )
            )
        else:
            framework = _framework_folder(folder)
            if framework is not None:
                runs.append(framework)
                owned = {os.path.join(folder, name) for name in framework.found.owned}
                subfolders = [s for s in subfolders if s not in owned]
        stack.extend(reversed(subfolders))
    runs.sort(key=lambda r: r.run_dir)
    return runs


def _framework_folder(folder: str) -> RunLocation | None:
    """Return the run of another framework that `folder` is (Lightning, MLflow...), if any."""
    from .sources.wiring import find_run

    found = find_run(folder)
    if found is None:
        return None
    return RunLocation(found.run_dir, None, found.history_only, found.notes, found=found)


def _framework_file(path: str) -> RunLocation | None:
    from .sources.wiring import find_file

    found = find_file(path)
    if found is None:
        return None
    return RunLocation(found.run_dir, None, found.history_only, found.notes, found=found)
