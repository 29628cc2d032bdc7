"""api: a sweep audited by worker processes gives what one process gives, in the same order."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import auditor
from conftest import FIXTURES


@pytest.mark.parametrize("jobs", [2, 3])
def test_worker_processes_give_the_same_audit_in_the_same_order(monkeypatch, jobs):
    from auditor import api

    monkeypatch.setattr(api, "CHUNK_RUNS", 2)  # 18 runs: 9 chunks, shared out unevenly
    alone = auditor.audit(str(FIXTURES), jobs=1)
    shared = auditor.audit(str(FIXTURES), jobs=jobs)
    assert len(alone.runs) >= 17
    assert [r.run_dir for r in shared.runs] == [r.run_dir for r in alone.runs]
    assert [r.to_dict() for r in shared.runs] == [r.to_dict() for r in alone.runs]
    # repr: NaN losses (lm_diverged) are equal as text only.
    assert [repr(r.train_losses) for r in shared.runs] == [repr(r.train_losses) for r in alone.runs]


def test_runs_audited_here_then_shared_out_give_the_audit_of_one_process(monkeypatch):
    from auditor import workers

    monkeypatch.delenv(workers.JOBS_VARIABLE, raising=False)
    # Share out after the first run, one run at a time.
    monkeypatch.setattr(workers, "LOOK_SECONDS", 0.0)
    monkeypatch.setattr(workers, "SHARE_FROM_SECONDS", 0.0)
    monkeypatch.setattr(workers, "CHUNK_SECONDS", 0.0)
    real_fork, forks = os.fork, []
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or real_fork())
    alone = auditor.audit(str(FIXTURES), jobs=1)
    progress: list[tuple[int, int]] = []
    shared = auditor.audit(str(FIXTURES), progress=lambda *done: progress.append(done))
    assert forks
    assert [r.to_dict() for r in shared.runs] == [r.to_dict() for r in alone.runs]
    found = len(progress)
    assert progress == [(done, found) for done in range(1, found + 1)]


@pytest.mark.parametrize("frozen_before", [False, True])
def test_an_audit_with_workers_leaves_the_garbage_collector_as_it_was(monkeypatch, frozen_before):
    import gc

    from auditor import workers

    monkeypatch.delenv(workers.JOBS_VARIABLE, raising=False)
    monkeypatch.setattr(workers, "LOOK_SECONDS", 0.0)
    monkeypatch.setattr(workers, "SHARE_FROM_SECONDS", 0.0)
    real_fork, forks = os.fork, []
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or real_fork())
    if frozen_before:  # a program that froze its own objects, as a pre-forking server does
        gc.freeze()
    try:
        before = gc.get_freeze_count()
        auditor.audit(str(FIXTURES / "sweep"))
        assert forks
        assert gc.get_freeze_count() == before
    finally:
        gc.unfreeze()


def test_without_curves_runs_carry_no_train_losses_and_the_same_picks():
    with_curves = auditor.audit(str(FIXTURES / "sweep"))
    without = auditor.audit(str(FIXTURES / "sweep"), curves=False)
    assert all(run.train_losses for run in with_curves.runs)
    assert all(run.train_losses == () for run in without.runs)
    assert [r.to_dict() for r in without.runs] == [r.to_dict() for r in with_curves.runs]


def _sweep_of(tmp_path, runs: int):
    import shutil

    from auditor.discover import discover

    for index in range(runs):
        shutil.copytree(FIXTURES / "sweep" / f"run-000{index % 6}", tmp_path / f"run-{index:03d}")
    return discover([str(tmp_path)])


def test_stopping_early_leaves_no_worker_behind(tmp_path):
    from auditor import api
    from auditor.config import Config

    locations = _sweep_of(tmp_path / "sweep", 40)
    runs = api.audit_locations(locations, Config(), jobs=2)
    next(runs)
    workers = _workers()
    assert len(workers) == 2
    runs.close()
    assert workers.isdisjoint(_workers())


def _workers() -> set[int]:
    """Return this process's worker processes: its children, or the children of a fork server
    it started (which itself lives on, waiting for the next pool)."""
    found = set()
    for child in _children(os.getpid()):
        if b"forkserver" in Path(f"/proc/{child}/cmdline").read_bytes():
            found |= _children(child)
        else:
            found.add(child)
    return found


def _children(parent: int) -> set[int]:
    """Return the ids of the living processes whose parent is `parent` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def test_no_worker_is_forked_while_other_threads_run(monkeypatch, tmp_path):
    from auditor import api
    from auditor.config import Config

    locations = _sweep_of(tmp_path / "sweep", 8)
    monkeypatch.setattr(os, "fork", lambda: pytest.fail("forked beside a running thread"))
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert len(list(api.audit_locations(locations, Config(), jobs=2))) == 8
    finally:
        stop.set()
        other.join()


def test_broken_and_oddly_named_runs_come_back_from_workers_as_they_are_audited_here(
    monkeypatch, tmp_path
):
    """Error results, undecodable folder names and NaN losses survive the trip through a pipe."""
    import shutil

    from auditor import api
    from auditor.config import Config
    from auditor.discover import discover

    state = "trainer_state.json"
    names = ["fine", "truncated", "not-utf8", "a-folder", "b\udcffad-name", "diverged"]
    for index, name in enumerate(names):
        shutil.copytree(FIXTURES / "sweep" / f"run-000{index}", tmp_path / name)
    for path in (tmp_path / "truncated").rglob(state):
        path.write_bytes(path.read_bytes()[:99])
    for path in (tmp_path / "not-utf8").rglob(state):
        path.write_bytes(b"\xff\xfe" + b"{" * 10)
    (tmp_path / "a-folder" / state).unlink()
    (tmp_path / "a-folder" / state).mkdir()
    shutil.rmtree(tmp_path / "diverged")
    shutil.copytree(FIXTURES / "examples" / "lm_diverged", tmp_path / "diverged")
    shutil.rmtree(tmp_path / "fine")
    shutil.copytree(FIXTURES / "real_overfit_flagged", tmp_path / "fine")
    locations = discover([str(tmp_path)])
    monkeypatch.setattr(api, "CHUNK_RUNS", 1)

    shared = list(api.audit_locations(locations, Config(), jobs=3))
    alone = list(api.audit_locations(locations, Config(), jobs=1))

    assert len(shared) == len(names)
    assert [r.to_dict() for r in shared] == [r.to_dict() for r in alone]
    assert [repr(r.train_losses) for r in shared] == [repr(r.train_losses) for r in alone]
    assert {r.verdict for r in shared} >= {"error", "overfit"}
