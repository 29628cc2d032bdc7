"""api: a sweep audited by worker processes gives what one process gives, in the same order."""

from __future__ import annotations

import auditor
from conftest import FIXTURES


def test_worker_processes_give_the_same_audit_in_the_same_order():
    alone = auditor.audit(str(FIXTURES), jobs=1)
    shared = auditor.audit(str(FIXTURES), jobs=2)
    assert len(alone.runs) >= 17
    assert [r.run_dir for r in shared.runs] == [r.run_dir for r in alone.runs]
    assert [r.to_dict() for r in shared.runs] == [r.to_dict() for r in alone.runs]
    # repr: NaN losses (lm_diverged) are equal as text only.
    assert [repr(r.train_losses) for r in shared.runs] == [repr(r.train_losses) for r in alone.runs]


def test_without_curves_runs_carry_no_train_losses_and_the_same_picks():
    with_curves = auditor.audit(str(FIXTURES / "sweep"))
    without = auditor.audit(str(FIXTURES / "sweep"), curves=False)
    assert all(run.train_losses for run in with_curves.runs)
    assert all(run.train_losses == () for run in without.runs)
    assert [r.to_dict() for r in without.runs] == [r.to_dict() for r in with_curves.runs]


def test_workers_hold_only_a_few_chunks_ahead(monkeypatch, tmp_path):
    """However large the sweep, the results waiting to be consumed stay a few chunks."""
    import shutil
    from concurrent.futures import ProcessPoolExecutor

    from auditor import api
    from auditor.config import Config
    from auditor.discover import discover

    for index in range(40):
        shutil.copytree(FIXTURES / "sweep" / f"run-000{index % 6}", tmp_path / f"run-{index:03d}")
    locations = discover([str(tmp_path)])
    monkeypatch.setattr(api, "CHUNK_RUNS", 2)
    submitted, consumed, most_ahead = 0, 0, 0
    real_submit = ProcessPoolExecutor.submit

    def submit(self, fn, chunk, *args):
        nonlocal submitted, most_ahead
        submitted += len(chunk)
        most_ahead = max(most_ahead, submitted - consumed)
        return real_submit(self, fn, chunk, *args)

    monkeypatch.setattr(ProcessPoolExecutor, "submit", submit)
    order = []
    for run in api.audit_locations(locations, Config(), jobs=2):
        consumed += 1
        order.append(run.run_dir)
    assert order == [location.run_dir for location in locations]
    assert submitted == 20  # every other chunk of two went to the worker
    assert most_ahead <= 3 * 2
