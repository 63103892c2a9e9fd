"""The `Registry` contract, run unchanged against the in-memory registry and `RedisRegistry`.

Every test here runs once per registry: `RegistryService`, the in-process `SharedMemoryRegistry`,
and `RedisRegistry` on each server binary found (Redis, Valkey). Time is real (a server's clock
cannot be frozen), so durations are short and bounds generous. Where the shared registry differs
by design the test says so and checks both sides.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis_server as servers

from lifecycle import (
    Capability,
    ExtensionService,
    Registry,
    RegistryService,
    ServiceAlreadyExists,
    ServiceFilter,
    ServiceNotFound,
    ServiceStatus,
    TransportConfig,
    TransportType,
)
from lifecycle.registry import RegistryStats

_KINDS = ["memory", "shared_memory", *sorted(servers.binaries())]
_Make = Callable[..., Registry]

SHORT = 0.2  # a heartbeat timeout that real time passes quickly
LONG = 30.0  # a heartbeat timeout no test waits out


@pytest.fixture(params=_KINDS)
def make_registry(request: pytest.FixtureRequest) -> Iterator[_Make]:
    """`make(timeout=LONG)`: a fresh, empty registry of this test's kind (cleared and closed after)."""
    made: list[Registry] = []

    def make(timeout: float = LONG) -> Registry:
        if request.param == "memory":
            registry: Registry = RegistryService(heartbeat_timeout_secs=timeout)
        elif request.param == "shared_memory":
            from lifecycle.shared_memory import SharedMemoryRegistry

            registry = SharedMemoryRegistry(heartbeat_timeout_secs=timeout)
        else:
            from lifecycle.redis import RedisRegistry

            server = request.getfixturevalue("redis_servers")(request.param)
            registry = RedisRegistry.from_url(server.url, namespace=f"c-{uuid.uuid4().hex[:10]}",
                                              heartbeat_timeout_secs=timeout)
        made.append(registry)
        return registry

    yield make
    for registry in made:
        registry.clear()
        client = getattr(registry, "client", None)
        if client is not None:
            client.close()


@pytest.fixture
def reg(make_registry: _Make) -> Registry:
    return make_registry()


def shared(registry: Registry) -> bool:
    return not isinstance(registry, RegistryService)


def svc(name: str = "svc", **kwargs: object) -> ExtensionService:
    return ExtensionService(name, "1.0", **kwargs)  # type: ignore[arg-type]


def running(reg: Registry, name: str = "svc", **kwargs: object) -> str:
    """A registered RUNNING service that has just heartbeated."""
    sid = reg.register(svc(name, **kwargs))
    reg.update_status(sid, ServiceStatus.RUNNING)
    reg.heartbeat(sid)
    return sid


def wait_silent(reg: Registry, sid: str, seconds: float) -> None:
    """Let real time pass until the registry's own clock says `sid` has been silent `seconds`."""
    end = time.monotonic() + 10
    while True:
        live = reg.silence(sid)
        assert live is not None and live[1] is not None
        if live[1] >= seconds:
            return
        assert time.monotonic() < end, f"silence stuck at {live[1]} s"
        time.sleep(seconds - live[1] + 0.01)


# -- registering ---------------------------------------------------------------------------------


def test_satisfies_the_registry_protocol(reg):
    assert isinstance(reg, Registry)


def test_a_new_registry_is_empty(reg):
    assert reg.count() == 0 == len(reg)
    assert reg.list_all() == [] == reg.list()
    assert reg.stats() == RegistryStats()
    assert reg.health_check() == []


def test_register_returns_the_id_and_stores_every_field(reg):
    service = svc("full", description="d", metadata={"k": [1, "two"]},
                  capabilities=[Capability("search", "2", {"depth": 3})],
                  transport=TransportConfig(TransportType.TCP, address="h", port=7, timeout_secs=4.0))
    assert reg.register(service) == service.id
    got = reg.get(service.id)
    assert got is not service
    for field in ("id", "name", "version", "description", "metadata", "capabilities", "transport", "status"):
        assert getattr(got, field) == getattr(service, field), field
    assert got.status is ServiceStatus.STARTING
    assert got.last_heartbeat is None and got.retry_count == 0
    assert service.id in reg and reg.count() == 1


def test_register_keeps_a_copy_so_mutating_the_original_changes_nothing(reg):
    service = svc(metadata={"k": 1})
    reg.register(service)
    service.metadata["k"] = 2
    service.description = "changed"
    got = reg.get(service.id)
    assert got.metadata == {"k": 1} and got.description == ""


def test_a_second_service_with_a_taken_name_is_refused_and_names_the_holder(reg):
    first = reg.register(svc("dup"))
    second = svc("dup")
    with pytest.raises(ServiceAlreadyExists) as caught:
        reg.register(second)
    assert caught.value.name == "dup" and caught.value.id == first
    assert "dup" in str(caught.value)
    assert reg.count() == 1 and second.id not in reg and reg.get_by_name("dup").id == first


def test_a_second_service_with_a_taken_id_is_refused(reg):
    first = svc("one")
    reg.register(first)
    with pytest.raises(ServiceAlreadyExists) as caught:
        reg.register(svc("two", id=first.id))
    assert caught.value.id == first.id
    assert reg.count() == 1 and reg.get_by_name("two") is None and reg.get(first.id).name == "one"


def test_registering_the_same_service_twice_is_refused_naming_it(reg):
    service = svc("twice")
    reg.register(service)
    with pytest.raises(ServiceAlreadyExists) as caught:
        reg.register(service)
    assert caught.value.id == service.id
    assert reg.count() == 1


def test_a_name_is_free_again_after_unregister(reg):
    sid = reg.register(svc("again"))
    reg.unregister(sid)
    other = reg.register(svc("again"))
    assert reg.get_by_name("again").id == other


@pytest.mark.parametrize("bad", [None, "svc", {"name": "x"}, 3])
def test_register_refuses_a_non_service_with_type_error(reg, bad):
    with pytest.raises(TypeError, match="ExtensionService"):
        reg.register(bad)
    assert reg.count() == 0


def test_concurrent_registrations_of_one_name_admit_exactly_one(reg):
    barrier = threading.Barrier(4)
    won: list[str] = []
    refused: list[Exception] = []

    def attempt() -> None:
        service = svc("race")
        barrier.wait(5)
        try:
            won.append(reg.register(service))
        except ServiceAlreadyExists as exc:
            refused.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(won) == 1 and len(refused) == 3
    assert reg.count() == 1 and {e.id for e in refused} == set(won)


# -- unregistering and reading -------------------------------------------------------------------


def test_unregister_removes_and_returns_the_last_record(reg):
    sid = running(reg, "gone")
    info = reg.unregister(sid)
    assert info.service.id == sid and info.service.name == "gone"
    assert info.service.status is ServiceStatus.RUNNING and info.service.last_heartbeat is not None
    assert sid not in reg and reg.get(sid) is None and reg.get_by_name("gone") is None
    assert reg.silence(sid) is None and reg.count() == 0


def test_unregister_of_an_unknown_id_raises_service_not_found_naming_it(reg):
    with pytest.raises(ServiceNotFound, match="nope"):
        reg.unregister("nope")
    sid = reg.register(svc())
    reg.unregister(sid)
    with pytest.raises(ServiceNotFound, match=sid):
        reg.unregister(sid)


@pytest.mark.parametrize("bad", [None, 3, b"id"])
def test_calls_that_take_an_id_refuse_a_non_str_with_type_error(reg, bad):
    for call in (reg.unregister, reg.heartbeat, lambda i: reg.update_status(i, ServiceStatus.RUNNING)):
        with pytest.raises(TypeError, match="str"):
            call(bad)


@pytest.mark.parametrize("bad", [None, 3, "unknown", ""])
def test_reads_of_an_unknown_or_bad_id_answer_none(reg, bad):
    reg.register(svc())
    assert reg.get(bad) is None
    assert reg.get_by_name(bad) is None
    assert reg.get_registration(bad) is None
    assert reg.silence(bad) is None
    assert (bad in reg) is False


def test_heartbeat_and_update_status_of_an_unknown_id_raise_service_not_found(reg):
    with pytest.raises(ServiceNotFound, match="ghost"):
        reg.heartbeat("ghost")
    with pytest.raises(ServiceNotFound, match="ghost"):
        reg.update_status("ghost", ServiceStatus.RUNNING)
    assert reg.count() == 0


def test_update_status_refuses_what_is_not_a_status(reg):
    sid = reg.register(svc())
    with pytest.raises(ValueError, match="status"):
        reg.update_status(sid, "sleeping")
    with pytest.raises(TypeError, match="status"):
        reg.update_status(sid, 3)
    assert reg.get(sid).status is ServiceStatus.STARTING


def test_get_by_name_finds_the_service(reg):
    sid = reg.register(svc("named"))
    assert reg.get_by_name("named").id == sid
    assert reg.get_by_name("other") is None


def test_get_registration_has_aware_utc_times_of_now(reg):
    before = datetime.now(UTC)
    sid = reg.register(svc())
    info = reg.get_registration(sid)
    # The shared registry's times are the server's, brought to this host through its own "now".
    slack = timedelta(seconds=2)
    assert info.registered_at.tzinfo is not None and info.registered_at.utcoffset() == timedelta(0)
    assert before - slack <= info.registered_at <= datetime.now(UTC) + slack
    assert info.updated_at >= info.registered_at - timedelta(milliseconds=1)
    assert info.service.id == sid


def test_snapshots_are_copies_every_time(reg):
    sid = reg.register(svc(metadata={"k": [1]}, capabilities=[Capability("c", "1", {"x": 1})]))
    a, b = reg.get(sid), reg.get(sid)
    assert a is not b and a == b
    a.metadata["k"].append(2)
    a.capabilities[0].config["x"] = 2
    a.status = ServiceStatus.ERROR
    reg.get_by_name("svc").metadata["new"] = 1
    reg.get_registration(sid).service.description = "changed"
    reg.list_all()[0].metadata.clear()
    reg.list(ServiceFilter(capability="c"))[0].capabilities.clear()
    got = reg.get(sid)
    assert got.metadata == {"k": [1]} and got.capabilities == [Capability("c", "1", {"x": 1})]
    assert got.status is ServiceStatus.STARTING and got.description == ""


# -- status ----------------------------------------------------------------------------------------


def test_update_status_sets_it_and_returns_the_one_it_replaced(reg):
    sid = reg.register(svc())
    assert reg.update_status(sid, ServiceStatus.RUNNING) is ServiceStatus.STARTING
    assert reg.update_status(sid, "error") is ServiceStatus.RUNNING
    assert reg.get(sid).status is ServiceStatus.ERROR
    # No transition check: that is the manager's business.
    assert reg.update_status(sid, ServiceStatus.STOPPED) is ServiceStatus.ERROR
    assert reg.update_status(sid, ServiceStatus.RUNNING) is ServiceStatus.STOPPED


def test_update_status_touches_updated_at_only(reg):
    sid = reg.register(svc())
    before = reg.get_registration(sid)
    time.sleep(0.3)  # real time must pass for updated_at to move
    reg.update_status(sid, ServiceStatus.RUNNING)
    after = reg.get_registration(sid)
    # The shared registry maps server times through this host's clock, each read with its own
    # latency: allow that jitter (well under the 0.3 s that passed).
    assert abs((after.registered_at - before.registered_at).total_seconds()) < 0.15
    assert (after.updated_at - before.updated_at).total_seconds() > 0.15


def test_update_status_with_expected_is_a_compare_and_set(reg):
    sid = reg.register(svc())
    assert reg.update_status(sid, ServiceStatus.RUNNING, expected=ServiceStatus.ERROR) is ServiceStatus.STARTING
    assert reg.get(sid).status is ServiceStatus.STARTING
    assert reg.update_status(sid, ServiceStatus.RUNNING, expected=ServiceStatus.STARTING) is ServiceStatus.STARTING
    assert reg.get(sid).status is ServiceStatus.RUNNING


def test_two_compare_and_sets_on_one_status_one_wins(reg):
    sid = reg.register(svc())
    for _ in range(20):
        reg.update_status(sid, ServiceStatus.RUNNING)
        barrier = threading.Barrier(2)
        results: dict[ServiceStatus, ServiceStatus] = {}

        def move(target: ServiceStatus, barrier: threading.Barrier, results: dict[ServiceStatus, ServiceStatus]
                 ) -> None:
            barrier.wait(5)
            results[target] = reg.update_status(sid, target, expected=ServiceStatus.RUNNING)

        threads = [threading.Thread(target=move, args=(t, barrier, results))
                   for t in (ServiceStatus.ERROR, ServiceStatus.STOPPING)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        winners = [t for t, found in results.items() if found is ServiceStatus.RUNNING]
        assert len(results) == 2 and len(winners) == 1
        assert reg.get(sid).status is winners[0]


# -- heartbeats and silence ------------------------------------------------------------------------


def test_silence_is_none_before_any_heartbeat_and_small_after_one(reg):
    sid = reg.register(svc())
    assert reg.silence(sid) == (ServiceStatus.STARTING, None)
    assert reg.heartbeat(sid) is ServiceStatus.STARTING
    status, silent = reg.silence(sid)
    assert status is ServiceStatus.STARTING and 0 <= silent < 1.0
    assert reg.get(sid).last_heartbeat is not None


def test_silence_grows_on_the_registry_clock_and_a_heartbeat_resets_it(reg):
    sid = running(reg)
    wait_silent(reg, sid, 0.3)
    assert reg.silence(sid)[1] >= 0.3
    assert reg.heartbeat(sid) is ServiceStatus.RUNNING
    assert reg.silence(sid)[1] < 0.3


def test_snapshot_last_heartbeat_is_on_this_process_monotonic_clock(reg):
    sid = running(reg)
    wait_silent(reg, sid, 0.1)
    last = reg.get(sid).last_heartbeat
    silent = time.monotonic() - last
    assert 0.1 <= silent < 2.0


@pytest.mark.parametrize("status", [ServiceStatus.STOPPING, ServiceStatus.STOPPED])
def test_heartbeat_is_refused_for_a_stopping_or_stopped_service(reg, status):
    sid = reg.register(svc())
    reg.update_status(sid, status)
    assert reg.heartbeat(sid) is status
    assert reg.silence(sid) == (status, None)  # the beat was not recorded
    assert reg.get(sid).status is status


@pytest.mark.parametrize("status", [ServiceStatus.RECONNECTING, ServiceStatus.ERROR])
def test_heartbeat_of_a_failed_service_revives_it_only_in_the_shared_registry(reg, status):
    sid = reg.register(svc())
    reg.update_status(sid, status)
    assert reg.heartbeat(sid) is status  # both answer the status the beat found
    now = reg.silence(sid)
    assert now[1] is not None and now[1] < 1.0
    if shared(reg):
        # By design: in fleet mode the revival is atomic with the beat, in one script.
        assert now[0] is ServiceStatus.RUNNING
    else:
        # The in-memory registry only records; the manager revives under its lock.
        assert now[0] is status


# -- expiry ------------------------------------------------------------------------------------------


def test_expire_times_out_a_silent_running_service(reg):
    sid = running(reg)
    wait_silent(reg, sid, SHORT)
    assert reg.expire(sid, SHORT, ServiceStatus.RECONNECTING) is ServiceStatus.RUNNING
    assert reg.get(sid).status is ServiceStatus.RECONNECTING
    assert reg.expire(sid, SHORT, ServiceStatus.RECONNECTING) is None  # once


def test_expire_leaves_a_service_that_beat_within_the_timeout(reg):
    sid = running(reg)
    assert reg.expire(sid, LONG, ServiceStatus.RECONNECTING) is None
    assert reg.get(sid).status is ServiceStatus.RUNNING


def test_expire_times_out_a_running_service_that_never_beat(reg):
    sid = reg.register(svc())
    reg.update_status(sid, ServiceStatus.RUNNING)
    assert reg.expire(sid, LONG, ServiceStatus.ERROR) is ServiceStatus.RUNNING
    assert reg.get(sid).status is ServiceStatus.ERROR


@pytest.mark.parametrize("status", [s for s in ServiceStatus if s is not ServiceStatus.RUNNING])
def test_expire_ignores_a_service_that_is_not_running(reg, status):
    sid = reg.register(svc())
    reg.update_status(sid, status)
    assert reg.expire(sid, 0.001, ServiceStatus.ERROR) is None
    assert reg.get(sid).status is status


def test_expire_of_an_unknown_id_is_none(reg):
    assert reg.expire("ghost", 0.001, ServiceStatus.ERROR) is None
    assert reg.count() == 0


def test_a_heartbeat_racing_expiry_is_never_lost(reg):
    """Beats and expiries from two threads: a service that keeps beating is never expired."""
    sid = running(reg)
    stop = threading.Event()
    expired: list[float] = []

    def beat() -> None:
        while not stop.is_set():
            reg.heartbeat(sid)

    beater = threading.Thread(target=beat)
    beater.start()
    try:
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            # A 2 s timeout: only a beating thread starved that long could legitimately lose.
            if reg.expire(sid, 2.0, ServiceStatus.RECONNECTING) is not None:
                expired.append(time.monotonic())
    finally:
        stop.set()
        beater.join(10)
    assert expired == [] and reg.get(sid).status is ServiceStatus.RUNNING


# -- listing, filtering, counting --------------------------------------------------------------------


@pytest.fixture
def populated(reg: Registry) -> Registry:
    reg.register(svc("a", capabilities=[Capability("search")], transport=TransportConfig(TransportType.TCP)))
    b = reg.register(svc("b", capabilities=[Capability("search"), Capability("index")]))
    reg.update_status(b, ServiceStatus.RUNNING)
    c = reg.register(svc("c", transport=TransportConfig(TransportType.UNIX)))
    reg.update_status(c, ServiceStatus.ERROR)
    return reg


def names(services: list[ExtensionService]) -> set[str]:
    return {s.name for s in services}


def test_list_all_and_list_return_every_service(populated):
    assert names(populated.list_all()) == {"a", "b", "c"} == names(populated.list())
    assert names(populated.list(ServiceFilter())) == {"a", "b", "c"}
    assert len(populated.list_all()) == 3


@pytest.mark.parametrize(("criteria", "expected"), [
    ({"status": ServiceStatus.RUNNING}, {"b"}),
    ({"status": ServiceStatus.ERROR}, {"c"}),
    ({"status": ServiceStatus.STOPPED}, set()),
    ({"capability": "search"}, {"a", "b"}),
    ({"capability": "index"}, {"b"}),
    ({"transport_type": TransportType.UNIX}, {"c"}),
    ({"capability": "search", "status": ServiceStatus.STARTING}, {"a"}),
    ({"capability": "search", "transport_type": TransportType.TCP}, {"a"}),
])
def test_list_with_a_filter_returns_what_matches_every_criterion(populated, criteria, expected):
    found = populated.list(ServiceFilter(**criteria))
    assert names(found) == expected
    assert all(ServiceFilter(**criteria).matches(s) for s in found)


def test_find_by_capability(populated):
    assert names(populated.find_by_capability("search")) == {"a", "b"}
    assert populated.find_by_capability("nothing") == []


def test_list_refuses_what_is_not_a_filter(populated):
    with pytest.raises(TypeError, match="ServiceFilter"):
        populated.list({"status": "running"})


def test_stats_count_each_status(reg):
    for status in ServiceStatus:
        for i in range(2 if status is ServiceStatus.RUNNING else 1):
            reg.update_status(reg.register(svc(f"{status.value}{i}")), status)
    assert reg.stats() == RegistryStats(total=7, starting=1, running=2, stopping=1, stopped=1, errors=1,
                                        reconnecting=1)


def test_count_len_and_contains_follow_registrations(reg):
    ids = [reg.register(svc(f"s{i}")) for i in range(3)]
    assert reg.count() == 3 == len(reg) and all(i in reg for i in ids)
    reg.unregister(ids[0])
    assert reg.count() == 2 == len(reg) and ids[0] not in reg
    assert 3 not in reg and None not in reg


def test_clear_forgets_every_service_and_frees_their_names(reg):
    for i in range(3):
        running(reg, f"s{i}")
    reg.clear()
    assert reg.count() == 0 and reg.list_all() == [] and reg.stats() == RegistryStats()
    reg.register(svc("s0"))
    assert reg.count() == 1


# -- the registry's own health check -----------------------------------------------------------------


def test_health_check_marks_silent_running_services_reconnecting_once(make_registry):
    timeout = 1.0  # long enough that "fresh" stays fresh on a loaded machine
    reg = make_registry(timeout)
    silent = running(reg, "silent")
    never = reg.register(svc("never"))
    reg.update_status(never, ServiceStatus.RUNNING)
    idle = reg.register(svc("idle"))
    reg.update_status(idle, ServiceStatus.ERROR)
    wait_silent(reg, silent, timeout)
    fresh = running(reg, "fresh")
    stale = reg.health_check()
    assert sorted(stale) == sorted([silent, never])
    assert {reg.get(i).status for i in stale} == {ServiceStatus.RECONNECTING}
    assert reg.get(fresh).status is ServiceStatus.RUNNING and reg.get(idle).status is ServiceStatus.ERROR
    assert not set(reg.health_check()) & {silent, never, idle}  # each stale service once
