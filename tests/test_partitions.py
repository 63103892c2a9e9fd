"""One namespace over several partitions: in the in-process store (frozen time) and on a real server.

A service's partition is crc32 of its id modulo `partitions`; each partition has its own lease,
deadlines and event log, names stay unique across all of them, and the count is recorded so a
process configured with another one is refused. The in-process tests drive every tick with
frozen time; the server's tests wait on conditions with generous bounds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis_server as servers
import test_fleet
from helpers import hearing_every_signal
from redis.crc import key_slot
from test_shared_memory import STEP, Counting, Fleet, owner

from lifecycle import (
    ExtensionService,
    FieldValueError,
    LifecycleConfig,
    LifecycleManager,
    RegistryRefused,
    ServiceAlreadyExists,
    ServiceStatus,
)
from lifecycle._partitions import partition_of
from lifecycle.errors import PartitionsRefused
from lifecycle.events import (
    Heartbeat,
    HeartbeatTimeout,
    LifecycleEvent,
    Reconnected,
    ReconnectFailed,
    Reconnecting,
    Started,
)
from lifecycle.model import ServiceId
from lifecycle.redis import RedisRegistry
from lifecycle.shared_memory import SharedMemoryRegistry
from lifecycle.testing import FrozenLifecycle

P = 3
TTL = 3.0
S = ServiceStatus
CONFIG = LifecycleConfig(heartbeat_interval_secs=1.0, heartbeat_timeout_secs=5.0, reconnect_delay_ms=100,
                         max_reconnect_delay_ms=400, max_reconnect_attempts=3, jitter=0.0)


def in_partition(p: int, name: str, version: str = "1") -> ExtensionService:
    """A service called `name` whose (generated) id lies in partition `p` of `P`."""
    while True:
        sid = ServiceId.generate()
        if partition_of(sid, P) == p:
            return ExtensionService(name, version, id=sid)


class Partitioned(Fleet):
    """`Fleet` (tests/test_shared_memory.py) on a store of `P` partitions."""

    def __init__(self, frozen: FrozenLifecycle, make: Callable[..., LifecycleManager]) -> None:
        super().__init__(frozen, make)
        self.store = SharedMemoryRegistry(lease_ttl_secs=TTL, partitions=P)


@pytest.fixture
def fleet(frozen_lifecycle: FrozenLifecycle, make_lifecycle_manager: Callable[..., LifecycleManager]
          ) -> Iterator[Partitioned]:
    made = Partitioned(frozen_lifecycle, make_lifecycle_manager)
    with hearing_every_signal(made):
        yield made


# -- the in-process store ----------------------------------------------------------------------------


def test_every_partition_beats_times_out_and_reconnects_its_services_each_event_once(fleet):
    connector = Counting(fail_from=2 * P + 1)  # the starts connect; every attempt fails
    managers = fleet.add(3, connector=connector)
    fleet.run(STEP)
    silent = [managers[p].start_service(in_partition(p, f"silent-{p}")) for p in range(P)]
    beaten = [managers[p].start_service(in_partition(p, f"beaten-{p}")) for p in range(P)]
    assert sorted(partition_of(sid, P) for sid in silent) == list(range(P))
    for _ in range(8):
        fleet.run(1.0)
        for k, sid in enumerate(beaten):
            managers[(k + 1) % 3].handle_heartbeat(sid)  # by a manager other than its starter
    timed_out = Counter(e.service_id for _, e in fleet.of(HeartbeatTimeout))
    assert timed_out == Counter(silent)  # each silent one once, no beaten one
    for sid in silent:
        assert [e.attempt for _, e in fleet.of(Reconnecting) if e.service_id == sid] == [1, 2, 3]
        assert [e.attempts for _, e in fleet.of(ReconnectFailed) if e.service_id == sid] == [3]
        assert all(m.get_status(sid) is S.ERROR for m in managers)
    assert all(m.get_status(sid) is S.RUNNING for sid in beaten for m in managers)
    assert len(connector.calls) == 2 * P + 3 * P
    assert Counter(e.service_id for _, e in fleet.of(Started)) == Counter(silent + beaten)
    assert fleet.store.count() == 2 * P and len(fleet.store.list_all()) == 2 * P


def test_a_revived_service_in_each_partition_reconnects_once(fleet):
    managers = fleet.add(2)
    fleet.run(STEP)
    sids = [managers[0].start_service(in_partition(p, f"svc-{p}")) for p in range(P)]
    fleet.run(5.0 + 1.0)  # every one timed out, attempt 1 due after 0.1 s and a tick
    assert Counter(e.service_id for _, e in fleet.of(HeartbeatTimeout)) == Counter(sids)
    for sid in sids:
        managers[1].handle_heartbeat(sid)  # a heartbeat revives it, in whichever partition
    fleet.run(STEP)
    assert Counter(e.service_id for _, e in fleet.of(Reconnected)) == Counter(sids)
    assert all(m.get_status(sid) is S.RUNNING for sid in sids for m in managers)


def test_a_name_is_unique_across_partitions(fleet):
    store = fleet.store
    first, second = in_partition(0, "svc"), in_partition(1, "svc")
    sid = store.register(first)
    with pytest.raises(ServiceAlreadyExists) as caught:
        store.register(second)
    assert caught.value.id == sid
    assert second.id not in store and store.count() == 1
    assert store.handle().join(in_partition(2, "svc")) == (sid, True)  # the same name and version: joined
    with pytest.raises(ServiceAlreadyExists):
        store.join(in_partition(2, "svc", "2"))
    assert store.get_by_name("svc").id == sid
    store.unregister(sid)
    assert store.register(second) == second.id  # the name is free again
    assert store.get_by_name("svc").id == second.id


def test_a_claim_whose_registration_never_finished_is_taken_over(fleet):
    store = fleet.store
    lost = in_partition(1, "svc")
    claims = store._claims[partition_of("svc", P)]
    assert claims.claim("svc", lost.id) == (lost.id, True)  # a process died between the claim and the registration
    taker = in_partition(2, "svc")
    assert store.register(taker) == taker.id
    assert store.get_by_name("svc").id == taker.id


def test_the_event_log_is_one_stream_over_every_partition_without_loss_or_repeat(fleet):
    store = fleet.store
    start = store.last_event_id()
    assert len(start.split(",")) == P
    seen: list[tuple[str, LifecycleEvent]] = []
    after = start
    registered: list[str] = []
    for round_ in range(4):
        for p in range(P):
            sid = store.register(in_partition(p, f"svc-{round_}-{p}"))
            store.activate(sid, 5.0)  # Started, in the service's partition's log
            registered.append(sid)
        while rows := store.read_events(after, count=2):  # small pages: a page ends inside a partition
            seen += rows
            after = rows[-1][0]
    assert Counter(e.service_id for _, e in seen if isinstance(e, Started)) == Counter(registered)
    assert len(seen) == len({entry for entry, _ in seen})
    assert store.read_events(after) == []
    assert store.read_events(start, count=1000)[-1][1].service_id == registered[-1]
    with pytest.raises(FieldValueError) as caught:
        store.read_events("0-0")  # a one-partition position
    assert caught.value.field == "after"


def test_a_blocking_read_wakes_for_an_event_of_any_partition(fleet):
    store = fleet.store
    after = store.last_event_id()
    got: list[list[tuple[str, LifecycleEvent]]] = []
    done = threading.Event()

    def read() -> None:
        got.append(store.read_events(after, block=30.0))
        done.set()

    reader = threading.Thread(target=read)
    reader.start()
    service = in_partition(P - 1, "late")
    store.handle().activate(store.handle().register(service), 5.0)
    assert done.wait(30.0), "the blocked read never saw the event"
    reader.join()
    assert {e.service_id for _, e in got[0]} == {service.id}


def test_another_partition_count_on_the_same_data_is_refused():
    store = SharedMemoryRegistry(partitions=P)
    for other in (1, 2):
        with pytest.raises(PartitionsRefused) as caught:
            store.handle(partitions=other)
        error = caught.value
        assert isinstance(error, RegistryRefused) and error.reason == "partitions"
        assert (error.field, error.code, error.recorded, error.configured) == ("partitions", "mismatch", P, other)
        assert f"partitions={P}" in str(error) and f"partitions={other}" in str(error)
    with pytest.raises(PartitionsRefused):
        SharedMemoryRegistry(SharedMemoryRegistry().data, partitions=2)
    assert store.handle().partitions == P
    with pytest.raises(FieldValueError) as bad:
        SharedMemoryRegistry(partitions=0)
    assert (bad.value.field, bad.value.code) == ("partitions", "too_small")


def test_each_partition_fails_over_within_a_lease_and_a_tick(fleet):
    a, b = fleet.add(2)
    fleet.run(STEP)
    assert fleet.store.leaders() == [owner(a)] * P  # the first to tick takes every partition
    sids = [a.start_service(in_partition(p, f"svc-{p}")) for p in range(P)]
    # a stops renewing (a SIGKILL: no release); only b's timers run from now on.
    waited = 0.0
    while fleet.store.leaders() != [owner(b)] * P:
        fleet.frozen.advance(STEP, b)
        waited += STEP
        assert waited <= TTL + TTL / 3 + STEP, f"not every partition failed over: {fleet.store.leaders()}"
    assert b.is_leader and all(t.leader for t in b._engine.ticker.tickers)
    for _ in range(round(6.0 / STEP)):
        fleet.frozen.advance(STEP, b)
    assert Counter(e.service_id for _, e in fleet.of(HeartbeatTimeout)) == Counter(sids)
    assert fleet.senders(HeartbeatTimeout) == {b}


def test_leaders_of_different_partitions_are_different_processes(fleet):
    a, b = fleet.add(2)
    fleet.run(6.0)  # the first to tick took every partition; it gave one up to the other (engine/spread.py)
    leaders = fleet.store.leaders()
    assert sorted(Counter(leaders).values()) == [1, 2] and set(leaders) == {owner(a), owner(b)}
    sids = [b.start_service(in_partition(p, f"svc-{p}")) for p in range(P)]
    fleet.run(6.0)
    assert fleet.store.leaders() == leaders
    timeouts = {e.service_id: s for s, e in fleet.of(HeartbeatTimeout)}
    assert set(timeouts) == set(sids)
    by = {owner(a): a, owner(b): b}
    assert [timeouts[sid] for sid in sids] == [by[leader] for leader in leaders]  # each by its partition's leader


# -- a real server ----------------------------------------------------------------------------------

TIMEOUT = 0.4
FAST = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=TIMEOUT, reconnect_delay_ms=20,
                       max_reconnect_delay_ms=50, max_reconnect_attempts=3, jitter=0.0)
WAIT = 30.0  # generous bound for what takes about a second
recorded = test_fleet.events  # every lifecycle signal of the process, with its sender (`of`, `wait_of`)


@pytest.fixture
def on_server(redis_server: servers.RedisServer, namespace: str) -> Iterator[Callable[..., Any]]:
    """`on_server(partitions=P, manager=True)`: a manager (or a bare registry) with its own client on the namespace."""
    registries: list[RedisRegistry] = []
    managers: list[LifecycleManager] = []

    def build(*, partitions: int = P, manager: bool = True, config: LifecycleConfig = FAST, **kwargs: Any) -> Any:
        registry = RedisRegistry.from_url(redis_server.url, namespace=namespace, partitions=partitions,
                                          lease_ttl_secs=TTL, socket_timeout=2.0, socket_connect_timeout=2.0)
        registries.append(registry)
        if not manager:
            return registry
        managers.append(LifecycleManager(registry, config, **kwargs))
        return managers[-1]

    yield build
    for made in managers:
        made.shutdown()
    for registry in registries:
        with contextlib.suppress(Exception):
            registry.clear()
        registry.client.close()


def tag_of(key: str) -> str:
    return key[key.index("{") + 1:key.index("}")]


def test_on_a_server_each_partition_has_its_own_hash_tag_and_the_count_is_recorded(on_server, redis_server,
                                                                                   namespace):
    a, b = on_server(), on_server()
    sids = [a.start_service(in_partition(p, f"svc-{p}")) for p in range(P)]
    for sid in sids:
        b.handle_error(sid, "boom")
    client = redis.Redis(port=redis_server.port, decode_responses=True)
    try:
        keys = [k for k in client.keys("lifecycle:*") if tag_of(k).split("/")[0] == namespace]
        tags = Counter(tag_of(k) for k in keys)
        assert client.get(f"lifecycle:{{{namespace}}}:partitions") == str(P)
        assert sorted(k for k in keys if tag_of(k) == namespace) == [  # the count, and the fleet's members
            f"lifecycle:{{{namespace}}}:members", f"lifecycle:{{{namespace}}}:partitions"]
        parts = sorted(t for t in tags if t != namespace)
        assert len(parts) == P and all(tags[t] >= 8 for t in parts)  # services, status, deadlines, lease, log...
        for tag in parts:  # each partition's keys, so each script's, in one slot
            assert len({key_slot(k.encode()) for k in keys if tag_of(k) == tag}) == 1
        assert len({key_slot(t.encode()) for t in parts}) == P
    finally:
        client.close()


def test_on_a_server_every_partition_times_out_and_reconnects_each_event_once(on_server, recorded):
    connector = Counting(fail_from=P + 1)  # the starts connect; every attempt fails
    managers = [on_server(connector=connector) for _ in range(3)]
    sids = [managers[p].start_service(in_partition(p, f"silent-{p}")) for p in range(P)]
    assert recorded.wait_of(ReconnectFailed, P), "not every silent service was given up on"
    for manager in managers:
        manager.shutdown()  # joins the watchdogs: any duplicate would be recorded by now
    assert Counter(e.service_id for _, e in recorded.of(HeartbeatTimeout)) == Counter(sids)
    for sid in sids:
        assert [e.attempt for _, e in recorded.of(Reconnecting) if e.service_id == sid] == [1, 2, 3]
        assert [e.attempts for _, e in recorded.of(ReconnectFailed) if e.service_id == sid] == [3]
    assert len(connector.calls) == P + 3 * P
    assert all(managers[0].registry.get(sid).status is S.ERROR for sid in sids)


def test_on_a_server_beaten_services_in_every_partition_never_time_out(on_server, recorded):
    # A timeout no gap between beats reaches on a loaded machine, however the threads are scheduled.
    slow = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=1.5, jitter=0.0)
    a, b = on_server(config=slow), on_server(config=slow)
    sids = [a.start_service(in_partition(p, f"svc-{p}")) for p in range(P)]
    stop = threading.Event()
    for _ in range(int(2 * 1.5 / 0.05)):  # beats every 50 ms, alternately through each manager
        for k, sid in enumerate(sids):
            (a, b)[k % 2].handle_heartbeat(sid)
        stop.wait(0.05)
    assert recorded.of(HeartbeatTimeout) == []
    assert b.registry.beat_many(sids) and all(a.get_status(sid) is S.RUNNING for sid in sids)
    assert len(recorded.of(Heartbeat)) >= 3 * P


def test_on_a_server_a_name_is_unique_across_partitions(on_server):
    store = on_server(manager=False)
    first, second = in_partition(0, "svc"), in_partition(2, "svc")
    sid = store.register(first)
    with pytest.raises(ServiceAlreadyExists):
        on_server(manager=False).register(second)
    assert second.id not in store and store.count() == 1
    assert store.get_by_name("svc").id == sid
    store.unregister(sid)
    assert store.register(second) == second.id


def test_on_a_server_the_event_log_is_one_stream_over_every_partition(on_server):
    store, writer = on_server(manager=False), on_server(manager=False)
    after = store.last_event_id()
    seen: list[tuple[str, LifecycleEvent]] = []
    started: list[str] = []
    for round_ in range(3):
        for p in range(P):
            sid = writer.register(in_partition(p, f"svc-{round_}-{p}"))
            writer.activate(sid, 5.0)
            started.append(sid)
        while rows := store.read_events(after, count=2):
            seen += rows
            after = rows[-1][0]
    assert Counter(e.service_id for _, e in seen if isinstance(e, Started)) == Counter(started)
    assert len(seen) == len({entry for entry, _ in seen})
    late = writer.register(in_partition(1, "late"))
    got: list[list[tuple[str, LifecycleEvent]]] = []
    reader = threading.Thread(target=lambda: got.append(store.read_events(after, block=WAIT)))
    reader.start()
    writer.activate(late, 5.0)
    reader.join(WAIT + 5.0)
    assert got and {e.service_id for _, e in got[0]} == {late}


@pytest.mark.parametrize(("first", "then"), [(P, 1), (P, 2), (1, P)])
def test_on_a_server_another_partition_count_is_refused_naming_both(on_server, redis_server, namespace, first,
                                                                    then):
    on_server(partitions=first, manager=False).register(ExtensionService("svc", "1"))
    client = redis.Redis(port=redis_server.port, decode_responses=True)
    try:
        before = sorted(client.keys(f"lifecycle:{{{namespace}*"))
        other = on_server(partitions=then, manager=False)
        for call in (lambda: other.register(ExtensionService("other", "1")), other.count,
                     lambda: LifecycleManager(other, FAST).start_service(ExtensionService("third", "1"))):
            with pytest.raises(PartitionsRefused) as caught:
                call()
            error = caught.value
            assert isinstance(error, RegistryRefused) and error.reason == "partitions"
            assert (error.field, error.recorded, error.configured) == ("partitions", first, then)
            assert f"partitions={first}" in str(error) and f"partitions={then}" in str(error)
            assert error.port == redis_server.port
        assert sorted(client.keys(f"lifecycle:{{{namespace}*")) == before  # nothing written
    finally:
        client.close()


def test_on_a_server_one_partition_writes_the_same_keys_as_before(on_server, redis_server, namespace):
    store = on_server(partitions=1, manager=False)
    assert store.count() == 0
    client = redis.Redis(port=redis_server.port, decode_responses=True)
    try:
        assert client.keys(f"lifecycle:{{{namespace}}}:*") == []  # a read records nothing
        store.register(ExtensionService("svc", "1"))
        keys = client.keys(f"lifecycle:*{namespace}*")
        assert keys and all(tag_of(k) == namespace for k in keys)
        assert client.get(f"lifecycle:{{{namespace}}}:partitions") == "1"
    finally:
        client.close()


def test_on_a_server_a_killed_leader_fails_over_every_partition_within_a_lease_and_a_tick(redis_server, namespace,
                                                                                          tmp_path):
    import signal

    from test_fleet_processes import SLACK, Beater
    from test_fleet_processes import TTL as LEASE
    from test_fleet_processes import Fleet as Processes

    f = Processes(redis_server.url, namespace, tmp_path)
    try:
        f.args += ["--partitions", str(P)]
        f.registry.client.close()
        f.registry = RedisRegistry.from_url(redis_server.url, namespace=namespace, partitions=P, socket_timeout=2.0)
        members = f.spawn(2)
        ids = [next(f"svc-{p}-{k}" for k in range(1000) if partition_of(f"svc-{p}-{k}", P) == p) for p in range(P)]
        f.start(members[0], *ids)
        with Beater(members, ids):
            f.wait_for(lambda: None not in f.registry.leaders(), "every partition led")
            killed_pid = int(f.registry.leaders()[0].split(":")[-2])
            survivor = next(m for m in members if m.pid != killed_pid)
            killed = time.monotonic()
            f.member(killed_pid).signal(signal.SIGKILL)
        with Beater([survivor], ids):
            while not all(t is not None and int(t.split(":")[-2]) == survivor.pid for t in f.registry.leaders()):
                assert time.monotonic() - killed < WAIT, f"no failover: {f.registry.leaders()}"
                time.sleep(0.02)  # polling the server's leases: nothing to wait on in this process
            took = time.monotonic() - killed
            assert took < LEASE + LEASE / 3 + SLACK, f"every partition failed over {took:.2f} s after the kill"
            # An observation window, not a wait for something: beaten services stay up under the survivor.
            threading.Event().wait(LEASE)
        assert f.events("heartbeat_timeout") == []
    finally:
        f.close()


class Lines(logging.Handler):
    """The library's log lines, counted as they come; `wait(text, n)` waits until `n` contain `text`."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[logging.LogRecord] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.lines.append(record)
            self.changed.notify_all()

    def count(self, text: str) -> int:
        with self.changed:
            return sum(text in record.getMessage() for record in self.lines)

    def wait(self, text: str, n: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: sum(text in r.getMessage() for r in self.lines) >= n, WAIT)


def test_on_a_server_an_outage_is_logged_once_however_many_partitions_meet_it(fresh_redis_server, namespace):
    """Every partition's tick meets the stopped server and gives its lease up, each on its own; the
    cause is logged once, and "reachable again" once, when every partition has its lease back."""
    lines = Lines()
    logger = logging.getLogger("lifecycle")
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not the attribute: it clears the logger's cache of levels
    registry = RedisRegistry.from_url(fresh_redis_server.url, namespace=namespace, partitions=P, lease_ttl_secs=TTL,
                                      socket_timeout=1.0, socket_connect_timeout=1.0)
    manager = LifecycleManager(registry, FAST)
    try:
        assert lines.wait("now acts for the fleet", P), "the manager never led every partition"
        fresh_redis_server.stop()
        # Each partition's tick fails on its own (its own lease, its own backoff) ...
        assert lines.wait("no longer acts for the fleet", P), "not every partition's tick met the outage"
        dropped = [r.getMessage() for r in lines.lines if "no longer acts" in r.getMessage()]
        assert all(any(f"(partition {p})" in line for line in dropped) for p in range(P)), dropped
        fresh_redis_server.start()
        # ... and takes its lease back on its own.
        assert lines.wait("now acts for the fleet", 2 * P), "not every partition's lease was taken back"
        assert lines.wait("reachable again", 1)
        assert registry.leaders() == [manager._engine.ticker.owner] * P  # type: ignore[attr-defined]
    finally:
        manager.shutdown()
        logger.removeHandler(lines)
        logger.setLevel(level)
        registry.client.close()
    assert [r.levelno for r in lines.lines if "keeps trying" in r.getMessage()] == [logging.ERROR]
    assert lines.count("reachable again") == 1


def commands(admin: redis.Redis) -> Counter[str]:
    """Calls per command since the last CONFIG RESETSTAT, the admin's own (CONFIG, INFO) left out."""
    stats = admin.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in stats.items()
                    if not name.startswith(("cmdstat_config", "cmdstat_info"))})


@pytest.mark.parametrize("parts", [1, 4])
def test_on_a_plain_server_an_idle_log_reader_makes_one_call_per_poll(fresh_redis_server, namespace, parts):
    """The fleet log's reader polls with `read_events(after, block=poll)`: over P partitions that is one
    XREAD of the P streams (it used to be 2 x P: a read of each, then a blocking read of each in turn)."""
    registry = RedisRegistry.from_url(fresh_redis_server.url, namespace=namespace, partitions=parts,
                                      socket_timeout=2.0, socket_connect_timeout=2.0)
    admin = redis.Redis(port=fresh_redis_server.port, decode_responses=True)
    try:
        for p in range(parts):  # a fleet that has written (the partition count is recorded) in every log
            sid = next(s for s in iter(ServiceId.generate, None) if partition_of(s, parts) == p)
            registry.activate(registry.register(ExtensionService(f"svc-{p}", "1", id=sid)), 5.0)
        after = registry.last_event_id()
        assert registry.read_events(after, block=0.05) == []
        admin.config_resetstat()
        assert registry.last_event_id() == after
        assert commands(admin) == Counter({"xrevrange": parts})  # one pipelined round trip, one read per log
        polls, poll = 3, 0.5  # follow_log's poll
        admin.config_resetstat()
        for _ in range(polls):
            assert registry.read_events(after, block=poll) == []
        assert commands(admin) == Counter({"xread": polls})
        sid = registry.register(ExtensionService("late", "1"))
        registry.activate(sid, 5.0)  # an entry in one partition's log ...
        rows = registry.read_events(after, block=poll)  # ... is read at once, with its position
        assert {event.service_id for _, event in rows} == {sid} and rows
        assert registry.read_events(rows[-1][0], block=0.05) == []
    finally:
        admin.close()
        registry.client.close()


@pytest.mark.parametrize("parts", [1, 4])
def test_on_a_server_a_blocking_read_longer_than_the_socket_timeout_ends_before_it(fresh_redis_server, namespace,
                                                                                   parts):
    """A read blocked past the socket timeout would fail as an outage and drop its connection: it is cut short."""
    registry = RedisRegistry.from_url(fresh_redis_server.url, namespace=namespace, partitions=parts,
                                      socket_timeout=0.3, socket_connect_timeout=2.0)
    admin = redis.Redis(port=fresh_redis_server.port, decode_responses=True)
    try:
        after = registry.last_event_id()
        made = admin.info("stats")["total_connections_received"]
        for _ in range(2):
            assert registry.read_events(after, block=1.0) == []
        assert admin.info("stats")["total_connections_received"] == made
        sid = registry.register(ExtensionService("late", "1"))
        registry.activate(sid, 5.0)
        assert {event.service_id for _, event in registry.read_events(after, block=1.0)} == {sid}
    finally:
        admin.close()
        registry.client.close()


def test_on_a_server_the_logs_read_together_raise_lifecycle_errors_only(fresh_redis_server, namespace):
    """The one XREAD of every partition's log and the pipelined newest ids: refused or unreachable, never raw."""
    from lifecycle.errors import RegistryRefused, RegistryUnavailable

    admin = redis.Redis(port=fresh_redis_server.port, decode_responses=True)
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">pw", "+@connection", "+get", "~*")
    owner = RedisRegistry.from_url(fresh_redis_server.url, namespace=namespace, partitions=P)
    reader = RedisRegistry.from_url(f"redis://reader:pw@127.0.0.1:{fresh_redis_server.port}/0", namespace=namespace,
                                    partitions=P, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        owner.register(ExtensionService("svc", "1"))  # records the count, which the reader may GET
        start = owner.last_event_id()
        reads = (reader.last_event_id, lambda: reader.read_events(start), lambda: reader.read_events(start, block=0.1))
        for call in reads:
            with pytest.raises(RegistryRefused) as refused:
                call()
            assert refused.value.reason == "permission"
        fresh_redis_server.stop()
        for call in (owner.last_event_id, lambda: owner.read_events(start, block=0.1)):
            with pytest.raises(RegistryUnavailable) as caught:
                call()
            assert caught.value.reason == "connection"
    finally:
        for made in (owner, reader):
            made.client.close()
        admin.close()


def test_every_shared_registry_says_how_many_partitions_and_which_holds_a_service(redis_server, namespace):
    """`partitions` and `partition_of` are part of `SharedRegistry`: one-partition stores answer 1 and 0."""
    from lifecycle.fleet import SharedRegistry, is_shared

    assert "partitions" in SharedRegistry.__annotations__ and callable(SharedRegistry.partition_of)
    client = redis.Redis.from_url(redis_server.url)
    try:
        stores: list[tuple[SharedRegistry, int]] = [
            (RedisRegistry(client, namespace=namespace), 1), (SharedMemoryRegistry(), 1),
            (RedisRegistry(client, namespace=namespace + "-p", partitions=P), P),
            (SharedMemoryRegistry(partitions=P), P),
        ]
        sids = [in_partition(p, "x").id for p in range(P)]
        for store, count in stores:
            assert is_shared(store) and store.partitions == count, store
            assert [store.partition_of(sid) for sid in sids] == ([0] * P if count == 1 else list(range(P))), store
    finally:
        client.close()


@pytest.mark.parametrize("parts", [1, P])
def test_on_a_server_a_running_process_records_the_count_again_after_the_data_was_lost(fresh_redis_server, namespace,
                                                                                      parts):
    """After a FLUSHALL the record of the count is gone with the rest: the running process's next lease tick (a
    new generation) has it written again, so a process started later with another count is still refused."""
    admin = redis.Redis(port=fresh_redis_server.port, decode_responses=True)
    key = f"lifecycle:{{{namespace}}}:partitions"
    registry = RedisRegistry.from_url(fresh_redis_server.url, namespace=namespace, partitions=parts,
                                      lease_ttl_secs=TTL, socket_timeout=2.0, socket_connect_timeout=2.0)
    manager = LifecycleManager(registry, LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=30.0))
    later = RedisRegistry.from_url(fresh_redis_server.url, namespace=namespace, partitions=parts + 1)
    try:
        manager.start_service(ExtensionService("svc", "1"))
        assert admin.get(key) == str(parts)
        admin.flushall()
        test_fleet.eventually(lambda: admin.get(key) is not None, what="the count recorded again")  # no call of ours
        assert admin.get(key) == str(parts)
        with pytest.raises(PartitionsRefused) as caught:
            later.register(ExtensionService("other", "1"))
        assert (caught.value.recorded, caught.value.configured) == (parts, parts + 1)
    finally:
        manager.shutdown()
        for made in (registry, later):
            made.client.close()
        admin.close()
