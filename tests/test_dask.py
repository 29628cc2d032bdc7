"""--scheduler: the per-run audits run on a real Dask cluster (LocalCluster on 127.0.0.1) and
the report is the one of a local run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from conftest import extra

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

pytest_plugins = ("servers.fixtures",)


@pytest.fixture(scope="module")
def cluster():
    extra("distributed")
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        yield cluster


def test_a_scan_on_a_dask_cluster_is_the_local_scan(cluster):
    scheduler = cluster.scheduler_address
    assert scheduler.startswith("tcp://127.0.0.1:")
    runner = CliRunner()
    local = runner.invoke(main, ["scan", str(FIXTURES), "--format", "json", "-q"])
    remote = runner.invoke(
        main, ["scan", str(FIXTURES), "--format", "json", "-q", "--scheduler", scheduler]
    )
    assert local.exit_code == remote.exit_code == 0
    assert remote.stdout == local.stdout
    # The cluster's workers ran the audits (the scheduler counts tasks by function name).
    assert any("audit_chunk" in name for name in cluster.scheduler.task_prefixes)


def test_check_on_a_dask_cluster_gives_the_local_verdict(cluster):
    scheduler = cluster.scheduler_address
    runner = CliRunner()
    local = runner.invoke(main, ["check", str(FIXTURES / "sweep")])
    remote = runner.invoke(main, ["check", str(FIXTURES / "sweep"), "--scheduler", scheduler])
    assert (remote.exit_code, remote.stdout) == (local.exit_code, local.stdout)


def test_a_scheduler_that_does_not_answer_is_an_error_naming_the_address():
    extra("distributed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    done = CliRunner().invoke(main, ["scan", str(FIXTURES / "sweep"), "--scheduler", address])
    assert done.exit_code == 2
    assert f"--scheduler {address}: cannot reach the Dask scheduler" in done.stderr


def test_a_scan_of_a_store_on_a_dask_cluster_is_the_scan_of_the_local_copy(stores):
    """The workers read the store themselves, without the listing the command made."""
    extra("distributed")
    from distributed import LocalCluster

    url = f"{stores.roots['s3']}/sweep"

    def scan(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "auditor", "scan", *args, "--format", "json", "-q"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **stores.env},
        )

    # Started after `stores`: its worker processes inherit the endpoint and the credentials.
    with LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0"
    ) as cluster:
        remote = scan(url, "--scheduler", cluster.scheduler_address)
        ran_there = any("audit_chunk" in name for name in cluster.scheduler.task_prefixes)
    here = scan(str(FIXTURES / "sweep"))
    assert remote.returncode == here.returncode == 0, remote.stderr
    assert remote.stdout.replace(url, str(FIXTURES / "sweep")) == here.stdout
    assert ran_there
