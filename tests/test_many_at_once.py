"""`restore_many` and `beat_many`: many services at once, on every shared store, one partition or several.

A process that held many services registers them again after a data loss with `restore_many`, and
a gateway registers and beats its services with them; on Redis a few thousand go in one round
trip (a script per `BATCH`, the batches of every partition in one pipeline).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis_server as servers

from lifecycle import ExtensionService, FieldTypeError, ServiceAlreadyExists, ServiceStatus, TransportConfig
from lifecycle._redis_client import BATCH
from lifecycle.fleet import SharedRegistry
from lifecycle.redis import RedisRegistry
from lifecycle.shared_memory import SharedMemoryRegistry

_KINDS = [*sorted(servers.binaries()), "shared_memory"]


@pytest.fixture(params=[(kind, p) for kind in _KINDS for p in (1, 3)], ids=lambda v: f"{v[0]}-p{v[1]}")
def reg(request: pytest.FixtureRequest, namespace: str) -> Iterator[SharedRegistry]:
    kind, partitions = request.param
    if kind == "shared_memory":
        yield SharedMemoryRegistry(partitions=partitions, lease_ttl_secs=30.0)
        return
    server = request.getfixturevalue("redis_servers")(kind)
    registry = RedisRegistry.from_url(server.url, namespace=namespace, partitions=partitions, lease_ttl_secs=30.0)
    yield registry
    registry.clear()
    registry.client.close()


def _services(n: int, prefix: str = "svc") -> list[ExtensionService]:
    return [ExtensionService(f"{prefix}-{i}", "1") for i in range(n)]


def test_each_missing_service_is_registered_running_and_answered_in_order(reg):
    taken = reg.register(ExtensionService("svc-1", "1"))  # another id holds one of the names
    services = _services(3)
    assert reg.restore_many(services, 30.0) == [True, False, True]
    for service in (services[0], services[2]):
        found = reg.get(service.id)
        assert found is not None and found.status is ServiceStatus.RUNNING and found.name == service.name
        assert reg.get_by_name(service.name).id == service.id
    assert reg.get(services[1].id) is None and reg.get_by_name("svc-1").id == taken
    assert reg.restore_many(services, 30.0) == [False, False, False]  # all there now: nothing changes
    assert len(reg) == 3


def test_restored_services_hold_their_names(reg):
    services = _services(5)
    assert all(reg.restore_many(services, 30.0))
    with pytest.raises(ServiceAlreadyExists):
        reg.register(ExtensionService("svc-4", "1"))
    assert reg.join(ExtensionService("svc-4", "1"))[0] == services[4].id


def test_a_restored_service_keeps_its_own_timing(reg):
    own = ExtensionService("own", "1", transport=TransportConfig(heartbeat_timeout_secs=7.0))
    assert reg.restore_many([own], 30.0) == [True]
    timing = reg.timing(own.id)
    assert timing is not None and timing.timeout == pytest.approx(7.0)


def test_more_services_than_one_batch_go_in_one_call(reg):
    services = _services(2 * BATCH + 7, "many")
    assert reg.restore_many(services, 30.0) == [True] * len(services)
    assert len(reg) == len(services)
    assert {s.id for s in reg.list_all()} == {s.id for s in services}


def test_a_service_that_is_not_one_is_named_and_nothing_is_registered(reg):
    with pytest.raises(FieldTypeError) as caught:
        reg.restore_many([ExtensionService("a", "1"), "b"], 30.0)  # type: ignore[list-item]
    assert caught.value.field == "services[1]"
    assert len(reg) == 0


def test_beat_many_answers_each_service_in_order_over_every_partition(reg):
    services = _services(BATCH + 40, "beat")
    assert all(reg.restore_many(services, 30.0))
    ids = [s.id for s in services]
    fallen = ids[::7]
    for sid in fallen:
        reg.update_status(sid, ServiceStatus.ERROR)
    asked = [*ids, "unknown"]
    answers = reg.beat_many(asked, 30.0)
    assert [prior for prior, _ in answers] == [
        ServiceStatus.ERROR if sid in fallen else ServiceStatus.RUNNING for sid in ids] + [None]
    for sid, (_, events) in zip(asked, answers, strict=True):
        assert [e.signal_name for e in events] == (["status_changed", "reconnected"] if sid in fallen else [])
    assert all(reg.get(sid).status is ServiceStatus.RUNNING for sid in fallen)
