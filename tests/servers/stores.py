"""Start S3 (moto) and GCS (gcp-storage-emulator) servers on 127.0.0.1 and fill their buckets."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BUCKET = "runs"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def s3_server() -> Iterator[dict[str, str]]:
    """Run moto's S3 server; yield the environment a client needs to reach it (AWS_*)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        }
    finally:
        server.stop()


@contextmanager
def gcs_server() -> Iterator[dict[str, str]]:
    """Run the GCS emulator; yield the environment gcsfs needs to reach it."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    try:
        yield {
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}",
            # The emulator has no hierarchical-namespace API; gcsfs would probe it per bucket.
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        }
    finally:
        server.stop()


def upload(fs: Any, local: Path, prefix: str, batch_size: int | None = None) -> None:
    """Copy every file below `local` to `prefix` (bucket/key) on the filesystem `fs`,
    `batch_size` at a time (None: the filesystem's default)."""
    files = {
        f"{prefix}/{path.relative_to(local).as_posix()}": path.read_bytes()
        for path in sorted(local.rglob("*"))
        if path.is_file()
    }
    fs.pipe(files, batch_size=batch_size)
