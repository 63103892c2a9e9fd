"""`RedisRegistry.beat_many`: many heartbeats in one pipelined round trip, each answered as `beat` answers."""

from __future__ import annotations

import pytest

from lifecycle import ExtensionService, ServiceStatus

redis_module = pytest.importorskip("redis")

from lifecycle.redis import RedisRegistry  # noqa: E402


@pytest.fixture
def registry(redis_server, namespace):
    registry = RedisRegistry.from_url(redis_server.url, namespace=namespace)
    yield registry
    registry.clear()
    registry.client.close()


def _running(registry: RedisRegistry, name: str) -> str:
    sid = registry.register(ExtensionService(name, "1", id=name))
    registry.activate(sid, 60.0)
    return sid


def test_each_beat_answers_its_prior_status_and_a_revival_its_events(registry):
    a, b = _running(registry, "a"), _running(registry, "b")
    registry.update_status(b, ServiceStatus.ERROR)
    answers = registry.beat_many([a, "missing", b])
    assert [prior for prior, _ in answers] == [ServiceStatus.RUNNING, None, ServiceStatus.ERROR]
    assert answers[0][1] == [] and answers[1][1] == []
    assert [e.signal_name for e in answers[2][1]] == ["status_changed", "reconnected"]
    assert registry.silence(b)[0] is ServiceStatus.RUNNING
    assert registry.silence(a)[1] is not None and registry.silence(a)[1] < 1.0


def test_a_bad_id_is_refused_before_anything_is_sent(registry):
    a = _running(registry, "a")
    registry.update_status(a, ServiceStatus.ERROR)
    with pytest.raises(TypeError, match="id must be a str"):
        registry.beat_many([a, 42])  # type: ignore[list-item]
    assert registry.silence(a)[0] is ServiceStatus.ERROR  # the good id in the batch was not beaten either


def test_an_unreachable_server_is_a_typed_error(redis_server, namespace):
    from redis_server import free_port

    from lifecycle import RegistryUnavailable

    registry = RedisRegistry.from_url(f"redis://127.0.0.1:{free_port()}/0", namespace=namespace,
                                      socket_connect_timeout=0.5)
    with pytest.raises(RegistryUnavailable):
        registry.beat_many(["a"])
