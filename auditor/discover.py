"""Walk the paths a user gives, through storage, and ask each source which folders are runs."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

from . import storage
from .errors import UsageError
from .sources import SOURCES, Folder, Found
from .sources.hf_trainer import LAST_CHECKPOINT, STATE_FILE, checkpoint_step
from .storage import Entry, ReadError, RemoteStorage, Storage

__all__ = ["LAST_CHECKPOINT", "STATE_FILE", "checkpoint_step", "discover", "without_runs"]

_NOT_A_RUN = (
    "is not a folder or a trainer_state.json; give a training output folder, a checkpoint "
    "folder, a trainer_state.json, an mlflow.db or a trainer_log.jsonl"
)


def discover(paths: list[str] | tuple[str, ...]) -> list[Found]:
    """Return every run found below `paths` (folders, files or URLs), each once, in path order.

    Raises UsageError for a path that does not exist, or that the system will not let us
    look at.
    """
    runs: list[Found] = []
    seen_dirs: set[object] = set()
    named = False  # a run named by its file, which a walk may find too
    for path in paths:
        store = storage.for_path(path)
        try:
            entry: Entry | None = store.stat(path)
        except ReadError as exc:
            # Missing, or a run inside a file (mlflow.db/<run id>): decided below. A path the
            # system will not let us look at is said so, not called missing.
            if storage.is_url(path) and exc.code != "missing":
                raise UsageError(f"{path}: {exc.reason}") from None  # the store's own words
            if exc.code not in ("missing", "dangling", "not_dir", "loop"):
                raise UsageError(f"{path}: {_cannot_enter(exc)}") from None
            entry = None
        if entry is None:
            from .sources.mlflow import find_database_run

            run = find_database_run(store, path)
            if run is None:
                raise UsageError(f"{path}: no such file or folder")
            runs.append(run)
            named = True
        elif not entry.is_dir:
            # A stray file among many paths (`scan outputs/*` with a README.md) is a row that
            # says so, never the end of the scan.
            runs.append(_file_run(entry))
            named = True
        else:
            if isinstance(store, RemoteStorage):
                # One listing of the whole tree instead of one request per folder.
                try:
                    store.list_tree(path)
                except ReadError as exc:
                    raise UsageError(f"{path}: {exc.reason}") from None
            runs.extend(_walk(store, path, seen_dirs))
    # No folder is walked twice, however it is reached (symlinks, overlapping paths): only a
    # run named by its file may be found again.
    return _each_once(runs) if named else runs


def _each_once(runs: list[Found]) -> list[Found]:
    """Return `runs` without the ones that name a run met before (by another path)."""
    seen: set[str] = set()
    once = []
    for run in runs:
        key = storage.canonical(run.run_dir)
        if key not in seen:
            seen.add(key)
            once.append(run)
    return once


def without_runs(paths: list[str] | tuple[str, ...], run_dirs: list[str]) -> list[str]:
    """Return the folders among `paths` (paths or URLs) below which none of `run_dirs` lies."""
    held = _holding(
        storage.canonical(d) if storage.is_url(d) else os.path.abspath(d) for d in run_dirs
    )
    # The same with symlinks resolved, asked for only when a path is not found in `held`
    # (a path that is a symlink to folders already scanned): resolving costs a stat per part.
    resolved: set[str] | None = None
    empty = []
    for path in paths:
        if storage.is_url(path):
            if storage.canonical(path) not in held and _is_folder(path):
                empty.append(path)
        elif os.path.isdir(path) and os.path.abspath(path) not in held:
            if resolved is None:
                local = (d for d in run_dirs if not storage.is_url(d))
                resolved = held | _holding(os.path.realpath(d) for d in local)
            if os.path.realpath(path) not in resolved:
                empty.append(path)
    return empty


def _holding(run_dirs: Iterable[str]) -> set[str]:
    """Return every folder that holds one of `run_dirs` (canonical names), the runs included."""
    held: set[str] = set()
    for folder in run_dirs:
        while folder not in held:
            held.add(folder)
            above = storage.parent(folder)
            if above == folder:
                break
            folder = above
    return held


def _is_folder(path: str) -> bool:
    try:
        return storage.for_path(path).stat(path).is_dir
    except ReadError:
        return False


def _cannot_enter(exc: ReadError) -> str:
    """Return why a folder cannot be entered, and the fix."""
    cause = exc.__cause__
    number = cause.errno if isinstance(cause, OSError) else None
    if number == errno.ENAMETOOLONG:
        fix = "the path is longer than the system allows: audit it from a folder nearer to it"
    elif exc.code == "denied":
        fix = "give read and search permission on it"
    elif isinstance(cause, OSError):
        fix = "check the folder"
    else:
        fix = f"{exc.reason}; check the folder"
    why = cause.strerror if isinstance(cause, OSError) and cause.strerror else exc.code
    return (
        f"cannot be listed ({why}), so runs below it are not audited; {fix}, "
        "or pass --allow-unreadable to let check pass without them"
    )


def _file_run(entry: Entry) -> Found:
    for source in SOURCES.values():
        found = source.find_file(entry)
        if found is not None:
            return found
    return Found("", entry.path, history_only=True, refused=_NOT_A_RUN)


def _walk(store: Storage, root: str, seen_dirs: set[object]) -> list[Found]:
    """Return the runs below the folder `root`, each folder listed once."""
    runs: list[Found] = []
    listed: dict[str, tuple[Entry, ...] | ReadError] = {}

    def listing(folder: str) -> tuple[Entry, ...] | ReadError:
        if folder not in listed:
            try:
                listed[folder] = tuple(store.listdir(folder))
            except ReadError as exc:
                listed[folder] = exc
        return listed[folder]

    def look(folder: str) -> tuple[Entry, ...]:
        entries = listing(folder)
        return () if isinstance(entries, ReadError) else entries

    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            identity = store.identity(folder)
        except ReadError as exc:
            if exc.code != "missing":  # else removed while the walk ran
                runs.append(Found("", folder, refused=_cannot_enter(exc)))
            continue
        if identity in seen_dirs:
            continue
        seen_dirs.add(identity)
        entries = listing(folder)
        listed.pop(folder, None)
        if isinstance(entries, ReadError):
            if entries.code != "missing":
                runs.append(Found("", folder, refused=_cannot_enter(entries)))
            continue
        offered = Folder(folder, entries, given=folder == root, look=look)
        run = next((f for s in SOURCES.values() if (f := s.find(offered)) is not None), None)
        owned = set(run.owned) if run is not None else set()
        if run is not None:
            runs.append(run)
        stack.extend(
            e.path
            for e in reversed(entries)
            if e.is_dir and e.name not in owned and not e.name.startswith(".")
        )
    runs.sort(key=lambda r: r.run_dir)
    return runs
