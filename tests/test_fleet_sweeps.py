"""The leader's sweeps on a real server: a backlog larger than one sweep script, a burst's order, its log lines, and
the event log's reader held meanwhile, a backlog's batches sent on a thread of their own.

Mostly manual mode (`autostart=False`): `run_pending()` runs the timers due when it began, so
one call runs one tick. Sweep scripts are made small (4 due services) so that 23 services make six
batches. The server's clock cannot be frozen: the deadlines pass for real.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis_server as servers

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, ServiceStatus, connect
from lifecycle.engine import fleet, sweeps
from lifecycle.engine.fleetlog import follow_log
from lifecycle.events import HeartbeatTimeout, LifecycleEvent, ReconnectFailed, Started, StatusChanged
from lifecycle.redis import RedisRegistry
from lifecycle.testing import EventRecorder

TIMEOUT = 0.3
# A timeout gives up at once (no attempts allowed): nothing else is due for a renewal interval
# after the timeouts, so a second tick within one run_pending would be a bug, not a reconnect.
CONFIG = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=TIMEOUT, max_reconnect_attempts=0)
WAIT = 10.0
N = 23


@pytest.fixture
def leader(redis_server: servers.RedisServer, namespace: str, monkeypatch: pytest.MonkeyPatch,
           record: Callable[[LifecycleManager], EventRecorder]) -> Iterator[tuple[LifecycleManager, EventRecorder]]:
    """A manual-mode manager leading the namespace, sweeping 4 due services per script, and its events."""
    monkeypatch.setattr(sweeps, "SWEEP_LIMIT", 4)
    monkeypatch.setattr(fleet, "SWEEP_LIMIT", 4)
    registry = RedisRegistry.from_url(redis_server.url, namespace=namespace, lease_ttl_secs=30.0, socket_timeout=5.0)
    manager = LifecycleManager(registry, CONFIG, autostart=False)
    recorder = record(manager)
    manager.run_pending()
    assert manager.is_leader
    try:
        yield manager, recorder
    finally:
        manager.shutdown()
        registry.clear()
        registry.client.close()


def silent(manager: LifecycleManager, n: int, prefix: str = "svc") -> dict[str, str]:
    """Start `n` services that never beat (id -> name); wait until the last one's deadline passed on the server."""
    names = {manager.start_service(ExtensionService(f"{prefix}-{i:03d}", "1")): f"{prefix}-{i:03d}" for i in range(n)}
    ids = list(names)
    registry = manager.registry
    end = time.monotonic() + WAIT
    while (registry.silence(ids[-1]) or (None, 0.0))[1] < TIMEOUT + 0.05:  # type: ignore[attr-defined]
        assert time.monotonic() < end, "the server's clock did not move"
        time.sleep(0.02)  # real time must pass on the server's clock: nothing in-process to wait on
    return names


def test_a_backlog_larger_than_one_sweep_is_timed_out_in_one_tick_each_once(leader):
    manager, recorder = leader
    ids = silent(manager, N)
    ticks = manager._engine.ticker.ticks
    manager.run_pending()  # one tick: six sweep scripts of at most 4
    assert manager._engine.ticker.ticks == ticks + 1
    assert sorted(e.service_id for e in recorder.of(HeartbeatTimeout)) == sorted(ids)
    assert all(manager.get_status(sid) is ServiceStatus.ERROR for sid in ids)
    manager.run_pending()
    time.sleep(TIMEOUT)  # a deadline left armed by mistake would be due by now
    manager._engine.sweep_now()
    assert len(recorder.of(HeartbeatTimeout)) == N  # once each
    assert len(recorder.of(ReconnectFailed)) == N


def test_a_backlogs_batches_are_each_timed_out_by_the_sweep_that_found_them(redis_server, namespace, monkeypatch,
                                                                           record):
    """One script and one round trip a batch: a burst's 10,000 timeouts take 20 of them, not 40."""
    monkeypatch.setattr(sweeps, "SWEEP_LIMIT", 4)
    monkeypatch.setattr(fleet, "SWEEP_LIMIT", 4)
    registry = RedisRegistry.from_url(redis_server.url, namespace=namespace, lease_ttl_secs=30.0, socket_timeout=5.0)
    manager = LifecycleManager(registry, CONFIG, autostart=False)
    scripts: list[str] = []  # the scripts the tick runs, by name (manual mode: no other thread runs any)
    run = registry._run  # type: ignore[attr-defined]

    def counted(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        scripts.append(name)
        return run(name, *args, **kwargs)

    try:
        recorder = record(manager)
        manager.run_pending()
        ids = silent(manager, N)
        registry._run = counted  # type: ignore[attr-defined]
        manager.run_pending()  # one tick: six batches of at most 4
        assert sorted(e.service_id for e in recorder.of(HeartbeatTimeout)) == sorted(ids)
        assert scripts.count("SWEEP") == -(-N // 4) and set(scripts) <= {"SWEEP", "LEASE"}, scripts
        assert len(recorder.of(ReconnectFailed)) == N and all(
            manager.get_status(sid) is ServiceStatus.ERROR for sid in ids)
    finally:
        manager.shutdown()
        registry.clear()
        registry.client.close()


def test_a_batchs_timeouts_and_status_changes_come_before_any_follow_up_each_service_in_order(leader):
    manager, recorder = leader
    ids = silent(manager, N)
    start = len(recorder.events)
    manager.run_pending()
    burst = recorder.events[start:]
    for sid in ids:
        assert [e.signal_name for e in burst if e.service_id == sid] == [
            "heartbeat_timeout", "status_changed", "reconnect_failed"]
    # Within each batch of 4: every timeout and its status change, then every give-up.
    kinds = [type(e) for e in burst]
    batches = [kinds[k:k + 12] for k in range(0, 20 * 3, 12)] + [kinds[60:]]
    for batch in batches:
        size = len(batch) // 3
        assert batch[:2 * size] == [HeartbeatTimeout, StatusChanged] * size
        assert batch[2 * size:] == [ReconnectFailed] * size


def test_a_large_batch_is_logged_in_one_line_naming_every_service_a_small_one_a_line_each(leader, caplog,
                                                                                            monkeypatch):
    manager, _ = leader
    monkeypatch.setattr(sweeps, "SWEEP_LIMIT", 50)
    monkeypatch.setattr(fleet, "SWEEP_LIMIT", 50)
    caplog.set_level(logging.WARNING, logger="lifecycle")
    names = silent(manager, N)
    manager.run_pending()
    missed = [r.getMessage() for r in caplog.records if "missed" in r.getMessage()]
    assert len(missed) == 1
    head = f"lifecycle: {N} services missed their heartbeat deadline: "
    assert missed[0].startswith(head)
    assert sorted(missed[0][len(head):].split(", ")) == sorted(f"{name!r} ({sid})" for sid, name in names.items())
    caplog.clear()
    few = silent(manager, 3, "few")
    manager.run_pending()
    missed = [r.getMessage() for r in caplog.records if "missed" in r.getMessage()]
    assert sorted(missed) == sorted(f"lifecycle: service {name!r} ({sid}) missed its heartbeat deadline"
                                    for sid, name in few.items())


class StartedHeard:
    """A log reader's `deliver`: the ids of the `Started` events it was handed, and a condition to wait on."""

    def __init__(self) -> None:
        self.got: list[str] = []
        self.cond = threading.Condition()

    def __call__(self, events: list[LifecycleEvent]) -> None:
        with self.cond:
            self.got.extend(e.service_id for e in events if isinstance(e, Started))
            self.cond.notify_all()


def test_the_log_reader_held_reads_nothing_then_resumes_where_it_was(redis_server, namespace):
    """The leader holds its log reader while it drains a backlog; nothing is skipped once it resumes."""
    registry = RedisRegistry.from_url(redis_server.url, namespace=namespace, socket_timeout=5.0)
    writer = RedisRegistry.from_url(redis_server.url, namespace=namespace, socket_timeout=5.0)
    deliver = StartedHeard()
    got, cond = deliver.got, deliver.cond
    held, looked, ready, running = threading.Event(), threading.Event(), threading.Event(), threading.Event()
    running.set()

    def hold() -> bool:
        if held.is_set():
            looked.set()  # the reader is past its read: the next entry waits for the release
            return True
        return False

    reader = follow_log(registry, deliver, running.is_set, on_ready=ready.set, poll=0.1, hold=hold)
    try:
        assert ready.wait(WAIT)
        held.set()
        assert looked.wait(WAIT), "the reader never looked at its hold"
        sids = [writer.join(ExtensionService(f"held-{i}", "1"))[0] for i in range(3)]
        for sid in sids:
            writer.activate(sid, 60.0)
        time.sleep(0.3)  # the reader polls its hold every 50 ms: a reader ignoring it would have read by now
        with cond:
            assert got == []
        held.clear()
        with cond:
            assert cond.wait_for(lambda: len(got) >= 3, WAIT), "the reader did not resume"
            assert got == sids
    finally:
        running.clear()
        reader.join(WAIT)
        registry.clear()
        registry.client.close()
        writer.client.close()


def test_the_log_reader_waits_some_looks_after_each_burst_then_reads_what_came_meanwhile():
    """After a sweep that timed services out (`busy` changed), reading waits `_QUIET_LOOKS` looks, then misses nothing.

    On an in-process store: the loop is the subject, and the looks are counted, not timed.
    """
    from lifecycle.engine import fleetlog
    from lifecycle.shared_memory import SharedMemoryRegistry

    store = SharedMemoryRegistry()
    deliver = StartedHeard()
    got, cond = deliver.got, deliver.cond
    calls: list[int] = []  # every call of busy(), in order
    ready, seen, running = threading.Event(), threading.Event(), threading.Event()
    running.set()
    bursts = [0]

    def busy() -> int:
        with cond:
            calls.append(bursts[0])
        if bursts[0]:
            seen.set()
        return bursts[0]

    reader = follow_log(store, deliver, running.is_set, on_ready=ready.set, poll=0.05, busy=busy)
    try:
        assert ready.wait(WAIT)
        bursts[0] = 1  # a sweep timed services out
        assert seen.wait(WAIT), "the reader never looked at busy()"
        sid = store.join(ExtensionService("after-burst", "1"))[0]
        store.activate(sid, 60.0)
        with cond:
            assert cond.wait_for(lambda: got == [sid], WAIT), "the reader did not read after its quiet looks"
            looks = calls.count(1)
        # One call on the look that saw the change, one on each of the other quiet looks, one on the read.
        assert looks >= fleetlog._QUIET_LOOKS + 1, looks
    finally:
        running.clear()
        reader.join(WAIT)


def test_a_reader_behind_by_a_full_page_jumps_to_the_logs_end_and_says_so_instead_of_reading_it_all():
    """`skip_behind`: a full page (a burst) is dropped; `on_ready` runs again (the engine sweeps at once instead)."""
    from lifecycle.engine import fleetlog
    from lifecycle.shared_memory import SharedMemoryRegistry

    store = SharedMemoryRegistry()
    deliver = StartedHeard()
    got, cond = deliver.got, deliver.cond
    readies: list[int] = []
    held, looked, running = threading.Event(), threading.Event(), threading.Event()
    running.set()

    def ready() -> None:
        with cond:
            readies.append(1)
            cond.notify_all()

    def hold() -> bool:
        if held.is_set():
            looked.set()
            return True
        return False

    held.set()
    reader = follow_log(store, deliver, running.is_set, on_ready=ready, poll=0.05, hold=hold, skip_behind=True)
    try:
        assert looked.wait(WAIT), "the reader never looked at its hold"
        with cond:
            assert readies == []  # held before its first read: it has not reached the log yet
        held.clear()
        with cond:
            assert cond.wait_for(lambda: len(readies) == 1, WAIT)
        held.set()
        looked.clear()
        assert looked.wait(WAIT)
        for i in range(fleetlog._PAGE + 20):  # a burst: more than a page behind
            store.activate(store.join(ExtensionService(f"burst-{i}", "1"))[0], 60.0)
        held.clear()
        with cond:
            assert cond.wait_for(lambda: len(readies) == 2, WAIT), "the reader did not jump to the log's end"
        last = store.join(ExtensionService("after", "1"))[0]
        store.activate(last, 60.0)
        with cond:
            assert cond.wait_for(lambda: last in got, WAIT), "the reader stopped reading after its jump"
            assert got == [last], "entries of the burst were delivered"
            assert len(readies) == 2
    finally:
        running.clear()
        reader.join(WAIT)


def test_a_backlogs_batches_are_sent_in_order_on_the_thread_that_timed_them_out(
        redis_server, namespace, monkeypatch):
    monkeypatch.setattr(sweeps, "SWEEP_LIMIT", 4)
    monkeypatch.setattr(fleet, "SWEEP_LIMIT", 4)
    registry = RedisRegistry.from_url(redis_server.url, namespace=namespace, lease_ttl_secs=30.0, socket_timeout=5.0)
    manager = LifecycleManager(registry, CONFIG)
    heard: list[tuple[str, LifecycleEvent]] = []
    cond = threading.Condition()

    def receiver(sender: object, *, event: LifecycleEvent, **_: object) -> None:
        with cond:
            heard.append((threading.current_thread().name, event))
            cond.notify_all()

    connection = connect(receiver, sender=manager)
    gate = threading.Event()
    watchdog: list[str] = []

    def hold() -> None:
        watchdog.append(threading.current_thread().name)
        gate.wait(WAIT)

    try:
        assert wait_until(lambda: manager.is_leader), "no lease"
        # The watchdog waits at the gate: the deadlines pass meanwhile, and its next tick meets them all at once.
        manager._watchdog.call_later(0.0, hold)
        names = silent(manager, N)
        gate.set()
        with cond:
            assert cond.wait_for(lambda: sum(isinstance(e, ReconnectFailed) for _, e in heard) >= N, WAIT)
        timeouts = [(thread, e.service_id) for thread, e in heard if isinstance(e, HeartbeatTimeout)]
        assert [sid for _, sid in timeouts] == list(names)  # deadline order, batch after batch
        # Receivers run in the thread that caused the event: the watchdog's, whose tick swept them.
        assert {thread for thread, _ in timeouts} == set(watchdog)
        for sid in names:
            assert [e.signal_name for _, e in heard if e.service_id == sid][-3:] == [
                "heartbeat_timeout", "status_changed", "reconnect_failed"]
    finally:
        gate.set()
        connection.disconnect()
        manager.shutdown()
        registry.clear()
        registry.client.close()


def wait_until(predicate: Callable[[], bool]) -> bool:
    end = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)  # the lease is a key on the server: polling is the only way to see it
    return True


def test_with_partitions_a_ticks_sweeps_stop_at_its_share_of_the_renewal_interval(
        frozen_lifecycle, make_lifecycle_manager, redis_server, namespace, monkeypatch):
    """The partitions' ticks share one thread: each drains for a renewal interval / partitions, so none waits a lease.

    A receiver moves frozen time 0.1 s per timeout (0.2 s per batch of 2); with a 3 s lease (a 1 s
    renewal interval) and 2 partitions, each tick stops after the batch that takes it to 0.5 s: three.
    """
    monkeypatch.setattr(sweeps, "SWEEP_LIMIT", 2)
    monkeypatch.setattr(fleet, "SWEEP_LIMIT", 2)
    registry = RedisRegistry.from_url(redis_server.url, namespace=namespace, partitions=2, lease_ttl_secs=3.0,
                                      socket_timeout=5.0)
    manager = make_lifecycle_manager(registry=registry, config=CONFIG)
    timeouts: list[str] = []

    def receiver(sender: object, *, event: LifecycleEvent, **_: object) -> None:
        if isinstance(event, HeartbeatTimeout):
            timeouts.append(event.service_id)
            frozen_lifecycle.freezer.tick(0.1)

    connection = connect(receiver, sender=manager)
    try:
        frozen_lifecycle.advance(0, manager)
        assert manager.is_leader
        ids = [manager.start_service(ExtensionService(f"p-{i:02d}", "1", id=f"p-{i:02d}")) for i in range(30)]
        while (registry.silence(ids[-1]) or (None, 0.0))[1] < TIMEOUT + 0.05:  # type: ignore[operator]
            time.sleep(0.02)  # real time must pass on the server's clock (the host's is frozen)
        per = [sum(1 for sid in ids if registry.partition_of(sid) == p) for p in range(2)]
        frozen_lifecycle.advance(1.0, manager)  # each partition's tick, once
        assert len(timeouts) == sum(min(n, 6) for n in per)
        for _ in range(10):
            frozen_lifecycle.advance(1.0, manager)
        assert sorted(timeouts) == sorted(ids)  # the rest in the next ticks, each once
    finally:
        connection.disconnect()
        registry.clear()


def test_a_leaders_ticks_soon_after_a_renewal_sweep_on_it_and_renewals_keep_their_interval(
        frozen_lifecycle, make_lifecycle_manager, record):
    """A burst's deadlines fall due one after another, a tick each: each tick sweeps, but one within a quarter of a
    renewal interval of the last renewal does not ask for the lease again (the sweeps are fenced: a lost lease
    shows there); a renewal still comes at least once per renewal interval, so the lease never runs out."""
    from lifecycle.shared_memory import SharedMemoryRegistry

    store = SharedMemoryRegistry(lease_ttl_secs=3.0)  # a renewal interval of 1 s, reused for 0.25 s: the burst's 0.2 s
    asked: list[float] = []
    swept: list[float] = []
    plain_lease, plain_sweep = store.lease, store.sweep

    def counted_lease(*args: object, **kwargs: object) -> object:
        asked.append(time.monotonic())
        return plain_lease(*args, **kwargs)  # type: ignore[arg-type]

    def counted_sweep(*args: object, **kwargs: object) -> object:
        swept.append(time.monotonic())
        return plain_sweep(*args, **kwargs)  # type: ignore[arg-type]

    store.lease, store.sweep = counted_lease, counted_sweep  # type: ignore[method-assign,assignment]
    manager = make_lifecycle_manager(registry=store, config=CONFIG)
    recorder = record(manager)
    frozen_lifecycle.advance(0, manager)
    assert manager.is_leader
    ids = []
    for i in range(10):  # deadlines 20 ms apart
        ids.append(manager.start_service(ExtensionService(f"burst-{i}", "1")))
        frozen_lifecycle.advance(0.02, manager)
    frozen_lifecycle.advance(0.3 - 0.2 + 0.01, manager)  # the first deadline has passed
    began, asks, sweeps_before = time.monotonic(), len(asked), len(swept)
    for _ in range(10):
        frozen_lifecycle.advance(0.02, manager)
    assert sorted(e.service_id for e in recorder.of(HeartbeatTimeout)) == sorted(ids)
    assert len(swept) - sweeps_before >= 9, "a tick for each deadline"
    in_burst = [t for t in asked[asks:] if t < began + 0.2]
    assert len(in_burst) <= 1, f"the lease asked for before {len(in_burst)} of a burst's sweeps"
    for _ in range(60):  # five renewal intervals, nothing due
        frozen_lifecycle.advance(0.1, manager)
        assert manager.is_leader
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    assert max(gaps) <= 1.0 + 0.1 + 1e-6, f"a renewal came late: {gaps}"
