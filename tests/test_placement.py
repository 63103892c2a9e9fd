"""Placement of process-bound services in a fleet: a member's host, a service pinned to a host, a copy per host.

The checks of host names and of the placement fields, then two members with different hosts on
one namespace (a `SharedMemoryRegistry`, then a real redis-server/valkey-server): a per-host
STDIO service runs one child per host, each owned on its host; a pinned service is never
spawned by a member of another host. The children are real processes, checked through /proc.
"""

from __future__ import annotations

import socket
import sys

import pytest
from test_transports_ownership import Fleet, memory_fleet, server_fleet  # noqa: F401  (fixtures)
from transport_support import WAIT, child_service, proc_state, wait_until

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, RegistryUnavailable, TransportConfig
from lifecycle.engine.placement import HOST_VARIABLE, elsewhere, member_host, place
from lifecycle.errors import FieldTypeError, FieldValueError
from lifecycle.model import check_host
from lifecycle.shared_memory import SharedMemoryRegistry

TTL = 1.0  # ownership and leader lease; a tick every 1/3 s
CONFIG = LifecycleConfig(heartbeat_interval_secs=0.2, heartbeat_timeout_secs=2.0, reconnect_delay_ms=50,
                         max_reconnect_delay_ms=100, max_reconnect_attempts=3, jitter=0.0)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks children through /proc")


# -- host names and the placement fields ------------------------------------------------------------


@pytest.mark.parametrize(("value", "error", "code"), [
    (5, FieldTypeError, "type"),
    (b"alpha", FieldTypeError, "type"),
    ("", FieldValueError, "blank"),
    ("two words", FieldValueError, "invalid"),
    ("a/b", FieldValueError, "invalid"),
    ("h" * 254, FieldValueError, "invalid"),
])
def test_check_host_refuses_what_is_no_host_name_naming_the_field(value, error, code):
    with pytest.raises(error) as caught:
        check_host(value, "some.field")
    assert (caught.value.field, caught.value.code) == ("some.field", code)


@pytest.mark.parametrize("value", ["alpha", "web-1.example.org", "node_7", "h" * 253])
def test_check_host_accepts_host_names(value):
    assert check_host(value, "host") == value


def test_transport_config_host_and_per_host_are_checked_by_name():
    with pytest.raises(FieldTypeError) as caught:
        TransportConfig(host=7)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.code) == ("TransportConfig.host", "type")
    with pytest.raises(FieldValueError) as caught:
        TransportConfig(host="")
    assert (caught.value.field, caught.value.code) == ("TransportConfig.host", "blank")
    with pytest.raises(FieldValueError) as caught:
        TransportConfig(host="no such host")
    assert (caught.value.field, caught.value.code) == ("TransportConfig.host", "invalid")
    with pytest.raises(FieldTypeError) as caught:
        TransportConfig(per_host="yes")  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.code) == ("TransportConfig.per_host", "type")


def test_a_copy_per_host_cannot_also_be_pinned_to_one_host():
    with pytest.raises(FieldValueError) as caught:
        TransportConfig(host="alpha", per_host=True)
    assert (caught.value.field, caught.value.code) == ("TransportConfig.per_host", "conflict")
    assert "TransportConfig.host" in str(caught.value)


def test_the_manager_refuses_a_bad_host_before_it_builds_anything():
    store = SharedMemoryRegistry(lease_ttl_secs=TTL)
    with pytest.raises(FieldValueError) as caught:
        LifecycleManager(store.handle(), CONFIG, host="bad host")
    assert (caught.value.field, caught.value.code) == ("host", "invalid")
    with pytest.raises(FieldTypeError) as caught:
        LifecycleManager(store.handle(), CONFIG, host=3)  # type: ignore[arg-type]
    assert (caught.value.field, caught.value.code) == ("host", "type")
    assert store.handle().leader() is None  # no member was built: no lease taken


def test_member_host_prefers_the_argument_then_the_variable_then_the_hostname(monkeypatch):
    monkeypatch.setenv(HOST_VARIABLE, "from-env")
    assert member_host("given") == "given"
    assert member_host(None) == "from-env"
    monkeypatch.setenv(HOST_VARIABLE, "")
    assert member_host(None) == socket.gethostname()  # an empty variable is no setting
    monkeypatch.delenv(HOST_VARIABLE)
    assert member_host(None) == socket.gethostname()


def test_a_bad_host_variable_is_refused_by_its_name_in_fleet_mode(monkeypatch):
    monkeypatch.setenv(HOST_VARIABLE, "bad host")
    with pytest.raises(FieldValueError) as caught:
        member_host(None)
    assert (caught.value.field, caught.value.code) == (HOST_VARIABLE, "invalid")
    store = SharedMemoryRegistry(lease_ttl_secs=TTL)
    with pytest.raises(FieldValueError) as caught:
        LifecycleManager(store.handle(), CONFIG)
    assert caught.value.field == HOST_VARIABLE
    assert store.handle().leader() is None  # nothing half-built


def test_place_gives_a_per_host_service_its_hosts_id_and_name_and_leaves_others_alone():
    shared = child_service("tool", "steady", per_host=True)
    shared.id = "tool-id"  # type: ignore[assignment]
    placed = place(shared, "alpha")
    assert (placed.id, placed.name) == ("tool-id@alpha", "tool@alpha")
    assert (placed.transport.host, placed.transport.per_host) == ("alpha", False)
    assert (shared.id, shared.name, shared.transport.host, shared.transport.per_host) == ("tool-id", "tool", None, True)
    assert place(placed, "alpha") is placed  # placing again changes nothing
    plain = child_service("plain", "steady")
    assert place(plain, "alpha") is plain
    pinned = child_service("pinned", "steady", host="beta")
    assert place(pinned, "alpha") is pinned
    assert elsewhere(pinned, "alpha") and not elsewhere(pinned, "beta")
    assert not elsewhere(plain, "alpha") and not elsewhere(placed, "alpha")


# -- two hosts on one namespace ----------------------------------------------------------------------


def _alive(pid: int | None) -> bool:
    return pid is not None and proc_state(pid) not in (None, "Z")


def _a_per_host_service_runs_one_child_per_host_each_owned_there(fleet: Fleet) -> None:
    alpha, beta = fleet.member("alpha"), fleet.member("beta")
    service = child_service("tool", "steady", "0.1", per_host=True)
    service.id = "tool"  # type: ignore[assignment]
    assert alpha.manager.start_service(service) == "tool@alpha"
    assert beta.manager.declare(service) == "tool@beta"
    assert alpha.manager.declare(service) == "tool@alpha"  # declared too: a candidate of its own copy only
    wait_until(lambda: _alive(beta.pid("tool@beta")), timeout=WAIT, what="beta's own child")
    assert _alive(alpha.pid("tool@alpha"))
    assert alpha.pid("tool@beta") is None and beta.pid("tool@alpha") is None
    assert fleet.owner_of("tool@alpha") == alpha.token and fleet.owner_of("tool@beta") == beta.token
    assert fleet.probe.get("tool") is None  # the unplaced service is nobody's
    names = {s.id: s.name for s in fleet.probe.list_all()}
    assert names == {"tool@alpha": "tool@alpha", "tool@beta": "tool@beta"}
    seen = beta.ticks()
    wait_until(lambda: beta.ticks() >= seen + 3, what="three more ticks of beta")
    assert [alpha.connector.channels(), beta.connector.channels()] == [1, 1]  # still one child per host


def _a_pinned_service_is_never_spawned_on_another_host(fleet: Fleet) -> None:
    alpha, beta = fleet.member("alpha"), fleet.member("beta")
    service = child_service("pinned", "steady", "0.1", host="alpha")
    service.id = "pinned"  # type: ignore[assignment]
    assert beta.manager.start_service(service) == "pinned"  # left to alpha's members: nothing registered
    assert beta.manager.declare(service) == "pinned"
    assert fleet.probe.get("pinned") is None and beta.connector.channels() == 0
    assert alpha.manager.declare(service) == "pinned"
    child = alpha.pid("pinned")
    assert _alive(child) and fleet.owner_of("pinned") == alpha.token
    seen = beta.ticks()
    wait_until(lambda: beta.ticks() >= seen + 3, what="three more ticks of beta")
    assert beta.connector.channels() == 0
    alpha.manager.shutdown()  # a graceful hand-over, but nobody else on alpha may take it
    assert not _alive(child)
    seen = beta.ticks()
    wait_until(lambda: beta.ticks() >= seen + int(3 * TTL / (TTL / 3)), what="beta to tick past the lease")
    assert beta.connector.channels() == 0 and fleet.owner_of("pinned") != beta.token


@linux_only
def test_a_per_host_service_runs_one_child_per_host_in_memory(memory_fleet: Fleet) -> None:  # noqa: F811
    _a_per_host_service_runs_one_child_per_host_each_owned_there(memory_fleet)


@linux_only
def test_a_per_host_service_runs_one_child_per_host_on_a_server(server_fleet: Fleet) -> None:  # noqa: F811
    _a_per_host_service_runs_one_child_per_host_each_owned_there(server_fleet)


@linux_only
def test_a_pinned_service_is_never_spawned_on_another_host_in_memory(memory_fleet: Fleet) -> None:  # noqa: F811
    _a_pinned_service_is_never_spawned_on_another_host(memory_fleet)


@linux_only
def test_a_pinned_service_is_never_spawned_on_another_host_on_a_server(server_fleet: Fleet) -> None:  # noqa: F811
    _a_pinned_service_is_never_spawned_on_another_host(server_fleet)


@linux_only
def test_a_member_of_another_host_does_not_register_a_pinned_service_again_after_a_data_loss(caplog) -> None:
    store = SharedMemoryRegistry(lease_ttl_secs=TTL)
    fleet = Fleet(store.handle)
    try:
        beta = fleet.member("beta")
        service = child_service("pinned", "steady", "0.1", host="alpha")
        service.id = "pinned"  # type: ignore[assignment]
        assert beta.manager.declare(service) == "pinned"
        caplog.set_level("WARNING", logger="lifecycle")
        fleet.probe.flush()  # type: ignore[attr-defined]
        wait_until(lambda: any("lost its data" in r.getMessage() for r in caplog.records), what="beta to see the loss")
        assert fleet.probe.get("pinned") is None and beta.connector.channels() == 0
    finally:
        for member in fleet.members:
            member.manager.shutdown()


# -- declaring a service pinned elsewhere: a loss is noticed, an outage never raises ---------------


def test_a_loss_before_the_first_tick_is_noticed_by_a_member_that_declared_only_a_service_pinned_elsewhere(
        frozen_lifecycle, make_lifecycle_manager, caplog) -> None:
    # Manual mode: nothing ticks until advance(), as a first tick late on a loaded host (CI saw it).
    store = SharedMemoryRegistry(lease_ttl_secs=TTL)
    beta = make_lifecycle_manager(CONFIG, registry=store.handle(), host="beta")
    service = ExtensionService("pinned", "1", id="pinned", transport=TransportConfig(host="alpha"))
    assert beta.declare(service) == "pinned"
    store.flush()
    with caplog.at_level("WARNING", logger="lifecycle"):
        frozen_lifecycle.advance(0.1, beta)
    assert [r.getMessage() for r in caplog.records if "lost its data" in r.getMessage()] == [
        "lifecycle: the registry lost its data; 0 service(s) of this process registered again"]
    assert store.get("pinned") is None


class _Down(SharedMemoryRegistry):
    """A handle on shared data whose every registry call fails, as during a Redis outage."""

    def _script(self, timeout=None):  # type: ignore[no-untyped-def]
        raise RegistryUnavailable("the registry at 127.0.0.1:6379 cannot be reached (ConnectionError)")


def test_declaring_a_service_pinned_elsewhere_with_the_registry_down_never_raises(
        frozen_lifecycle, make_lifecycle_manager, caplog) -> None:
    store = SharedMemoryRegistry(lease_ttl_secs=TTL)
    beta = make_lifecycle_manager(CONFIG, registry=_Down(store.data, lease_ttl_secs=TTL), host="beta")
    service = ExtensionService("pinned", "1", id="pinned", transport=TransportConfig(host="alpha"))
    with caplog.at_level("INFO", logger="lifecycle"):
        assert beta.declare(service) == "pinned"
    assert any("pinned to host alpha" in r.getMessage() for r in caplog.records)
    assert store.get("pinned") is None
