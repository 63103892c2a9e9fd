"""`LogWaiters`: a wait on several partitions' logs at once (a thread each), as on a Redis Cluster."""

from __future__ import annotations

import threading

from lifecycle._logwait import LogWaiters


class Logs:
    """Stand-in logs: `read(p, after, block)` blocks until partition p gets news or `block` passes."""

    def __init__(self, partitions: int) -> None:
        self.news = [threading.Event() for _ in range(partitions)]
        self.blocked = threading.Semaphore(0)  # released once per read that starts waiting
        self.reads: list[tuple[int, str]] = []
        self.lock = threading.Lock()
        self.fail: int | None = None

    def read(self, p: int, after: str, block: float) -> bool:
        with self.lock:
            self.reads.append((p, after))
        if self.fail == p:
            raise ConnectionError("the node went away")
        self.blocked.release()
        return self.news[p].wait(block)

    def wait_blocked(self, n: int) -> None:
        for _ in range(n):
            assert self.blocked.acquire(timeout=10.0), "a waiter never started"


def _wait_in_thread(waiters: LogWaiters, cursor: list[str], block: float) -> tuple[threading.Thread, list[bool]]:
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(waiters.wait(cursor, block)))
    thread.start()
    return thread, result


def test_news_in_any_partition_wakes_the_wait_while_every_log_is_waited_on():
    logs = Logs(3)
    waiters = LogWaiters(3, logs.read, slice_max=5.0)
    thread, result = _wait_in_thread(waiters, ["1-0", "2-0", "3-0"], 30.0)
    logs.wait_blocked(3)  # every partition's log waited on at once
    logs.news[2].set()  # the last partition: no turn to wait for
    thread.join(10.0)
    assert result == [True]
    assert sorted(logs.reads) == [(0, "1-0"), (1, "2-0"), (2, "3-0")]
    for news in logs.news:
        news.set()  # let the other waiters end


def test_no_news_returns_false_after_the_block_and_the_next_wait_joins_the_same_waiters():
    logs = Logs(2)
    waiters = LogWaiters(2, logs.read, slice_max=30.0)
    try:
        assert waiters.wait(["0-0", "0-0"], 0.05) is False
        assert waiters.wait(["0-0", "0-0"], 0.05) is False
        assert sorted(logs.reads) == [(0, "0-0"), (1, "0-0")]  # one blocking read each, still waiting
    finally:
        for news in logs.news:
            news.set()


def test_a_wait_longer_than_a_slice_takes_turns_of_new_reads():
    logs = Logs(2)
    assert LogWaiters(2, logs.read, slice_max=0.05).wait(["0-0", "0-0"], 0.2) is False
    assert len(logs.reads) >= 2 * 2  # both logs, in at least two slices


def test_a_failing_read_wakes_the_wait_so_the_callers_own_read_reports_it():
    logs = Logs(2)
    logs.fail = 1
    assert LogWaiters(2, logs.read, slice_max=5.0).wait(["0-0", "0-0"], 30.0) is True


def test_a_waiter_still_blocked_on_the_same_position_is_joined_not_doubled():
    logs = Logs(2)
    waiters = LogWaiters(2, logs.read, slice_max=30.0)
    thread, result = _wait_in_thread(waiters, ["5-0", "6-0"], 30.0)
    logs.wait_blocked(2)
    logs.news[0].set()  # partition 0 has news; partition 1's waiter stays blocked
    thread.join(10.0)
    assert result == [True]
    logs.news[0].clear()
    thread, result = _wait_in_thread(waiters, ["7-0", "6-0"], 30.0)  # partition 0 read on; 1 still at 6-0
    logs.wait_blocked(1)
    logs.news[1].set()
    thread.join(10.0)
    assert result == [True]
    assert sorted(logs.reads) == [(0, "5-0"), (0, "7-0"), (1, "6-0")]  # partition 1's waiter joined, not doubled
    logs.news[0].set()  # let partition 0's second waiter end
