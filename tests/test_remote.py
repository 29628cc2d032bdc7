"""Runs in S3, GCS and on the Hub (real servers on 127.0.0.1): every command gives what it gives
on a local copy of the same tree, reading no more than it must."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import auditor
from auditor.sources.trainer_ends import end_ranges
from conftest import extra

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REPO = FIXTURES.parent

pytest_plugins = ("servers.fixtures",)


def ckpt_audit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command as a user would, in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "auditor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    ("store", "part"),
    [("s3", ""), ("gs", "sweep"), ("gs", "examples/lm_overfit_full"), ("hf", "")],
)
def test_a_scan_in_a_store_is_the_scan_of_the_local_copy(stores, store, part):
    url = stores.roots[store] + (f"/{part}" if part else "")
    local = FIXTURES / part if part else FIXTURES
    remote = ckpt_audit("scan", url, "--format", "json", env=stores.env)
    here = ckpt_audit("scan", str(local), "--format", "json")
    assert remote.returncode == here.returncode == 0, remote.stderr
    # Byte for byte, apart from where the runs are.
    assert remote.stdout.replace(url, str(local)) == here.stdout
    assert url in remote.stdout


@pytest.mark.parametrize(
    ("store", "command"),
    [
        ("s3", ("show", "examples/lm_overfit_full")),
        ("gs", ("show", "examples/lm_overfit_full")),
        ("hf", ("show", "examples/lm_overfit_full")),
        ("s3", ("check", "sweep")),
        ("hf", ("check", "sweep", "--format", "junit")),
        ("s3", ("scan", "sweep", "--format", "csv")),
        ("gs", ("scan", "sweep", "--format", "markdown")),
        ("s3", ("check", "examples/lm_overfit_full", "--deploy", "checkpoint-100")),
        ("gs", ("check", "examples/lm_overfit_full", "--deploy", "checkpoint-100")),
        ("hf", ("check", "examples/lm_overfit_full", "--deploy", "checkpoint-100")),
    ],
    ids=lambda c: c if isinstance(c, str) else " ".join(c),
)
def test_every_command_takes_a_url(stores, store, command):
    name, part, *rest = command
    url = f"{stores.roots[store]}/{part}"
    if "--deploy" in rest:  # the checkpoint folder to ship, in the store too
        rest[-1] = f"{url}/{rest[-1]}"
    remote = ckpt_audit(name, url, *rest, env=stores.env)
    if "--deploy" in rest:
        rest[-1] = rest[-1].replace(url, str(FIXTURES / part))
    here = ckpt_audit(name, str(FIXTURES / part), *rest)
    assert remote.returncode == here.returncode, remote.stderr
    assert "Traceback" not in remote.stderr

    # The same report; a table's columns are as wide as the longest place named.
    def words(text: str) -> list[str]:
        return [word for word in text.split() if set(word) != {"-"}]

    assert words(remote.stdout.replace(url, str(FIXTURES / part))) == words(here.stdout)


def test_the_report_of_a_store_is_written(stores, tmp_path):
    page = tmp_path / "report.html"
    done = ckpt_audit("report", f"{stores.roots['hf']}/sweep", "-o", str(page), env=stores.env)
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert "run-0003" in text
    assert f"audited below {stores.roots['hf']}/sweep:" in text


def test_the_chart_of_a_run_in_a_store_is_drawn(stores, tmp_path):
    extra("matplotlib")
    chart = tmp_path / "chart.png"
    url = f"{stores.roots['s3']}/examples/lm_overfit_full"
    done = ckpt_audit("plot", url, "-o", str(chart), env=stores.env)
    assert done.returncode == 0, done.stderr
    assert chart.read_bytes().startswith(b"\x89PNG")
    assert f"{url}: " in done.stderr


def test_a_store_that_ignores_ranges_gives_the_same_report(stores):
    # Every older checkpoint's head and tail come back as whole objects: cut to the ranges.
    url = f"{stores.roots['hf']}/examples/lm_overfit_full"
    local = FIXTURES / "examples" / "lm_overfit_full"
    stores.hub.ignore_ranges = True
    try:
        remote = ckpt_audit("scan", url, "--format", "json", env=stores.env)
    finally:
        stores.hub.ignore_ranges = False
    here = ckpt_audit("scan", str(local), "--format", "json")
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout.replace(url, str(local)) == here.stdout


def test_a_file_the_store_refuses_is_an_error_row_naming_it_and_the_credentials(stores):
    run = "examples/lm_overfit_full"
    url = f"{stores.roots['hf']}/{run}"
    files = sorted((FIXTURES / run).rglob("trainer_state.json"))
    stores.hub.refused = {str(p.relative_to(FIXTURES)) for p in files}
    try:
        scan = ckpt_audit("scan", url, "--format", "json", env=stores.env)
        gate = ckpt_audit("check", url, env=stores.env)
    finally:
        stores.hub.refused = set()
    assert scan.returncode == 0, scan.stderr
    (row,) = json.loads(scan.stdout)["runs"]
    assert row["verdict"] == "error"
    assert f"{url}/trainer_state.json cannot be read" in row["error"]
    assert "HF_TOKEN for the Hub" in row["error"]
    assert gate.returncode == 2
    assert "Traceback" not in scan.stderr + gate.stderr


def test_a_run_is_read_with_the_fewest_requests(stores):
    # One listing of the tree (and one look at the path given), the newest file whole, and of
    # every other trainer_state.json its head and tail (or the whole file when that is smaller).
    run = FIXTURES / "examples" / "lm_overfit_full"
    url = f"{stores.roots['s3']}/examples/lm_overfit_full"
    done = ckpt_audit("scan", url, "--format", "json", env=stores.env)
    assert done.returncode == 0, done.stderr
    newest = run / "trainer_state.json"
    older = sorted(run.glob("checkpoint-*/trainer_state.json"))
    requests = 2 + 1 + sum(len(end_ranges(p.stat().st_size)) for p in older)
    received = newest.stat().st_size + sum(
        end - start for p in older for start, end in end_ranges(p.stat().st_size)
    )
    assert any(len(end_ranges(p.stat().st_size)) == 2 for p in older)  # ranges were used
    match = re.search(r"read (\d+) requests, ([\d.]+) MB from remote storage", done.stderr)
    assert match, done.stderr
    assert int(match.group(1)) == requests
    assert float(match.group(2)) == round(received / 1e6, 1)


def test_a_missing_run_in_a_store_is_an_error_naming_it(stores):
    url = f"{stores.roots['s3']}/no-such-run"
    done = ckpt_audit("scan", url, env=stores.env)
    assert done.returncode == 2
    assert f"{url}: no such file or folder" in done.stderr


def test_a_local_audit_never_imports_fsspec():
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['ckpt-audit', 'scan', sys.argv[1], '-q']\n"
        "try:\n    runpy.run_module('auditor', run_name='__main__', alter_sys=True)\n"
        "finally:\n    print(sorted(m for m in sys.modules if m.split('.')[0] == 'fsspec'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(FIXTURES / "sweep")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_url_without_the_remote_extra_exits_2_naming_the_pip_command():
    probe = (
        "import runpy, sys\n"
        "sys.modules['fsspec'] = None  # as after a plain pip install\n"
        "sys.argv = ['ckpt-audit', 'scan', 's3://bucket/sweep']\n"
        "runpy.run_module('auditor', run_name='__main__', alter_sys=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "pip install 'checkpoint-auditor[remote]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_store_without_credentials_is_an_error_naming_them(stores):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=stores.env["AWS_ENDPOINT_URL"],
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_CONFIG_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
    )
    done = subprocess.run(
        [sys.executable, "-m", "auditor", "scan", f"{stores.roots['s3']}/sweep"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 2
    assert "check the credentials and the endpoint (AWS_*" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("store", ["s3", "gs"])
def test_a_history_parsed_in_pieces_is_streamed_from_the_store(stores, store, monkeypatch):
    # Every newest file counts as huge here: it is read as a stream of small blocks.
    from auditor import long_history

    monkeypatch.setattr(long_history, "PIECEWISE_FROM", 0)
    monkeypatch.setattr(long_history, "BLOCK_BYTES", 4096)
    url = f"{stores.roots[store]}/examples/lm_overfit_full"
    local = FIXTURES / "examples" / "lm_overfit_full"
    remote = auditor.audit(url, jobs=1).to_dict()
    here = auditor.audit(str(local), jobs=1).to_dict()
    assert json.dumps(remote).replace(url, str(local)) == json.dumps(here)
