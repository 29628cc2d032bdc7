"""workers: per-run work on processes, threads or any executor comes back whole and in order;
an error in a worker is raised at its item; the audit is the same however it is shared out."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

import auditor
from auditor import workers

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def square_and_pid(item: int) -> tuple[int, int]:
    return item * item, os.getpid()


def fails_on_two(item: int) -> int:
    if item == 2:
        raise ValueError("item 2")
    return item


def test_results_come_back_in_order_from_worker_processes():
    with workers.process_executor(2) as pool:
        found = list(workers.map_in_order(square_and_pid, list(range(10)), pool, ahead=4))
    assert [value for value, _ in found] == [i * i for i in range(10)]
    assert os.getpid() not in {pid for _, pid in found}


def test_an_error_in_a_worker_is_raised_here_at_its_item():
    seen = []
    with workers.process_executor(2) as pool, pytest.raises(ValueError, match="item 2"):
        for value in workers.map_in_order(fails_on_two, list(range(6)), pool, ahead=3):
            seen.append(value)
    assert seen == [0, 1]


def dies_in_a_worker(item: int, parent: int) -> tuple[int, int]:
    if os.getpid() != parent and item == 3:
        os._exit(9)  # as the out-of-memory killer would
    return item, os.getpid()


def test_when_a_worker_dies_the_items_left_are_computed_here():
    task = partial(dies_in_a_worker, parent=os.getpid())
    with workers.process_executor(2) as pool:
        found = list(workers.map_in_order(task, list(range(12)), pool, ahead=4))
    assert [value for value, _ in found] == list(range(12))
    assert found[-1][1] == os.getpid()


def test_no_more_than_ahead_items_are_in_flight_and_the_rest_is_cancelled():
    started: list[int] = []
    lock = threading.Lock()

    def slow(item: int) -> int:
        with lock:
            started.append(item)
        time.sleep(0.01)
        return item

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = workers.map_in_order(slow, list(range(100)), pool, ahead=3)
        for consumed, value in enumerate(results, start=1):
            assert value == consumed - 1
            time.sleep(0.02)
            # Started so far: those consumed, plus at most `ahead` submitted beyond them.
            assert len(started) <= consumed + 3
            if consumed == 5:
                break
        results.close()
    assert len(started) <= 5 + 3


def test_the_count_honours_jobs_and_the_environment_and_is_else_left_to_the_work(monkeypatch):
    monkeypatch.delenv(workers.JOBS_VARIABLE, raising=False)
    assert workers.worker_count(10, None) is None
    assert workers.worker_count(10, 3) == 3
    assert workers.worker_count(2, 8) == 2  # never more than the items
    monkeypatch.setenv(workers.JOBS_VARIABLE, "2")
    assert workers.worker_count(10, None) == 2


def test_work_is_shared_out_once_the_work_done_says_the_rest_is_worth_it():
    look, worth = workers.LOOK_SECONDS, workers.SHARE_FROM_SECONDS
    assert workers.share_out(0.0, 0, 1000) == 0
    assert workers.share_out(look / 2, 1, 10_000) == 0  # too little seen to judge
    assert workers.share_out(look, 100, 100) == 0  # too little left: 100 runs of 50 us
    assert workers.share_out(look, 1, round(worth / look)) > 0  # just enough left
    # Thousands of tiny runs go out many at a time, large runs one at a time.
    assert workers.share_out(look, 100, 20_000) > 1
    assert workers.share_out(4 * worth, 1, 10) == 1


def _report(result: auditor.AuditResult) -> str:
    from auditor.render import render

    # The JSON report: NaN losses (a diverged run) compare equal there, not in the objects.
    return render(result, "json")


def test_an_audit_shared_out_is_the_audit_of_one_process():
    alone = auditor.audit(FIXTURES, jobs=1)
    in_processes = auditor.audit(FIXTURES, jobs=2)
    with ThreadPoolExecutor(max_workers=3) as pool:
        on_threads = auditor.audit(FIXTURES, executor=pool)
    assert _report(in_processes) == _report(alone)
    assert _report(on_threads) == _report(alone)
