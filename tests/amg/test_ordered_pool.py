"""map_in_order: concurrent work, results in the items' order, nothing left running after an early stop."""

from __future__ import annotations

import threading

import pytest

from tinysam_annotate.amg.ordered_pool import map_in_order


def test_items_run_at_once_and_come_back_in_order():
    second_started = threading.Event()

    def work(item: int) -> int:
        if item == 0:  # finishes only once item 1 has started: proves two run at once
            assert second_started.wait(timeout=10)
        if item == 1:
            second_started.set()
        return item * 10

    assert list(map_in_order(work, range(6), workers=2)) == [0, 10, 20, 30, 40, 50]


def test_one_worker_runs_on_the_callers_thread():
    threads = list(map_in_order(lambda _: threading.current_thread(), range(3), workers=1))
    assert threads == [threading.current_thread()] * 3


def test_stopping_early_drops_the_items_not_started():
    started = []
    lock = threading.Lock()

    def work(item: int) -> int:
        with lock:
            started.append(item)
        return item

    results = map_in_order(work, range(100), workers=2)
    assert next(results) == 0
    results.close()  # what a cancelled everything mode does
    assert len(started) <= 3  # the first two and at most the one submitted while handing back the first
    assert threading.active_count() < 10  # the pool is shut down


def test_an_error_is_raised_at_its_items_turn():
    def work(item: int) -> int:
        if item == 2:
            raise ValueError("bad item 2")
        return item

    results = map_in_order(work, range(5), workers=2)
    assert [next(results), next(results)] == [0, 1]
    with pytest.raises(ValueError, match="bad item 2"):
        next(results)
