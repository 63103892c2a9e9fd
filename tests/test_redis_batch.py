"""`RedisRegistry.beat_many`: many heartbeats in one round trip, each answered as `beat` answers.

One BEAT_MANY script beats up to `BATCH` services; the batches of a larger call go in one pipeline.
"""

from __future__ import annotations

import pytest

from lifecycle import ExtensionService, ServiceStatus

redis_module = pytest.importorskip("redis")

from lifecycle._redis_client import BATCH  # noqa: E402
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


def _evalsha_calls(client) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_a_call_larger_than_a_batch_sends_one_script_per_batch_and_answers_in_order(fresh_redis_server, namespace):
    """On a server of the test's own, so that its command counts are this test's alone."""
    registry = RedisRegistry.from_url(fresh_redis_server.url, namespace=namespace)
    try:
        ids = [registry.register(ExtensionService(f"s{i}", "1")) for i in range(BATCH + 7)]
        for sid in ids[:-1]:
            registry.activate(sid, 60.0)  # the last stays STARTING
        registry.update_status(ids[BATCH], ServiceStatus.ERROR)  # in the second batch: revived
        warm = _running(registry, "warm")
        registry.update_status(warm, ServiceStatus.ERROR)
        registry.beat_many([ids[0], warm])  # both scripts loaded: the count below is the batches alone
        registry.client.config_resetstat()
        answers = registry.beat_many([*ids, "missing"])
        stats = registry.client.info("commandstats")
        assert _evalsha_calls(registry.client) == 2 + 1  # two batches, then the one revival (REVIVE)
        assert "cmdstat_script|exists" not in stats and "cmdstat_script" not in stats  # no second round trip
        expected = [ServiceStatus.RUNNING] * (BATCH + 6) + [ServiceStatus.STARTING, None]
        expected[BATCH] = ServiceStatus.ERROR
        assert [prior for prior, _ in answers] == expected
        assert [e.signal_name for e in answers[BATCH][1]] == ["status_changed", "reconnected"]
        assert all(events == [] for i, (_, events) in enumerate(answers) if i != BATCH)
        assert registry.silence(ids[BATCH])[0] is ServiceStatus.RUNNING
    finally:
        registry.clear()
        registry.client.close()


@pytest.mark.parametrize("size", [3, BATCH + 1], ids=["one batch", "two batches"])
def test_a_server_that_lost_its_scripts_gets_them_loaded_and_every_beat_once(registry, size):
    ids = [_running(registry, f"s{i}") for i in range(size)]
    registry.beat_many(ids)
    registry.client.script_flush()
    before = {sid: registry.silence(sid)[1] for sid in ids[:1]}
    answers = registry.beat_many(ids)
    assert [prior for prior, _ in answers] == [ServiceStatus.RUNNING] * size
    assert registry.silence(ids[0])[1] <= before[ids[0]] + 1.0
