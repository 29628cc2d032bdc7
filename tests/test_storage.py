"""storage: the same listings and bytes from a local folder, S3, GCS and the Hub (real servers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from auditor import storage
from auditor.errors import UsageError
from auditor.storage import Range, ReadError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RUN = "examples/lm_overfit_full"
STATE = f"{RUN}/checkpoint-100/trainer_state.json"

pytest_plugins = ("servers.fixtures",)


@pytest.fixture(params=["s3", "gs", "hf"])
def remote(request: pytest.FixtureRequest, stores) -> tuple[str, storage.Storage]:
    """The URL of fixtures/ in one store, and the storage that reads it."""
    url = stores.roots[request.param]
    return url, stores.storage(url)


def _tree(
    store: storage.Storage, root: str, folder: str = ""
) -> list[tuple[str, bool, int | None]]:
    """Every entry below root/folder as (relative path, is a folder, size), walked with listdir."""
    found = []
    for entry in store.listdir(storage.join(root, folder) if folder else root):
        relative = f"{folder}/{entry.name}" if folder else entry.name
        size = None if entry.is_dir else store.stat(storage.join(root, relative)).size
        found.append((relative, entry.is_dir, size))
        if entry.is_dir:
            found.extend(_tree(store, root, relative))
    return found


def test_a_remote_listing_is_the_local_one(remote) -> None:
    remote, store = remote
    local = storage.for_path(str(FIXTURES / RUN))
    expected = _tree(local, str(FIXTURES / RUN))
    assert _tree(store, storage.join(remote, RUN)) == expected
    # Listed as one tree up front, the same folders read the same, without one request each.
    assert isinstance(store, storage.RemoteStorage)
    store.list_tree(storage.join(remote, RUN))
    before = store.traffic.requests
    assert _tree(store, storage.join(remote, RUN)) == expected
    assert store.traffic.requests == before


def test_remote_bytes_and_ranges_are_the_local_ones(remote) -> None:
    remote, store = remote
    data = (FIXTURES / STATE).read_bytes()
    url = storage.join(remote, STATE)
    size = len(data)
    wanted = [
        Range(url),
        Range(url, 0, 100, size),
        Range(url, size - 300, size, size),
        Range(url, 50, None, size),
        Range(url, size - 10, size + 500, size),
        Range(storage.join(remote, f"{RUN}/checkpoint-100/missing.json")),
    ]
    before = store.traffic.bytes
    replies = store.read_ranges(wanted)
    assert replies[:5] == [data, data[:100], data[-300:], data[50:], data[-10:]]
    assert isinstance(replies[5], ReadError) and replies[5].code == "missing"
    assert store.traffic.bytes - before == sum(len(r) for r in replies[:5])


def test_a_range_answered_with_the_whole_file_is_cut_to_the_range(stores) -> None:
    # A server (or proxy) may ignore Range and send the object whole: the reply's length is
    # never trusted.
    data = (FIXTURES / STATE).read_bytes()
    stores.hub.ignore_ranges = True
    try:
        store = stores.storage(stores.roots["hf"])
        url = storage.join(stores.roots["hf"], STATE)
        head, tail = store.read_ranges(
            [Range(url, 0, 64, len(data)), Range(url, 100, 164, len(data))]
        )
    finally:
        stores.hub.ignore_ranges = False
    assert head == data[:64] and tail == data[100:164]


def test_a_reply_of_the_wrong_length_is_an_error_naming_the_file(stores) -> None:
    # Without the file's size the whole-file reply cannot be cut: refused, never misread.
    stores.hub.ignore_ranges = True
    try:
        url = storage.join(stores.roots["hf"], STATE)
        [reply] = stores.storage(url).read_ranges([Range(url, 0, 64)])
    finally:
        stores.hub.ignore_ranges = False
    assert isinstance(reply, ReadError) and reply.path == url
    assert "ranged reads" in reply.reason


def test_local_reads_refuse_what_is_not_a_regular_file(tmp_path: Path) -> None:
    local = storage.for_path(str(tmp_path))
    (tmp_path / "folder").mkdir()
    replies = local.read_ranges([Range(str(tmp_path / "folder")), Range(str(tmp_path / "none"))])
    assert [r.code for r in replies if isinstance(r, ReadError)] == ["folder", "missing"]
    with pytest.raises(ReadError) as missing:
        local.listdir(str(tmp_path / "none"))
    assert missing.value.code == "missing"


def test_a_url_of_an_unknown_protocol_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="nosuchproto://x"):
        storage.for_path("nosuchproto://x/y")


def test_without_the_remote_extra_a_url_names_the_pip_command() -> None:
    # Run where fsspec cannot be imported, as after a plain `pip install checkpoint-auditor`.
    code = (
        "import sys; sys.modules['fsspec'] = None\n"
        "from auditor import storage\n"
        "try:\n    storage.for_path('s3://bucket/run')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "UsageError s3://bucket/run: reading a URL needs the remote extra; "
        "run: pip install 'checkpoint-auditor[remote]'"
    )


def test_local_ranges_of_one_file_including_its_last_bytes(tmp_path: Path) -> None:
    data = bytes(range(256)) * 64
    path = tmp_path / "state.json"
    path.write_bytes(data)
    local = storage.for_path(str(path))
    wanted = [Range(str(path), 0, 100), Range(str(path), -300), Range(str(path), 50, None)]
    assert local.read_ranges(wanted) == [data[:100], data[-300:], data[50:]]
    # A negative start longer than the file reads the whole file.
    assert local.read_ranges([Range(str(path), -len(data) - 5)]) == [data]
