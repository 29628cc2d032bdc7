"""workers: results computed by forked processes come back whole, in order, and failures in a
worker are redone here so they surface as they would without workers."""

from __future__ import annotations

import os

import pytest

from auditor import workers


def square_and_pid(item: int) -> tuple[int, int]:
    return item * item, os.getpid()


@pytest.mark.parametrize("count", [1, 2, 3])
def test_results_come_back_in_order_from_every_process(count):
    found = list(workers.map_in_order(square_and_pid, list(range(10)), count))
    assert [value for value, _ in found] == [i * i for i in range(10)]
    assert len({pid for _, pid in found}) == count


def test_an_error_in_a_worker_is_raised_here():
    parent = os.getpid()

    def fails_on_two(item: int) -> int:
        if item == 2:  # a child's item: the child dies, this process redoes it
            raise ValueError(f"item 2 in {'this process' if os.getpid() == parent else 'a child'}")
        return item

    with pytest.raises(ValueError, match="item 2 in this process"):
        list(workers.map_in_order(fails_on_two, list(range(6)), 2))


def test_the_count_honours_jobs_the_environment_and_the_threshold(monkeypatch):
    monkeypatch.delenv(workers.JOBS_VARIABLE, raising=False)
    monkeypatch.setattr(workers, "can_fork", lambda: True)
    assert workers.worker_count(10, None, parallel_from=64) == 1
    assert workers.worker_count(10, 3, parallel_from=64) == 3
    assert workers.worker_count(2, 8, parallel_from=64) == 2  # never more than the items
    monkeypatch.setenv(workers.JOBS_VARIABLE, "2")
    assert workers.worker_count(10, None, parallel_from=64) == 2
    monkeypatch.setattr(workers, "can_fork", lambda: False)
    assert workers.worker_count(10, 4, parallel_from=64) == 1
