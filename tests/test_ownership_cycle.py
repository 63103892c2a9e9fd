"""A reconnect cycle and restart intensity go on across a hand-over of a STDIO service's ownership.

Two managers with a connector each on one `SharedMemoryRegistry` stand for two processes; the
owner shuts down in the middle (a graceful hand-over) and the other member carries on from the
store: attempts 1..n each once and none run twice, restarts counted across both, each event
emitted once in the fleet. The children are real processes (tests/extensions/child.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from transport_support import WAIT, child_service

from lifecycle import LifecycleConfig, LifecycleManager, ServiceStatus
from lifecycle.connectors import SubprocessConnector
from lifecycle.events import Reconnected, ReconnectFailed, Reconnecting, ServiceFlapping
from lifecycle.shared_memory import SharedMemoryRegistry
from lifecycle.testing import EventRecorder

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="STDIO children with PR_SET_PDEATHSIG")

TTL = 1.0


class Pair:
    """Two members on one store, each with its own connector, and one recorder of both."""

    def __init__(self, config: LifecycleConfig) -> None:
        self.store = SharedMemoryRegistry(lease_ttl_secs=TTL)
        self.a = LifecycleManager(self.store.handle(), config, connector=SubprocessConnector())
        self.b = LifecycleManager(self.store.handle(), config, connector=SubprocessConnector())
        self.events = EventRecorder().record(self.a).record(self.b)

    def close(self) -> None:
        self.events.close()
        self.a.shutdown()
        self.b.shutdown()


@pytest.fixture
def pair() -> Iterator[type[Pair]]:
    made: list[Pair] = []

    def make(config: LifecycleConfig) -> Pair:
        made.append(Pair(config))
        return made[-1]

    yield make  # type: ignore[misc]
    for each in made:
        each.close()


def test_the_attempts_go_on_from_the_next_owner_each_once(pair, tmp_path):
    """Every respawn fails; the owner leaves after attempt 1: the other member runs 2..4, none twice."""
    config = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=2.0, reconnect_delay_ms=700,
                             max_reconnect_delay_ms=700, reconnect_backoff_multiplier=1.0,
                             max_reconnect_attempts=4, jitter=0.0)
    fleet = pair(config)
    runs = tmp_path / "runs"
    service = child_service("relapsing", "relapse", str(runs))
    sid = fleet.a.start_service(service)  # the first run beats for 0.3 s, then exits; every later run fails
    assert fleet.b.start_service(service) == sid  # joined: a candidate
    assert fleet.events.wait_for(lambda es: any(isinstance(e, Reconnecting) and e.attempt == 2 for e in es),
                                 timeout=WAIT)
    fleet.a.shutdown()  # within attempt 2's delay: the cycle is handed over with the ownership
    assert fleet.events.wait_for(lambda es: any(isinstance(e, ReconnectFailed) for e in es), timeout=WAIT * 2)
    assert [e.attempt for e in fleet.events.of(Reconnecting)] == [1, 2, 3, 4]
    assert [e.attempts for e in fleet.events.of(ReconnectFailed)] == [4]
    assert int(runs.read_text()) == 1 + 4  # the first run, then each attempt once
    assert fleet.b.get_status(sid) is ServiceStatus.ERROR
    assert fleet.store.handle().owner_of(sid) == fleet.b._engine.ticker.owner  # type: ignore[attr-defined]


def test_restarts_are_counted_across_a_hand_over(pair):
    """max_restarts=2: one restart under the first owner, then a hand-over; the third restart is refused."""
    config = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=2.0, reconnect_delay_ms=100,
                             max_reconnect_delay_ms=100, max_reconnect_attempts=3, jitter=0.0, max_restarts=2,
                             restart_window_secs=60.0)
    fleet = pair(config)
    service = child_service("crashy", "crash", "0.4")  # each run beats for 0.4 s, then exits with code 3
    sid = fleet.a.start_service(service)
    assert fleet.b.start_service(service) == sid
    assert fleet.events.wait_for(lambda es: any(isinstance(e, Reconnected) for e in es), timeout=WAIT)
    fleet.a.shutdown()  # restart 1 done: the next owner spawns a fresh child (no restart), which crashes
    assert fleet.events.wait_for(lambda es: any(isinstance(e, ServiceFlapping) for e in es), timeout=WAIT * 2)
    assert len(fleet.events.of(Reconnected)) == 2  # restarts 1 and 2, one under each owner
    assert [e.restarts for e in fleet.events.of(ServiceFlapping)] == [3]
    assert fleet.b.get_status(sid) is ServiceStatus.ERROR
