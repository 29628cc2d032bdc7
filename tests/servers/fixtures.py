"""The `stores` fixture: fixtures/ copied into S3 and GCS servers and served as a Hub repo."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import pytest

from auditor import storage
from conftest import extra
from servers.hub import HubServer
from servers.stores import BUCKET, gcs_server, s3_server, upload

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
#: The parts of fixtures/ the GCS server holds (S3 and the Hub hold all of it).
GCS_PARTS = ("examples/lm_overfit_full", "sweep")


class Stores(NamedTuple):
    """Where fixtures/ lives in each store (URL roots) and the environment that reaches them."""

    roots: dict[str, str]
    env: dict[str, str]
    hub: HubServer

    def storage(self, url: str) -> storage.Storage:
        """Return the storage of `url`. huggingface_hub reads HF_ENDPOINT once, when first
        imported (perhaps by an earlier test): the Hub's filesystem is given the server here."""
        if not url.startswith("hf://"):
            return storage.for_path(url)
        from huggingface_hub import HfFileSystem

        hub = HfFileSystem(endpoint=self.hub.endpoint, skip_instance_cache=True)
        return storage.RemoteStorage(hub, "hf")


@pytest.fixture(scope="session")
def stores() -> Iterator[Stores]:
    """Start the three servers once per test session; fixtures/ is the same tree in each."""
    extra("fsspec", "s3fs", "gcsfs", "huggingface_hub", "moto.server", "gcp_storage_emulator")
    import fsspec

    with ExitStack() as stack:
        env = {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "0", "NO_GCE_CHECK": "true"}
        env.update(stack.enter_context(s3_server()))
        env.update(stack.enter_context(gcs_server()))
        hub = HubServer({"user/fixtures": str(FIXTURES)}).start()
        stack.callback(hub.stop)
        env["HF_ENDPOINT"] = hub.endpoint
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        stack.callback(_restore, saved)
        s3 = fsspec.filesystem("s3", skip_instance_cache=True)
        s3.mkdir(BUCKET)
        upload(s3, FIXTURES, f"{BUCKET}/fixtures")
        gs = fsspec.filesystem("gs", skip_instance_cache=True)
        # The emulator's in-memory store is not safe under concurrent writes, and slow: it
        # holds a part of fixtures/, the same paths as elsewhere.
        for part in GCS_PARTS:
            upload(gs, FIXTURES / part, f"{BUCKET}/fixtures/{part}", batch_size=1)
        yield Stores(
            {
                "s3": f"s3://{BUCKET}/fixtures",
                "gs": f"gs://{BUCKET}/fixtures",
                "hf": "hf://user/fixtures",
            },
            env,
            hub,
        )


def _restore(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
