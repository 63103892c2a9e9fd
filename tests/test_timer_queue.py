"""The timer queue's follow-up work (`after_due`): after every due timer, in the same call, isolated."""

import logging
import time

import freezegun
import pytest

from lifecycle import ExtensionService, LifecycleConfig
from lifecycle.timers import TimerQueue


def test_follow_up_runs_after_every_timer_due_in_the_same_call():
    queue = TimerQueue()
    order: list[str] = []

    def first() -> None:
        order.append("first")
        queue.after_due(order.append, "follow-up of first")

    queue.add(queue.timer(1.0, first, ()))
    queue.add(queue.timer(1.5, order.append, ("second",)))  # another slot, also due at 2.0
    queue.add(queue.timer(3.0, order.append, ("not due",)))
    delay = queue.run_due(2.0)
    assert order == ["first", "second", "follow-up of first"]
    assert delay == 1.0
    assert queue.fired == 2  # follow-ups are part of their action, not timers of their own


def test_a_timer_that_comes_due_during_follow_ups_runs_before_the_rest_of_them():
    # A burst's next slot must not wait for every follow-up of the one before (the paced-lag case).
    with freezegun.freeze_time("2026-01-01") as frozen:
        queue = TimerQueue()
        order: list[str] = []
        start = time.monotonic()

        def slow(name: str) -> None:
            order.append(name)
            frozen.tick(0.010)  # each follow-up takes 10 ms

        def first() -> None:
            order.append("first")
            for k in range(3):
                queue.after_due(slow, f"follow-up {k}")

        queue.add(queue.timer(start, first, ()))
        queue.add(queue.timer(start + 0.015, order.append, ("next slot",)))  # due during follow-up 1
        assert queue.run_due() is None
    assert order == ["first", "follow-up 0", "follow-up 1", "next slot", "follow-up 2"]


def test_on_the_watchdogs_clock_follow_ups_wait_while_a_burst_goes_on_but_not_for_long():
    # Timers due every millisecond for 20 ms: the follow-up waits its patience (10 ms), no longer.
    with freezegun.freeze_time("2026-01-01") as frozen:
        queue = TimerQueue()
        ran: list[float] = []
        start = time.monotonic()
        queue.add(queue.timer(start, lambda: queue.after_due(lambda: ran.append(time.monotonic() - start)), ()))
        for k in range(1, 21):
            queue.add(queue.timer(start + k / 1000, lambda: None, ()))
        delays = []
        while not ran:
            delay = queue.run_due()
            delays.append(delay)
            assert delay is not None and 0 < delay <= 0.0011
            frozen.tick(delay)
    assert 0.0099 <= ran[0] < 0.0115
    assert len(delays) >= 10  # it gave way to every timer due meanwhile


def test_on_the_watchdogs_clock_a_follow_up_runs_as_soon_as_nothing_is_due_soon():
    with freezegun.freeze_time("2026-01-01"):
        queue = TimerQueue()
        ran: list[str] = []
        start = time.monotonic()
        queue.add(queue.timer(start, lambda: queue.after_due(ran.append, "follow-up"), ()))
        queue.add(queue.timer(start + 0.005, ran.append, ("later",)))  # not within 2 ms
        assert queue.run_due() == pytest.approx(0.005, abs=1e-4)
    assert ran == ["follow-up"]


def test_a_batched_action_gets_a_burst_in_pieces():
    queue = TimerQueue()
    calls: list[list[int]] = []
    for k in range(70):
        queue.add(queue.timer(1.0, calls.append, (k,), True))
    queue.run_due(2.0)
    assert [len(c) for c in calls] == [16, 16, 16, 16, 6]
    assert [k for c in calls for k in c] == list(range(70))


def test_a_follow_up_that_raises_is_logged_and_the_rest_run(caplog):
    queue = TimerQueue()
    ran: list[int] = []

    def boom() -> None:
        raise RuntimeError("follow-up broke")

    def action() -> None:
        queue.after_due(boom)
        queue.after_due(ran.append, 1)

    queue.add(queue.timer(0.0, action, ()))
    with caplog.at_level(logging.ERROR, logger="lifecycle"):
        queue.run_due(1.0)
    assert ran == [1]
    assert "follow-up broke" in caplog.text


def test_cancel_all_drops_follow_ups_not_yet_run():
    queue = TimerQueue()
    ran: list[int] = []
    queue.after_due(ran.append, 1)
    queue.cancel_all()
    queue.run_due(0.0)
    assert ran == []


def test_a_burst_of_timeouts_is_sent_before_any_reconnect_bookkeeping(make_manager, frozen_lifecycle, record):
    m = make_manager(LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=3))
    rec = record(m)
    ids = [m.start_service(ExtensionService(f"s{i}", "1")) for i in range(3)]
    frozen_lifecycle.advance(0.0005, m)
    ids.append(m.start_service(ExtensionService("later", "1")))  # another millisecond slot
    frozen_lifecycle.advance(3.0, m)
    names = [name for name in rec.names() if name in ("heartbeat_timeout", "reconnecting")]
    assert names == ["heartbeat_timeout"] * 4 + ["reconnecting"] * 4
    assert all(m.get_status(sid).value == "reconnecting" for sid in ids)
