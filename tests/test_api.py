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
