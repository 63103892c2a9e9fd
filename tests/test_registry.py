"""Contract section 2: RegistryService, ServiceFilter, RegistryStats."""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from datetime import timedelta

import pytest

import lifecycle
from lifecycle import (
    Capability,
    ExtensionService,
    RegistrationInfo,
    RegistryService,
    RegistryStats,
    ServiceAlreadyExists,
    ServiceFilter,
    ServiceId,
    ServiceNotFound,
    ServiceStatus,
    TransportConfig,
    TransportType,
)

RUNNING = ServiceStatus.RUNNING
STARTING = ServiceStatus.STARTING
RECONNECTING = ServiceStatus.RECONNECTING


def svc(name: str = "svc", *caps: str, transport: TransportType = TransportType.STDIO, **kwargs) -> ExtensionService:
    return ExtensionService(
        name,
        "1.0",
        capabilities=[Capability(c) for c in caps],
        transport=TransportConfig(transport),
        **kwargs,
    )


@pytest.fixture
def reg() -> RegistryService:
    return RegistryService()


# -- construction ---------------------------------------------------------------------------


def test_registry_service_satisfies_registry_protocol():
    assert isinstance(RegistryService(), lifecycle.Registry)


def test_registry_default_heartbeat_timeout_is_60_seconds():
    assert RegistryService().heartbeat_timeout_secs == 60.0


def test_registry_heartbeat_timeout_is_keyword_only():
    with pytest.raises(TypeError):
        RegistryService(10.0)  # type: ignore[misc]
    assert RegistryService(heartbeat_timeout_secs=10).heartbeat_timeout_secs == 10


def test_new_registry_is_empty(reg):
    assert reg.count() == 0
    assert len(reg) == 0
    assert reg.list_all() == []
    assert reg.list() == []
    assert reg.stats() == RegistryStats(0, 0, 0, 0, 0, 0, 0)


# -- register -------------------------------------------------------------------------------


def test_register_returns_service_id_and_stores_service(reg):
    service = svc("a")
    sid = reg.register(service)
    assert sid == service.id
    assert isinstance(sid, ServiceId)
    assert sid in reg
    assert reg.count() == 1
    assert reg.get(sid) == service


def test_register_stores_a_deep_copy_so_later_mutation_of_original_is_invisible(reg):
    service = ExtensionService(
        "a",
        "1",
        capabilities=[Capability("search", "1", {"k": [1]})],
        transport=TransportConfig(args=["-x"], env={"E": "1"}),
        metadata={"tags": ["t"]},
    )
    sid = reg.register(service)
    service.set_status(ServiceStatus.ERROR)
    service.heartbeat()
    service.description = "changed"
    service.capabilities.append(Capability("extra"))
    service.capabilities[0].config["k"].append(2)
    service.transport.args.append("-y")
    service.transport.env["F"] = "2"
    service.metadata["tags"].append("u")
    stored = reg.get(sid)
    assert stored.status is STARTING
    assert stored.last_heartbeat is None
    assert stored.description == ""
    assert [c.name for c in stored.capabilities] == ["search"]
    assert stored.capabilities[0].config == {"k": [1]}
    assert stored.transport.args == ["-x"]
    assert stored.transport.env == {"E": "1"}
    assert stored.metadata == {"tags": ["t"]}


def test_register_duplicate_name_raises_service_already_exists_naming_it(reg):
    reg.register(svc("dup-name"))
    with pytest.raises(ServiceAlreadyExists, match="dup-name"):
        reg.register(svc("dup-name"))
    assert reg.count() == 1


def test_register_same_name_allowed_again_after_unregister(reg):
    first = reg.register(svc("a"))
    reg.unregister(first)
    second = reg.register(svc("a"))
    assert second != first
    assert reg.get_by_name("a").id == second


def test_register_rejects_non_service_with_type_error(reg):
    with pytest.raises(TypeError):
        reg.register("not a service")  # type: ignore[arg-type]
    assert reg.count() == 0


# -- unregister -----------------------------------------------------------------------------


def test_unregister_removes_and_returns_registration_info(reg):
    service = svc("a")
    sid = reg.register(service)
    info = reg.unregister(sid)
    assert isinstance(info, RegistrationInfo)
    assert info.service == service
    assert sid not in reg
    assert reg.get(sid) is None
    assert reg.get_by_name("a") is None
    assert reg.count() == 0


def test_unregister_unknown_id_raises_service_not_found_naming_id(reg):
    with pytest.raises(ServiceNotFound, match="no-such-id"):
        reg.unregister("no-such-id")


def test_unregister_twice_raises_service_not_found(reg):
    sid = reg.register(svc("a"))
    reg.unregister(sid)
    with pytest.raises(ServiceNotFound, match=sid):
        reg.unregister(sid)


def test_service_not_found_from_registry_is_a_lookup_error(reg):
    with pytest.raises(LookupError):
        reg.unregister("nope")


# -- get / get_by_name / get_registration ---------------------------------------------------


def test_get_unknown_id_returns_none(reg):
    assert reg.get("nope") is None


def test_get_accepts_plain_str_id(reg):
    sid = reg.register(svc("a"))
    assert reg.get(str(sid)).name == "a"


def test_get_by_name_finds_service_and_returns_none_for_unknown(reg):
    sid_a = reg.register(svc("a"))
    sid_b = reg.register(svc("b"))
    assert reg.get_by_name("a").id == sid_a
    assert reg.get_by_name("b").id == sid_b
    assert reg.get_by_name("c") is None


def test_get_registration_returns_info_with_utc_times(frozen_lifecycle, reg):
    sid = reg.register(svc("a"))
    info = reg.get_registration(sid)
    assert isinstance(info, RegistrationInfo)
    assert info.service.id == sid
    for moment in (info.registered_at, info.updated_at):
        assert moment.tzinfo is not None
        assert moment.utcoffset() == timedelta(0)
    assert info.registered_at == info.updated_at


def test_get_registration_unknown_id_returns_none(reg):
    assert reg.get_registration("nope") is None


# -- snapshots ------------------------------------------------------------------------------


def test_mutating_service_from_get_does_not_change_registry(reg):
    sid = reg.register(svc("a", "search", metadata={"m": [1]}))
    snap = reg.get(sid)
    snap.set_status(ServiceStatus.ERROR)
    snap.last_heartbeat = 123.0
    snap.retry_count = 9
    snap.capabilities.append(Capability("extra"))
    snap.capabilities[0].config["x"] = 1
    snap.transport.args.append("-z")
    snap.metadata["m"].append(2)
    fresh = reg.get(sid)
    assert fresh.status is STARTING
    assert fresh.last_heartbeat is None
    assert fresh.retry_count == 0
    assert [c.name for c in fresh.capabilities] == ["search"]
    assert fresh.capabilities[0].config == {}
    assert fresh.transport.args == []
    assert fresh.metadata == {"m": [1]}


def test_get_returns_a_new_object_each_time(reg):
    sid = reg.register(svc("a"))
    assert reg.get(sid) is not reg.get(sid)


def test_mutating_service_from_get_by_name_does_not_change_registry(reg):
    reg.register(svc("a"))
    reg.get_by_name("a").set_status(RUNNING)
    assert reg.get_by_name("a").status is STARTING


def test_mutating_registration_snapshot_does_not_change_registry(reg):
    sid = reg.register(svc("a"))
    info = reg.get_registration(sid)
    info.service.set_status(RUNNING)
    info.service.metadata["k"] = "v"
    info.touch()
    assert reg.get(sid).status is STARTING
    assert reg.get(sid).metadata == {}


def test_mutating_services_from_lists_does_not_change_registry(reg):
    reg.register(svc("a", "search"))
    for snapshot in (*reg.list_all(), *reg.list(), *reg.find_by_capability("search")):
        snapshot.set_status(ServiceStatus.ERROR)
        snapshot.capabilities.clear()
    assert reg.list_all()[0].status is STARTING
    assert reg.get_by_name("a").has_capability("search")
    reg.list_all().clear()
    assert reg.count() == 1


# -- update_status --------------------------------------------------------------------------


def test_update_status_sets_status(reg):
    sid = reg.register(svc("a"))
    reg.update_status(sid, RUNNING)
    assert reg.get(sid).status is RUNNING


def test_update_status_does_not_validate_transitions(reg):
    sid = reg.register(svc("a"))
    for status in (ServiceStatus.STOPPED, STARTING, ServiceStatus.ERROR, RUNNING, ServiceStatus.STOPPING):
        reg.update_status(sid, status)
        assert reg.get(sid).status is status


def test_update_status_touches_updated_at_only(frozen_lifecycle, reg):
    sid = reg.register(svc("a"))
    before = reg.get_registration(sid)
    frozen_lifecycle.freezer.tick(5)
    reg.update_status(sid, RUNNING)
    after = reg.get_registration(sid)
    assert after.registered_at == before.registered_at
    assert after.updated_at == before.updated_at + timedelta(seconds=5)


def test_update_status_with_expected_is_a_compare_and_set(reg):
    sid = reg.register(svc("a"))
    assert reg.update_status(sid, RUNNING, expected=RECONNECTING) is STARTING
    assert reg.get(sid).status is STARTING
    assert reg.update_status(sid, RUNNING, expected=STARTING) is STARTING
    assert reg.get(sid).status is RUNNING


def test_silence_is_measured_in_seconds_on_the_registry_clock(frozen_lifecycle, reg):
    sid = reg.register(svc("a"))
    assert reg.silence(sid) == (STARTING, None)
    reg.heartbeat(sid)
    frozen_lifecycle.freezer.tick(2.5)
    assert reg.silence(sid) == (STARTING, 2.5)
    assert reg.silence("ghost") is None


def test_update_status_unknown_id_raises_service_not_found_naming_id(reg):
    with pytest.raises(ServiceNotFound, match="ghost-id"):
        reg.update_status("ghost-id", RUNNING)


# -- heartbeat ------------------------------------------------------------------------------


def test_heartbeat_records_monotonic_now(frozen_lifecycle, reg):
    sid = reg.register(svc("a"))
    frozen_lifecycle.freezer.tick(3)
    reg.heartbeat(sid)
    assert reg.get(sid).last_heartbeat == time.monotonic()


def test_heartbeat_does_not_change_status(frozen_lifecycle, reg):
    sid = reg.register(svc("a"))
    reg.update_status(sid, RECONNECTING)
    reg.heartbeat(sid)
    assert reg.get(sid).status is RECONNECTING


def test_heartbeat_unknown_id_raises_service_not_found_naming_id(reg):
    with pytest.raises(ServiceNotFound, match="ghost-id"):
        reg.heartbeat("ghost-id")


# -- list_all / list / ServiceFilter / find_by_capability -----------------------------------


@pytest.fixture
def populated(reg):
    """a: RUNNING tcp {search}; b: RUNNING stdio {search, index}; c: ERROR tcp {index}; d: STARTING unix {}."""
    ids = {
        "a": reg.register(svc("a", "search", transport=TransportType.TCP)),
        "b": reg.register(svc("b", "search", "index")),
        "c": reg.register(svc("c", "index", transport=TransportType.TCP)),
        "d": reg.register(svc("d", transport=TransportType.UNIX)),
    }
    reg.update_status(ids["a"], RUNNING)
    reg.update_status(ids["b"], RUNNING)
    reg.update_status(ids["c"], ServiceStatus.ERROR)
    return reg


def names(services) -> set[str]:
    return {s.name for s in services}


def test_list_all_returns_every_service(populated):
    assert names(populated.list_all()) == {"a", "b", "c", "d"}
    assert len(populated.list_all()) == 4


def test_list_without_filter_equals_list_all(populated):
    assert populated.list() == populated.list_all()
    assert populated.list(None) == populated.list_all()


def test_list_with_empty_filter_returns_everything(populated):
    assert names(populated.list(ServiceFilter())) == {"a", "b", "c", "d"}


def test_service_filter_defaults_are_none():
    f = ServiceFilter()
    assert (f.status, f.capability, f.transport_type) == (None, None, None)


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"status": RUNNING}, {"a", "b"}),
        ({"status": ServiceStatus.ERROR}, {"c"}),
        ({"status": STARTING}, {"d"}),
        ({"status": ServiceStatus.STOPPED}, set()),
        ({"capability": "search"}, {"a", "b"}),
        ({"capability": "index"}, {"b", "c"}),
        ({"capability": "missing"}, set()),
        ({"transport_type": TransportType.TCP}, {"a", "c"}),
        ({"transport_type": TransportType.STDIO}, {"b"}),
        ({"transport_type": TransportType.UNIX}, {"d"}),
        ({"transport_type": TransportType.WEBSOCKET}, set()),
        ({"status": RUNNING, "capability": "index"}, {"b"}),
        ({"status": RUNNING, "transport_type": TransportType.TCP}, {"a"}),
        ({"capability": "index", "transport_type": TransportType.TCP}, {"c"}),
        ({"status": RUNNING, "capability": "search", "transport_type": TransportType.STDIO}, {"b"}),
        ({"status": ServiceStatus.ERROR, "capability": "search"}, set()),
        ({"status": RUNNING, "capability": "search", "transport_type": TransportType.UNIX}, set()),
    ],
)
def test_list_with_filter_returns_services_matching_all_given_criteria(populated, criteria, expected):
    assert names(populated.list(ServiceFilter(**criteria))) == expected


def test_find_by_capability_returns_services_offering_it(populated):
    assert names(populated.find_by_capability("search")) == {"a", "b"}
    assert names(populated.find_by_capability("index")) == {"b", "c"}
    assert populated.find_by_capability("missing") == []


def test_list_rejects_non_filter_with_type_error(populated):
    with pytest.raises(TypeError):
        populated.list({"status": RUNNING})  # type: ignore[arg-type]


# -- stats ----------------------------------------------------------------------------------


def test_registry_stats_is_dataclass_with_contract_fields():
    assert [f.name for f in dataclasses.fields(RegistryStats)] == [
        "total",
        "starting",
        "running",
        "stopping",
        "stopped",
        "errors",
        "reconnecting",
    ]


def test_stats_counts_each_status(reg):
    plan = {
        STARTING: 1,
        RUNNING: 3,
        ServiceStatus.STOPPING: 2,
        ServiceStatus.STOPPED: 1,
        ServiceStatus.ERROR: 4,
        RECONNECTING: 5,
    }
    n = 0
    for status, how_many in plan.items():
        for _ in range(how_many):
            sid = reg.register(svc(f"s{n}"))
            reg.update_status(sid, status)
            n += 1
    stats = reg.stats()
    assert stats == RegistryStats(total=16, starting=1, running=3, stopping=2, stopped=1, errors=4, reconnecting=5)


def test_stats_reflect_status_updates(reg):
    sid = reg.register(svc("a"))
    assert (reg.stats().total, reg.stats().starting, reg.stats().running) == (1, 1, 0)
    reg.update_status(sid, RUNNING)
    assert (reg.stats().total, reg.stats().starting, reg.stats().running) == (1, 0, 1)
    reg.unregister(sid)
    assert reg.stats() == RegistryStats(0, 0, 0, 0, 0, 0, 0)


# -- health_check ---------------------------------------------------------------------------


def test_health_check_marks_stale_running_services_reconnecting_and_returns_their_ids(frozen_lifecycle):
    reg = RegistryService(heartbeat_timeout_secs=60)
    stale = reg.register(svc("stale"))
    fresh = reg.register(svc("fresh"))
    for sid in (stale, fresh):
        reg.update_status(sid, RUNNING)
    reg.heartbeat(stale)
    frozen_lifecycle.freezer.tick(30)
    reg.heartbeat(fresh)
    frozen_lifecycle.freezer.tick(30)  # stale: 60 s silent (exactly the timeout); fresh: 30 s
    assert reg.health_check() == [stale]
    assert reg.get(stale).status is RECONNECTING
    assert reg.get(fresh).status is RUNNING


def test_health_check_leaves_service_just_inside_timeout_running(frozen_lifecycle):
    reg = RegistryService(heartbeat_timeout_secs=60)
    sid = reg.register(svc("a"))
    reg.update_status(sid, RUNNING)
    reg.heartbeat(sid)
    frozen_lifecycle.freezer.tick(59.999)
    assert reg.health_check() == []
    assert reg.get(sid).status is RUNNING


def test_health_check_treats_running_service_without_any_heartbeat_as_stale(frozen_lifecycle):
    reg = RegistryService(heartbeat_timeout_secs=60)
    sid = reg.register(svc("a"))
    reg.update_status(sid, RUNNING)
    assert reg.health_check() == [sid]
    assert reg.get(sid).status is RECONNECTING


@pytest.mark.parametrize("status", [s for s in ServiceStatus if s is not RUNNING])
def test_health_check_ignores_non_running_services_even_when_silent(frozen_lifecycle, status):
    reg = RegistryService(heartbeat_timeout_secs=60)
    sid = reg.register(svc("a"))
    reg.heartbeat(sid)
    reg.update_status(sid, status)
    frozen_lifecycle.freezer.tick(3600)
    assert reg.health_check() == []
    assert reg.get(sid).status is status


def test_health_check_returns_each_stale_id_once_and_second_run_finds_none(frozen_lifecycle):
    reg = RegistryService(heartbeat_timeout_secs=10)
    ids = [reg.register(svc(f"s{i}")) for i in range(3)]
    for sid in ids:
        reg.update_status(sid, RUNNING)
        reg.heartbeat(sid)
    frozen_lifecycle.freezer.tick(11)
    assert sorted(reg.health_check()) == sorted(ids)
    assert reg.health_check() == []
    assert reg.stats().reconnecting == 3


def test_health_check_on_empty_registry_returns_empty_list(reg):
    assert reg.health_check() == []


# -- clear / count / len / in ---------------------------------------------------------------


def test_count_len_and_contains_track_registrations(reg):
    a = reg.register(svc("a"))
    b = reg.register(svc("b"))
    assert reg.count() == 2
    assert len(reg) == 2
    assert a in reg
    assert str(b) in reg
    assert "other" not in reg
    reg.unregister(a)
    assert reg.count() == 1
    assert len(reg) == 1
    assert a not in reg


def test_clear_forgets_every_service_and_frees_names(reg):
    a = reg.register(svc("a"))
    reg.register(svc("b"))
    reg.clear()
    assert reg.count() == 0
    assert len(reg) == 0
    assert a not in reg
    assert reg.list_all() == []
    assert reg.get_by_name("a") is None
    reg.register(svc("a"))
    assert reg.count() == 1


# -- thread safety --------------------------------------------------------------------------


def test_concurrent_register_heartbeat_and_status_updates_from_many_threads():
    reg = RegistryService()
    threads_n, per_thread = 8, 50
    barrier = threading.Barrier(threads_n)
    results: dict[int, list[ServiceId]] = {}
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait(timeout=10)
            mine = []
            for i in range(per_thread):
                sid = reg.register(svc(f"t{t}-s{i}"))
                reg.heartbeat(sid)
                reg.update_status(sid, RUNNING)
                reg.heartbeat(sid)
                reg.list_all()
                reg.stats()
                mine.append(sid)
            for sid in mine[: per_thread // 2]:
                reg.unregister(sid)
            results[t] = mine[per_thread // 2 :]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    kept = [sid for ids in results.values() for sid in ids]
    assert len(kept) == threads_n * per_thread // 2
    assert reg.count() == len(kept)
    assert len(reg.list_all()) == len(kept)
    assert reg.stats().running == len(kept)
    assert all(sid in reg for sid in kept)
    assert all(reg.get(sid).last_heartbeat is not None for sid in kept)


def test_concurrent_duplicate_registration_admits_exactly_one():
    reg = RegistryService()
    threads_n = 8
    barrier = threading.Barrier(threads_n)
    outcomes: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        barrier.wait(timeout=10)
        try:
            reg.register(svc("contested"))
            result = "ok"
        except ServiceAlreadyExists:
            result = "dup"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=work) for _ in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert sorted(outcomes) == ["dup"] * (threads_n - 1) + ["ok"]
    assert reg.count() == 1


def test_snapshot_is_a_faithful_deep_copy_of_empty_defaultdict_metadata(reg):
    sid = reg.register(svc("a", metadata=collections.defaultdict(list)))
    assert reg.get(sid).metadata.default_factory is list


def test_update_status_rejects_unknown_status_text_and_non_status(reg):
    sid = reg.register(svc("a"))
    with pytest.raises(ValueError):
        reg.update_status(sid, "sleeping")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        reg.update_status(sid, 1)  # type: ignore[arg-type]
    assert reg.get(sid).status is STARTING


def test_health_check_returns_service_ids(frozen_lifecycle):
    reg = RegistryService(heartbeat_timeout_secs=1)
    sid = reg.register(svc("a"))
    reg.update_status(sid, RUNNING)
    (stale,) = reg.health_check()
    assert stale == sid
    assert isinstance(stale, ServiceId)



# -- expire_many: the engine's batched deadlines ----------------------------------------------------


def _status_of(reg: RegistryService, sid: str) -> ServiceStatus:
    return reg.get(sid).status


def test_expire_many_times_out_only_the_running_and_silent_under_one_updated_at(reg):
    import freezegun

    with freezegun.freeze_time("2026-01-01 00:00:00") as frozen:
        silent = reg.register(svc("silent"))
        fresh = reg.register(svc("fresh"))
        stopped = reg.register(svc("stopped"))
        for sid in (silent, fresh, stopped):
            reg.update_status(sid, ServiceStatus.RUNNING)
            reg.heartbeat(sid)
        reg.update_status(stopped, ServiceStatus.STOPPED)
        frozen.tick(timedelta(seconds=3))
        reg.heartbeat(fresh)
        before = {sid: reg.get_registration(sid).updated_at for sid in (fresh, stopped)}
        frozen.tick(timedelta(seconds=0.5))
        won = reg.expire_many([(silent, 2.0, ServiceStatus.RECONNECTING), (fresh, 2.0, ServiceStatus.ERROR),
                               (stopped, 2.0, ServiceStatus.RECONNECTING)])
        assert won == [True, False, False]
        assert [_status_of(reg, sid) for sid in (silent, fresh, stopped)] == [
            ServiceStatus.RECONNECTING, ServiceStatus.RUNNING, ServiceStatus.STOPPED]
        info = reg.get_registration(silent)
        assert info.updated_at == info.registered_at + timedelta(seconds=3.5)
        assert {sid: reg.get_registration(sid).updated_at for sid in (fresh, stopped)} == before


def test_expire_many_agrees_with_expire_one_by_one():
    import freezegun

    def build(frozen) -> tuple[RegistryService, list[str]]:
        reg = RegistryService()
        ids = [reg.register(svc(f"s{i}")) for i in range(6)]
        for i, sid in enumerate(ids):
            reg.update_status(sid, ServiceStatus.ERROR if i == 5 else ServiceStatus.RUNNING)
            if i % 3:
                reg.heartbeat(sid)  # services 0 and 3 never beat
        return reg, ids

    with freezegun.freeze_time("2026-01-01 00:00:00") as frozen:
        batched, ids = build(frozen)
        single, single_ids = build(frozen)
        frozen.tick(timedelta(seconds=1))
        for reg, its in ((batched, ids), (single, single_ids)):
            for sid in its[::2]:
                reg.heartbeat(sid)  # 0, 2 and 4 beat again
        frozen.tick(timedelta(seconds=1))
        won = batched.expire_many([(sid, 1.5, ServiceStatus.RECONNECTING) for sid in ids])
        one_by_one = [single.expire(sid, 1.5, ServiceStatus.RECONNECTING) is not None for sid in single_ids]
        assert won == one_by_one == [False, True, False, True, False, False]  # 3 never beat; 5 is in ERROR
        assert [_status_of(batched, sid) for sid in ids] == [_status_of(single, sid) for sid in single_ids]
        assert batched.expire_many([]) == []
