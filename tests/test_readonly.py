"""The auditor is read-only on what it audits and never unpickles anything it finds."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import auditor
from auditor.cli import main
from conftest import FIXTURES

Snapshot = dict[str, tuple[str, bytes | tuple[str, ...], int, int]]


def snapshot(root: Path) -> Snapshot:
    """Every file's bytes, every folder's listing, with each one's mode and mtime in ns."""
    state: Snapshot = {}
    for folder, dirs, files in os.walk(root):
        info = os.stat(folder)
        listing = tuple(sorted(dirs + files))
        state[folder] = ("dir", listing, info.st_mode, info.st_mtime_ns)
        for name in files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            content = (
                os.readlink(path).encode() if os.path.islink(path) else Path(path).read_bytes()
            )
            state[path] = ("file", content, info.st_mode, info.st_mtime_ns)
    return state


class Payload:
    """Unpickling this creates `marker`: proof that a file was loaded with pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def audited_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "fixtures"
    shutil.copytree(FIXTURES, tree, symlinks=True)
    return tree


def test_a_scan_changes_no_byte_mtime_or_listing_of_the_tree(audited_tree, tmp_path, monkeypatch):
    # A broken run and a save in progress too: error paths must not write either.
    for broken in (audited_tree / "examples" / "lm_healthy").rglob("trainer_state.json"):
        broken.write_bytes(b'{"log_history": [')
    (audited_tree / "sweep" / "run-0001" / "checkpoint-1100").mkdir()
    before = snapshot(audited_tree)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    commands = [
        ["scan", str(audited_tree)],
        ["scan", str(audited_tree), "--format", "json", "-o", str(tmp_path / "report.json")],
        ["scan", str(audited_tree), "--format", "csv"],
        ["scan", str(audited_tree), "--format", "markdown"],
        ["show", str(audited_tree / "sweep" / "run-0000")],
        ["check", str(audited_tree)],
        ["check", "--deploy", str(audited_tree / "sweep" / "run-0000" / "checkpoint-700")],
    ]
    codes = [runner.invoke(main, args).exit_code for args in commands]
    auditor.audit(audited_tree)

    assert codes == [0, 0, 0, 0, 0, 2, 1]
    assert (tmp_path / "report.json").is_file()
    assert snapshot(audited_tree) == before


def test_the_payload_really_runs_when_unpickled(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


def test_pickles_beside_the_checkpoints_are_never_loaded(copy_run, tmp_path, monkeypatch):
    run = copy_run("real_overfit_flagged")
    marker = tmp_path / "UNPICKLED"
    payload = pickle.dumps(Payload(marker))
    names = ["training_args.bin", "optimizer.pt", "rng_state.pth", "pytorch_model.bin"]
    for folder in [run, *sorted(run.glob("checkpoint-*"))]:
        for name in names:
            (folder / name).write_bytes(payload)
    # And where a careless reader would look for the state: a pickle named like JSON.
    (run / "checkpoint-100" / "trainer_state.json").write_bytes(payload)

    def refuse(*args, **kwargs):
        raise AssertionError("the auditor tried to unpickle something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)

    result = CliRunner().invoke(main, ["scan", str(run), "--format", "json"])
    audited = auditor.audit(run)

    assert result.exit_code == 0
    assert audited.runs[0].verdict == "overfit"
    assert not marker.exists()
    assert "checkpoint-100/trainer_state.json is not UTF-8" in result.stderr


def test_lightning_checkpoint_files_are_never_opened(copy_run, tmp_path, monkeypatch):
    run = copy_run("frameworks/lightning/lightning_logs/version_0", "version_0")
    marker = tmp_path / "UNPICKLED"
    payload = pickle.dumps(Payload(marker))
    for checkpoint in (run / "checkpoints").iterdir():
        checkpoint.write_bytes(payload)

    def refuse(*args, **kwargs):
        raise AssertionError("the auditor tried to unpickle something")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    (audited,) = auditor.audit(run).runs
    assert audited.error is None and audited.eval_only_pick is not None
    assert audited.eval_only_pick.checkpoint.endswith(".ckpt")
    assert not marker.exists()
