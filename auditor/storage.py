"""The only door to bytes: list a folder, stat a path, read a file or byte ranges, local or remote.

A plain path is read with `os` (fsspec is never imported for a local audit); a URL with a
protocol (`s3://`, `gs://`, `hf://`, any fsspec protocol) is read through fsspec, installed by
`pip install 'checkpoint-auditor[remote]'`.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import StateFileError, UsageError

REMOTE_INSTALL = "pip install 'checkpoint-auditor[remote]'"
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_LFS_LIMIT_NOTE = "check the disk or the mount"
# Non-blocking: a FIFO under a file's name would otherwise hang the scan before it is refused.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


class Entry(NamedTuple):
    """One name in a folder (or one path stat'ed): `size` in bytes and `mtime` in seconds since
    the epoch, None where the store does not say."""

    name: str
    path: str
    is_dir: bool
    size: int | None = None
    mtime: float | None = None


class Range(NamedTuple):
    """Bytes [start, end) of the file at `path`; `end` None reads to the end of the file, and a
    negative `start` counts from the end (local files only: a store may ignore such a range).
    `size` is the file's size when known (from a listing): it lets an over-long reply be cut."""

    path: str
    start: int = 0
    end: int | None = None
    size: int | None = None


class ReadError(StateFileError):
    """A path could not be listed or read. `code` says why, for decisions; the message says it
    for people: "missing", "dangling" (a symlink to nothing), "denied", "folder", "not_file",
    "not_dir", "loop", "io"."""

    def __init__(self, path: str, code: str, reason: str) -> None:
        # The system would not read a file that is there: unlike a missing one, no save in
        # progress.
        super().__init__(path, reason, unreadable=code in ("denied", "io"))
        self.code = code


@dataclass
class Traffic:
    """What a storage has read so far: requests sent and bytes received."""

    requests: int = 0
    bytes: int = 0

    def add(self, requests: int, received: int) -> None:
        self.requests += requests
        self.bytes += received


def is_url(path: str) -> bool:
    """Return True when `path` names a protocol (`s3://...`): it is read through fsspec."""
    return "://" in path and _URL.match(path) is not None


def join(folder: str, *names: str) -> str:
    """Return the path of `names` (a name, or a subfolder's name and a name inside it) inside
    `folder`, in the folder's own style (path or URL)."""
    if is_url(folder):
        return folder.rstrip("/") + "/" + "/".join(names)
    return os.path.join(folder, *names)


def basename(path: str) -> str:
    """Return the last part of a path or URL, trailing slashes ignored."""
    if is_url(path):
        return path.rstrip("/").rsplit("/", 1)[-1]
    return os.path.basename(os.path.normpath(path))


def canonical(path: str) -> str:
    """Return the one name of what `path` names, however it is reached (symlinks resolved)."""
    return path.rstrip("/") if is_url(path) else os.path.realpath(path)


def parent(path: str) -> str:
    """Return the folder holding `path` (a path or a URL)."""
    if is_url(path):
        return path.rstrip("/").rsplit("/", 1)[0]
    return os.path.dirname(os.path.normpath(path))


class Storage:
    """Reads one kind of location. `for_path` gives the right one for a path or URL."""

    def __init__(self) -> None:
        self.traffic = Traffic()
        self._lock = threading.Lock()

    def listdir(self, folder: str) -> list[Entry]:
        """Return the entries of `folder` sorted by name; raise ReadError when it cannot be
        listed (code "missing", "denied", "not_dir" or "io")."""
        raise NotImplementedError

    def stat(self, path: str) -> Entry:
        """Return the Entry of `path`; raise ReadError ("missing", "denied", "io")."""
        raise NotImplementedError

    def identity(self, path: str) -> object:
        """Return what tells the folder at `path` apart from every other, however it is
        reached (a symlink may lead back up a tree); raise ReadError."""
        return path.rstrip("/")

    def size_of(self, path: str) -> int | None:
        """Return the size of the file at `path` when ranges need it (a remote store's, known
        from its listing), None when they do not (a local file's); raise ReadError."""
        return None

    def read(self, path: str) -> bytes:
        """Return the whole regular file at `path`; raise ReadError naming the fix."""
        data = self.read_ranges([Range(path)])[0]
        if isinstance(data, ReadError):
            raise data
        return data

    def read_ranges(self, ranges: Sequence[Range]) -> list[bytes | ReadError]:
        """Return the bytes of each range, in order, or the ReadError that range met (one bad
        file never stops the others). Remote stores send the requests concurrently."""
        raise NotImplementedError

    def stream(self, path: str, block: int) -> Generator[bytes, None, None]:
        """Yield the regular file at `path` from its start in blocks of at most `block` bytes,
        until it ends (a file too large to hold twice is parsed as it comes). Raises ReadError,
        as `read` does, when it cannot be opened or read."""
        raise NotImplementedError

    def _count(self, requests: int, received: int) -> None:
        with self._lock:
            self.traffic.add(requests, received)


class LocalStorage(Storage):
    """Paths on this machine, read with `os`."""

    def listdir(self, folder: str) -> list[Entry]:
        try:
            with os.scandir(folder) as found:
                listed = sorted(found, key=lambda e: e.name)
        except OSError as exc:
            raise _os_error(folder, exc) from exc
        entries = []
        for item in listed:
            try:
                is_dir = item.is_dir()
            except OSError as exc:
                # A link to itself or to nothing is no folder (listed, so that reading it says
                # so); anything else (no permission to look) might be one: the walk tries to
                # enter it, and says so when it cannot.
                is_dir = exc.errno not in (errno.ELOOP, errno.ENOENT)
            entries.append(Entry(item.name, item.path, is_dir))
        return entries

    def identity(self, path: str) -> object:
        try:
            info = os.stat(path)
        except OSError as exc:
            raise _os_error(path, exc) from exc
        return info.st_dev, info.st_ino

    def stat(self, path: str) -> Entry:
        try:
            info = os.stat(path)
        except OSError as exc:
            raise _os_error(path, exc) from exc
        return Entry(basename(path), path, stat.S_ISDIR(info.st_mode), info.st_size, info.st_mtime)

    def read_ranges(self, ranges: Sequence[Range]) -> list[bytes | ReadError]:
        replies: list[bytes | ReadError] = []
        at = 0
        while at < len(ranges):
            # The ranges of one file, side by side, are read through one descriptor.
            path = ranges[at].path
            following = at + 1
            while following < len(ranges) and ranges[following].path == path:
                following += 1
            replies.extend(self._read_file(path, ranges[at:following]))
            at = following
        return replies

    def stream(self, path: str, block: int) -> Generator[bytes, None, None]:
        descriptor, info = self._open(path)
        try:
            done = 0
            # Up to the size it had when opened: no last read to find the end.
            while done < info.st_size:
                try:
                    data = os.read(descriptor, min(block, info.st_size - done))
                except OSError as exc:
                    raise _unreadable(path, exc) from exc
                if not data:
                    return
                done += len(data)
                yield data
        finally:
            os.close(descriptor)

    def _open(self, path: str) -> tuple[int, os.stat_result]:
        """Return a descriptor of the regular file at `path` and its stat; raise ReadError."""
        try:
            descriptor = os.open(path, _READ_FLAGS)
        except OSError as exc:
            raise _os_error(path, exc) from exc
        info = os.fstat(descriptor)
        if stat.S_ISREG(info.st_mode):
            return descriptor, info
        os.close(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise _folder_error(path)
        # A device (/dev/zero) would be read forever, a pipe would wait for a writer.
        raise ReadError(
            path,
            "not_file",
            "is not a regular file (a pipe, socket or device); put the real file there",
        )

    def _read_file(self, path: str, ranges: Sequence[Range]) -> list[bytes | ReadError]:
        try:
            descriptor, info = self._open(path)
        except ReadError as exc:
            return [exc] * len(ranges)
        try:
            replies: list[bytes | ReadError] = []
            size = info.st_size
            asked = 0
            for wanted in ranges:
                asked += -wanted.start if wanted.start < 0 else (wanted.end or size) - wanted.start
            if size <= asked:
                # No more bytes than the ranges ask for: one read, each range cut from it.
                whole = os.pread(descriptor, size, 0)
                return [
                    whole[max(0, size + r.start) if r.start < 0 else r.start : r.end]
                    for r in ranges
                ]
            for wanted in ranges:
                if wanted.start < 0:
                    start = max(0, size + wanted.start)
                    replies.append(os.pread(descriptor, size - start, start))
                elif wanted.end is None:
                    os.lseek(descriptor, wanted.start, os.SEEK_SET)
                    with os.fdopen(os.dup(descriptor), "rb") as handle:
                        replies.append(handle.read())
                else:
                    length = max(0, wanted.end - wanted.start)
                    replies.append(os.pread(descriptor, length, wanted.start))
            return replies
        except OSError as exc:
            return [_unreadable(path, exc)] * len(ranges)
        finally:
            os.close(descriptor)


class RemoteStorage(Storage):
    """Objects behind one fsspec filesystem (S3, GCS, the Hub, ...), named by URL."""

    def __init__(self, fs: Any, protocol: str) -> None:
        super().__init__()
        self.fs = fs
        self.protocol = protocol
        # Listings of whole trees, filled by `list_tree`: a folder below one is listed from here.
        self._tree: dict[str, list[Entry]] = {}

    def _key(self, url: str) -> str:
        return str(self.fs._strip_protocol(url)).rstrip("/")

    def _url(self, key: str) -> str:
        return f"{self.protocol}://{key.rstrip('/')}"

    def list_tree(self, root: str) -> None:
        """List every object below `root` at once (one paginated listing instead of one per
        folder) and answer `listdir` below it from that."""
        root_key = self._key(root)
        try:
            found = self.fs.find(root_key, withdirs=True, detail=True)
        except Exception as exc:  # the store's client raises its own errors (no credentials)
            raise _remote_error(root, exc, "listed") from exc
        self._count(1, 0)
        folders: dict[str, dict[str, Entry]] = {root_key: {}}
        for key, info in found.items():
            key = key.rstrip("/")
            if not key.startswith(root_key + "/"):
                continue
            entry = self._entry(key, info)
            if entry.is_dir:
                folders.setdefault(key, {})
            folder, name = key.rsplit("/", 1)
            folders.setdefault(folder, {})[name] = entry
            # Object stores have no folders, only keys: every prefix between the root and an
            # object is a folder of its own, listed in the one above it.
            while folder != root_key:
                above, name = folder.rsplit("/", 1)
                siblings = folders.setdefault(above, {})
                if name in siblings:
                    break
                siblings[name] = Entry(name, self._url(folder), True)
                folder = above
        for folder, names in folders.items():
            self._tree[folder] = sorted(names.values(), key=lambda e: e.name)

    def _entry(self, key: str, info: dict[str, Any]) -> Entry:
        is_dir = info.get("type") == "directory"
        size = info.get("size")
        return Entry(
            key.rsplit("/", 1)[-1],
            self._url(key),
            is_dir,
            None if is_dir or size is None else int(size),
            _mtime(info),
        )

    def size_of(self, path: str) -> int | None:
        return self.stat(path).size

    def listdir(self, folder: str) -> list[Entry]:
        key = self._key(folder)
        if key in self._tree:
            return self._tree[key]
        try:
            found = self.fs.ls(key, detail=True)
        except Exception as exc:  # the store's client raises its own errors (no credentials)
            raise _remote_error(folder, exc, "listed") from exc
        self._count(1, 0)
        entries = [
            self._entry(str(info["name"]).rstrip("/"), info)
            for info in found
            if str(info["name"]).rstrip("/") != key
        ]
        return sorted(entries, key=lambda e: e.name)

    def stat(self, path: str) -> Entry:
        key = self._key(path)
        folder, _, name = key.rpartition("/")
        if folder in self._tree:
            for entry in self._tree[folder]:
                if entry.name == name:
                    return entry
            raise ReadError(path, "missing", "no such file or folder")
        try:
            info = self.fs.info(key)
        except Exception as exc:  # the store's client raises its own errors (no credentials)
            raise _remote_error(path, exc, "read") from exc
        self._count(1, 0)
        return self._entry(key, info)

    def read_ranges(self, ranges: Sequence[Range]) -> list[bytes | ReadError]:
        if not ranges:
            return []
        keys = [self._key(r.path) for r in ranges]
        starts: list[int | None] = [r.start or None for r in ranges]
        ends: list[int | None] = [r.end for r in ranges]
        try:
            if getattr(self.fs, "async_impl", False):
                replies = list(self.fs.cat_ranges(keys, starts, ends, on_error="return"))
            else:
                replies = _threaded(self.fs, keys, starts, ends)
        except Exception as exc:  # the store's client raises its own errors (no credentials)
            return [_remote_error(r.path, exc) for r in ranges]
        self._count(len(ranges), sum(len(r) for r in replies if isinstance(r, bytes)))
        return [_checked(wanted, reply) for wanted, reply in zip(ranges, replies, strict=True)]

    def stream(self, path: str, block: int) -> Generator[bytes, None, None]:
        key = self._key(path)
        try:
            handle = self.fs.open(key, "rb", block_size=block, cache_type="none")
        except Exception as exc:  # the store's client raises its own errors (no credentials)
            raise _remote_error(path, exc) from exc
        with handle:
            while True:
                try:
                    data = handle.read(block)
                except Exception as exc:
                    raise _remote_error(path, exc) from exc
                self._count(1, len(data))
                if not data:
                    return
                yield data


def _threaded(
    fs: Any, keys: list[str], starts: list[int | None], ends: list[int | None]
) -> list[Any]:
    """Fetch ranges concurrently from a filesystem without async batch calls (the Hub's)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(index: int) -> Any:
        try:
            # No read-ahead cache: it would file a whole-object reply to a ranged request at
            # the range's offset, and hand back the wrong bytes at the right length.
            return fs.cat_file(keys[index], start=starts[index], end=ends[index], cache_type="none")
        except Exception as exc:  # returned, as cat_ranges(on_error="return") does
            return exc

    with ThreadPoolExecutor(max_workers=min(16, len(keys))) as pool:
        return list(pool.map(one, range(len(keys))))


#: Where a remote store takes its credentials and endpoint from, for messages.
_CREDENTIALS = (
    "check the credentials and the endpoint (AWS_* for S3, GOOGLE_APPLICATION_CREDENTIALS for "
    "GCS, HF_TOKEN for the Hub)"
)


def _remote_error(path: str, exc: BaseException, verb: str = "read") -> ReadError:
    """Return the ReadError for what a remote store's client raised on `path`."""
    if isinstance(exc, FileNotFoundError):
        return ReadError(path, "missing", "no such file or folder")
    if isinstance(exc, IsADirectoryError):
        return _folder_error(path)
    code = "denied" if isinstance(exc, PermissionError) else "io"
    return ReadError(path, code, f"cannot be {verb} ({type(exc).__name__}: {exc}); {_CREDENTIALS}")


def _checked(wanted: Range, reply: Any) -> bytes | ReadError:
    """Return the bytes `wanted` asked for out of `reply`, which a server may have sent whole
    (a range it ignored) or short: never trust a reply's length."""
    if isinstance(reply, FileNotFoundError):
        return ReadError(
            wanted.path, "missing", "does not exist (the save is incomplete, or it was deleted)"
        )
    if isinstance(reply, BaseException):
        return _remote_error(wanted.path, reply)
    data = bytes(reply)
    if wanted.start == 0 and wanted.end is None:
        return data
    size = wanted.size
    stop = wanted.end if size is None or wanted.end is None else min(wanted.end, size)
    if stop is None:
        stop = size
    if stop is None or len(data) == max(0, stop - wanted.start):
        return data
    if size is not None and len(data) == size:
        return data[wanted.start : wanted.end]  # the server ignored the range: cut it here
    return ReadError(
        wanted.path,
        "io",
        f"answered a request for bytes {wanted.start}-{stop} with {len(data)} bytes; "
        "the store (or a proxy before it) mangles ranged reads",
    )


def _mtime(info: dict[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "updated", "last_modified", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        timestamp = getattr(value, "timestamp", None)
        if timestamp is not None:
            return float(timestamp())
        if isinstance(value, str):
            from datetime import datetime

            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def _unreadable(path: str, exc: OSError) -> ReadError:
    return ReadError(path, "io", f"cannot be read ({exc.strerror}); {_LFS_LIMIT_NOTE}")


def _folder_error(path: str) -> ReadError:
    return ReadError(
        path, "folder", "is a folder, not a file; remove it or put the real file there"
    )


def _os_error(path: str, exc: OSError) -> ReadError:
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return ReadError(
                path,
                "dangling",
                f"is a symlink to {os.readlink(path)}, which is missing; "
                "restore the target or remove the link",
            )
        return ReadError(
            path, "missing", "does not exist (the save is incomplete, or it was deleted)"
        )
    if isinstance(exc, IsADirectoryError):
        return _folder_error(path)
    if isinstance(exc, NotADirectoryError):
        return ReadError(path, "not_dir", "is a file, not a folder")
    if exc.errno == errno.ELOOP:
        return ReadError(path, "loop", "is a symlink loop; point it at the real file or remove it")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ReadError(path, "denied", f"cannot be read ({exc.strerror}); check its permissions")
    return ReadError(path, "io", f"cannot be read ({exc.strerror}); {_LFS_LIMIT_NOTE}")


_LOCAL = LocalStorage()
_REMOTE: dict[str, RemoteStorage] = {}
_REMOTE_LOCK = threading.Lock()


def for_path(path: str) -> Storage:
    """Return the storage that reads `path`: local unless it is a URL. Raises UsageError naming
    the pip command when the URL needs fsspec (or its filesystem) and it is not installed."""
    match = _URL.match(path)
    if match is None:
        return _LOCAL
    protocol = match.group(1)
    with _REMOTE_LOCK:
        if protocol not in _REMOTE:
            _REMOTE[protocol] = RemoteStorage(_filesystem(protocol, path), protocol)
        return _REMOTE[protocol]


def _filesystem(protocol: str, url: str) -> Any:
    try:
        import fsspec
    except ImportError as exc:
        raise UsageError(
            f"{url}: reading a URL needs the remote extra; run: {REMOTE_INSTALL}"
        ) from exc
    try:
        return fsspec.filesystem(protocol)
    except ValueError as exc:  # fsspec: "Protocol not known"
        raise UsageError(f"{url}: {exc}; give a local path or an fsspec URL") from exc
    except ImportError as exc:  # fsspec knows the protocol, its package is missing
        raise UsageError(
            f"{url}: reading {protocol}:// needs a package that is not installed ({exc}); "
            f"run: {REMOTE_INSTALL}"
        ) from exc
    except Exception as exc:  # the store's client could not be set up (its configuration)
        raise UsageError(f"{url}: {type(exc).__name__}: {exc}; {_CREDENTIALS}") from exc


def remote_traffic() -> Traffic:
    """Return the requests sent and bytes received by this process from remote stores."""
    total = Traffic()
    with _REMOTE_LOCK:
        for store in _REMOTE.values():
            total.add(store.traffic.requests, store.traffic.bytes)
    return total
