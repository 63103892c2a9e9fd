"""The Redis store holds what the in-memory supervisor holds, in the same atomic scripts.

Registry-level tests on a real server (each binary found), and on `SharedMemoryRegistry` (the same
steps in Python; `_Peek` answers the tests' looks into keys from its data), driving the scripts through the
`RedisRegistry` API: bounded attempt claims, settings given once, per-service timing, restart
intensity and the phi detector. The server's clock cannot be frozen: durations are sub-second,
waits poll with a deadline, and bounds are generous.
"""

from __future__ import annotations

import math
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis_server as servers

from lifecycle import ExtensionService, LifecycleConfig, ServiceStatus, TransportConfig
from lifecycle._memory_scripts import Data
from lifecycle.events import LifecycleEvent, Reconnected, Reconnecting, ServiceFlapping
from lifecycle.fleet import Detail, Onset, Plan, StoreSettings, Timing
from lifecycle.phi import History, PhiSettings
from lifecycle.redis import RedisRegistry
from lifecycle.shared_memory import SharedMemoryRegistry

pytestmark = pytest.mark.threaded

S = ServiceStatus
LONG = 30.0  # a timeout no test waits out
WAIT = 10.0  # a generous bound for what takes well under a second
OWNER = "leader-1"
ONSET = Onset(True, 3, 1.0, 2.0, seed=11)  # a timeout's attempt 1 between 1 and 2 s: no test waits for it
STAY = Onset(False, 3, 1.0, 2.0)  # auto_reconnect off: a timeout stays in ERROR


_KINDS = [*sorted(servers.binaries()), "shared_memory"]


class _Peek:
    """Read-only answers, as the Redis commands these tests use would give them, from a `SharedMemoryRegistry`.

    So the tests that look into the store's keys run unchanged on the in-process store too.
    """

    def __init__(self, data: Data) -> None:
        self.data = data

    def _column(self, key: str) -> Any:
        return self.data.flap if key == "flap" else getattr(self.data, key)

    def hget(self, key: str, field: str) -> object:
        value = self._column(key).get(field)
        return value if value is None or key == "phi" else str(value)

    def hexists(self, key: str, field: str) -> bool:
        return field in self._column(key)

    def zscore(self, key: str, member: str) -> float | None:
        value = self._column(key).get(member)
        return None if value is None else float(value)

    def hlen(self, key: str) -> int:
        if key == "phiv":  # the ring's blocks of 32 intervals
            return sum(-(-history.size // 32) for history in self.data.phi.values())
        return len(self._column(key))

    def exists(self, key: str) -> int:
        return int(self.hlen(key) > 0)


class _Inspectable(SharedMemoryRegistry):
    """The in-process store, with a `client` and `keys` that answer these tests' looks into the store."""

    keys = {name: name for name in ("tmo", "todo", "rst", "flap", "dl", "last", "phi", "phiv")}

    @property
    def client(self) -> _Peek:
        return _Peek(self.data)


@pytest.fixture(params=_KINDS)
def reg(request: pytest.FixtureRequest, namespace: str) -> Iterator[RedisRegistry]:
    if request.param == "shared_memory":
        yield _Inspectable(lease_ttl_secs=30.0)  # type: ignore[misc]
        return
    server = request.getfixturevalue("redis_servers")(request.param)
    registry = RedisRegistry.from_url(server.url, namespace=namespace, lease_ttl_secs=30.0)
    yield registry
    registry.clear()
    registry.client.close()


def service(name: str = "svc", **transport: object) -> ExtensionService:
    return ExtensionService(name, "1", transport=TransportConfig(**transport))  # type: ignore[arg-type]


def running(reg: RedisRegistry, name: str = "svc", timeout: float = LONG, **transport: object) -> str:
    """A registered service made RUNNING as the manager does it (the start counts as a heartbeat)."""
    sid, _ = reg.join(service(name, **transport))
    assert reg.activate(sid, timeout)
    return sid


def lead(reg: RedisRegistry, timeout: float = LONG) -> None:
    """Take the lease and make a first sweep (so later sweeps see no outage to rebase).

    That first sweep gives every deadline a fresh `timeout` (the default timeout when unconfigured).
    """
    assert reg.lease(OWNER, 30.0).leader
    assert reg.sweep(OWNER, timeout, 30.0, 100, onset=ONSET) is not None


def kinds(events: list[LifecycleEvent]) -> list[str]:
    return [e.signal_name for e in events]


def poll(check: Callable[[], object], timeout: float = WAIT, what: str = "condition") -> object:
    """Call `check` until it answers something true; real time must pass on the server's clock."""
    end = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


# -- 0. a lease of ttl 0 is a peek at the generation marker ------------------------------------------


def test_a_zero_ttl_lease_reads_the_generation_and_seeks_nothing(reg):
    peek = reg.lease(OWNER, 0.0)
    assert not peek.leader and reg.leader() is None
    taken = reg.lease(OWNER, 30.0)
    assert taken.leader and taken.generation == peek.generation  # the marker the peek set is the server's
    again = reg.lease(OWNER, 0.0)
    assert again.leader and again.generation == peek.generation and reg.leader() == OWNER
    assert not reg.lease("leader-2", 0.0).leader and reg.leader() == OWNER


def test_a_polite_lease_request_renews_a_held_lease_and_leaves_a_free_one_free(reg):
    asked = reg.lease(OWNER, 30.0, polite=True)
    assert (asked.leader, asked.free) == (False, True) and reg.leader() is None
    assert reg.lease(OWNER, 30.0).leader and reg.leader() == OWNER
    renewed = reg.lease(OWNER, 30.0, polite=True)
    assert (renewed.leader, renewed.free, renewed.generation) == (True, False, asked.generation)
    other = reg.lease("leader-2", 30.0, polite=True)
    assert (other.leader, other.free) == (False, False) and reg.leader() == OWNER
    assert reg.members(OWNER, 30.0, 1) == (1, None, None)  # one partition keeps no members


# -- 1. a claim lasts the attempt's connect timeout plus the leader's tick ----------------------------


def test_a_claimed_attempt_whose_outcome_is_lost_is_handed_out_again_after_its_timeout_and_tick(reg):
    sid = running(reg, timeout_secs=0.3)
    lead(reg)
    reg.report_error(sid, "boom", Plan("retry", 1, 0.0, 3))
    started = time.monotonic()
    first = reg.sweep(OWNER, LONG, 30.0, 100, tick=0.2, onset=ONSET)
    assert first is not None and first.attempts == [(sid, 1)]
    # Parked for 0.3 + 0.2 s: not handed out before, and the leader is told to look again then.
    again = reg.sweep(OWNER, LONG, 30.0, 100, tick=0.2, onset=ONSET)
    assert again is not None and again.attempts == []
    assert again.next_in is not None and 0.2 < again.next_in <= 0.5
    # The outcome never comes (a server restarted mid-attempt loses it): the same attempt is due again.
    handed = poll(lambda: (reg.sweep(OWNER, LONG, 30.0, 100, tick=0.2, onset=ONSET) or first).attempts,
                  what="the re-claim")
    waited = time.monotonic() - started
    assert handed == [(sid, 1)]
    assert 0.45 <= waited < 5.0
    assert reg.get(sid).status is S.RECONNECTING and reg.get(sid).retry_count == 1
    # Re-claimed by the same leader: an outcome for that attempt is still accepted, once.
    events = reg.attempt_done(sid, OWNER, 1, True, Plan("retry", 2, 0.0, 3), timeout=LONG)
    assert events is not None and Reconnected in {type(e) for e in events}
    assert reg.get(sid).status is S.RUNNING
    assert reg.attempt_done(sid, OWNER, 1, True, Plan("retry", 2, 0.0, 3), timeout=LONG) == []


def test_a_claim_defaults_to_the_lease_ttl_as_the_tick(reg):
    sid = running(reg, timeout_secs=0.5)
    lead(reg)
    reg.report_error(sid, "boom", Plan("retry", 1, 0.0, 3))
    assert reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET).attempts == [(sid, 1)]
    nxt = reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET).next_in
    assert nxt is not None and 29.0 < nxt <= 30.5  # 0.5 s connect timeout + the 30 s lease, not an hour


def test_a_new_leader_gets_the_claims_of_the_old_one_at_once(reg):
    sid = running(reg, timeout_secs=60.0)
    lead(reg)
    reg.report_error(sid, "boom", Plan("retry", 1, 0.0, 3))
    assert reg.sweep(OWNER, LONG, 30.0, 100, tick=0.1, onset=ONSET).attempts == [(sid, 1)]
    reg.release(OWNER)
    assert reg.lease("leader-2", 30.0).leader
    assert reg.sweep("leader-2", LONG, 30.0, 100, onset=ONSET).attempts == [(sid, 1)]
    # The old claimant's late outcome is refused (fenced); the new one's is taken.
    assert reg.attempt_done(sid, OWNER, 1, True, Plan("retry", 2, 0.0, 3)) is None
    assert kinds(reg.attempt_done(sid, "leader-2", 1, False, Plan("retry", 2, 0.0, 3)) or []) == ["reconnecting"]


# -- 2. settings given once ----------------------------------------------------------------------------


def test_configured_settings_give_every_operation_its_default_timeout(reg):
    reg.configure(StoreSettings(timeout=0.25))
    assert reg.settings == StoreSettings(timeout=0.25)
    sid = running(reg, timeout=LONG)  # the call's timeout no longer counts
    lead(reg)
    nxt = reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET).next_in
    assert nxt is not None and nxt <= 0.25
    sweep = poll(lambda: (s := reg.sweep(OWNER, LONG, 30.0, 100, onset=STAY)) and s.due and s, what="the deadline")
    assert sweep.due == [sid]
    assert kinds(sweep.events) == ["heartbeat_timeout", "status_changed"]
    assert reg.get(sid).status is S.ERROR


def test_unconfigured_each_calls_timeout_is_the_default(reg):
    sid = running(reg, timeout=0.25)  # the activation's 0.25 s sets the deadline, whatever the sweep's call says
    lead(reg, 0.25)
    assert 0.0 < reg.sweep(OWNER, LONG, 30.0, 100, onset=STAY).next_in <= 0.25
    sweep = poll(lambda: (s := reg.sweep(OWNER, LONG, 30.0, 100, onset=STAY)) and s.due and s, what="the deadline")
    assert sweep.due == [sid] and kinds(sweep.events)[:1] == ["heartbeat_timeout"]


def test_the_plain_expire_keeps_its_own_timeout_when_configured(reg):
    reg.configure(StoreSettings(timeout=LONG))
    sid = running(reg)
    time.sleep(0.05)
    assert reg.expire(sid, 0.01, S.RECONNECTING) is S.RUNNING
    assert reg.get(sid).status is S.RECONNECTING


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"timeout": 0}, ValueError), ({"timeout": "1"}, TypeError), ({"timeout": 1, "max_restarts": -1}, ValueError),
    ({"timeout": 1, "max_restarts": True}, TypeError), ({"timeout": 1, "restart_window": 0}, ValueError),
    ({"timeout": 1, "phi": 8.0}, TypeError),
])
def test_store_settings_refuse_nonsense(kwargs, error):
    with pytest.raises(error):
        StoreSettings(**kwargs)


def test_configure_refuses_what_is_not_store_settings(reg):
    with pytest.raises(TypeError):
        reg.configure(LifecycleConfig())  # type: ignore[arg-type]


# -- 3. per-service timing ------------------------------------------------------------------------------


@pytest.fixture
def timed(reg: RedisRegistry) -> tuple[RedisRegistry, str, str]:
    """A configured registry (30 s default) with "fast" (its own 0.2 s timeout, 1 attempt) and "slow" RUNNING."""
    reg.configure(StoreSettings(timeout=LONG))
    fast = running(reg, "fast", heartbeat_timeout_secs=0.2, max_reconnect_attempts=1)
    slow = running(reg, "slow")
    lead(reg)
    return reg, fast, slow


def test_a_services_own_timeout_sets_its_deadlines_and_its_expiry(timed):
    reg, fast, slow = timed
    nxt = reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET).next_in
    assert nxt is not None and nxt <= 0.2
    sweep = poll(lambda: (s := reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET)) and s.due and s,
                 what="the fast deadline")
    assert sweep.due == [fast]
    assert sweep.details == {fast: Detail("fast", True, 1)}
    events = sweep.events
    assert [(e.signal_name, e.service_id) for e in events][:1] == [("heartbeat_timeout", fast)]
    assert {e.service_id for e in events} == {fast} and events[-1].max_attempts == 1  # its own limit
    assert reg.get(slow).status is S.RUNNING and reg.get(fast).status is S.RECONNECTING


def sweep_until(reg: RedisRegistry, n: int, onset: Onset = ONSET) -> tuple[list[str], list[LifecycleEvent], dict]:
    """Sweep with `onset` until `n` services were due (and timed out): their ids, events and details."""
    due: list[str] = []
    events: list[LifecycleEvent] = []
    details: dict = {}

    def more() -> bool:
        sweep = reg.sweep(OWNER, LONG, 30.0, 100, onset=onset)
        due.extend(sweep.due)
        events.extend(sweep.events)
        details.update(sweep.details)
        return len(due) >= n

    poll(more, what=f"{n} deadlines")
    return due, events, details


def test_a_sweep_with_an_onset_times_its_due_services_out_and_begins_each_cycle_as_its_transport_says(reg):
    reg.configure(StoreSettings(timeout=LONG))
    plain = running(reg, "plain", heartbeat_timeout_secs=0.2)
    own = running(reg, "own", heartbeat_timeout_secs=0.2, max_reconnect_attempts=5)
    capped = running(reg, "capped", heartbeat_timeout_secs=0.2, max_reconnect_attempts=0)
    manual = running(reg, "manual", heartbeat_timeout_secs=0.2, auto_reconnect=False)
    slow = running(reg, "slow")
    lead(reg)
    due, events, details = sweep_until(reg, 4)
    assert sorted(due) == sorted([plain, own, capped, manual])
    assert details[own] == Detail("own", True, 5) and details[manual] == Detail("manual", False, None)
    by = {sid: [e for e in events if e.service_id == sid] for sid in due}
    assert kinds(by[plain]) == kinds(by[own]) == ["heartbeat_timeout", "status_changed", "reconnecting"]
    assert kinds(by[capped]) == ["heartbeat_timeout", "status_changed", "reconnect_failed"]
    assert kinds(by[manual]) == ["heartbeat_timeout", "status_changed"]
    first, mine = by[plain][2], by[own][2]
    assert isinstance(first, Reconnecting) and isinstance(mine, Reconnecting)
    assert (first.attempt, first.max_attempts, mine.attempt, mine.max_attempts) == (1, 3, 1, 5)
    assert 1.0 <= first.delay <= 2.0 and 1.0 <= mine.delay <= 2.0
    assert first.delay != mine.delay  # a draw for each service: a burst's attempts spread over the window
    assert [reg.get(sid).status for sid in (plain, own, capped, manual, slow)] == [
        S.RECONNECTING, S.RECONNECTING, S.ERROR, S.ERROR, S.RUNNING]
    # The reply's events (compact on the wire) are the ones the log got, field for field.
    said = [(e.signal_name, e.signal_kwargs()) for e in events]
    logged = [(e.signal_name, e.signal_kwargs()) for _, e in reg.read_events("0-0", count=1000)
              if e.service_id in due and (e.signal_name != "status_changed" or e.old_status is S.RUNNING)
              and e.signal_name != "service_started"]
    assert sorted(said, key=repr) == sorted(logged, key=repr) and len(said) == 11
    again = reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET)
    assert again.due == [] and again.events == [] and again.attempts == []  # each timed out once
    assert 0.5 < again.next_in <= 2.0  # the first attempt's due time, not a deadline


def test_a_heartbeat_and_a_revival_arm_the_services_own_timeout(timed):
    reg, fast, _ = timed
    time.sleep(0.1)
    reg.beat(fast, LONG)
    nxt = reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET).next_in
    assert nxt is not None and 0.1 < nxt <= 0.2
    reg.report_error(fast, "boom", None)  # ERROR, no plan
    assert reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET).next_in > 1.0  # only the slow deadline is left
    prior, events = reg.beat(fast, LONG)
    assert prior is S.ERROR and "reconnected" in kinds(events)
    nxt = reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET).next_in
    assert nxt is not None and nxt <= 0.2


def test_timing_and_is_healthy_use_the_services_own_timeout(timed):
    reg, fast, slow = timed
    got = reg.timing(fast)
    assert got is not None and got.status is S.RUNNING and got.timeout == 0.2 and got.silent < 0.2
    assert reg.timing(slow).timeout == LONG
    assert reg.timing("nope") is None and reg.timing(42) is None  # type: ignore[arg-type]
    assert reg.is_healthy(fast) and reg.is_healthy(slow)
    poll(lambda: not reg.is_healthy(fast), what="the fast service unhealthy")
    assert reg.is_healthy(slow) and not reg.is_healthy("nope")
    assert Timing(S.RUNNING, None, 1.0).healthy is False


def test_an_outage_rebase_gives_each_service_its_own_timeout(timed):
    reg, _, _ = timed
    time.sleep(0.15)
    sweep = reg.sweep(OWNER, LONG, 0.0, 100, onset=ONSET)  # no grace: as after an outage, every deadline starts again
    assert sweep.rebased == 2 and sweep.due == []
    assert 0.1 < sweep.next_in <= 0.2  # the fast service's own 0.2 s from now, not 30 s


def test_an_outage_rebase_on_a_large_namespace_goes_a_chunk_per_sweep_and_times_nothing_out(reg):
    """Every service silent through a gap gets a fresh deadline; on a server a sweep rebases a few
    (one script over a large namespace would hold the server for seconds), and a service found due
    before its chunk came is rebased, not timed out. In process the store rebases all at once."""
    lead(reg)
    ids = [running(reg, f"s{i}", timeout=0.2) for i in range(300)]  # more than a small sorted set holds
    time.sleep(0.3)  # every deadline passed during what the next sweep takes for an outage
    sweep = reg.sweep(OWNER, LONG, 0.0, 5, onset=ONSET)  # no grace: the gap counts for nothing
    assert sweep.rebased == 300 and sweep.due == []
    sweeps = 1
    while sweep.next_in == 0 and sweeps < 1000:  # the server's rebase is not done: sweep again at once
        sweep = reg.sweep(OWNER, LONG, LONG, 5, onset=ONSET)
        assert sweep.due == [] and sweep.rebased == 0
        sweeps += 1
    assert sweep.next_in is not None and sweep.next_in > 20.0  # every deadline a full 30 s from its rebase
    if isinstance(reg, SharedMemoryRegistry):
        assert sweeps == 1
    else:
        assert 3 <= sweeps <= 300 // 5  # chunks (COUNT 20 is a hint to ZSCAN): not one script, not one by one
    assert all(reg.silence(sid) == (S.RUNNING, pytest.approx(0.0, abs=5.0)) for sid in ids)


def test_the_registrys_health_check_uses_each_services_timeout(reg):
    fast = running(reg, "fast", heartbeat_timeout_secs=0.2)
    running(reg, "slow")
    assert reg.health_check() == []
    poll(lambda: reg.timing(fast).silent >= 0.2, what="0.2 s of silence")
    assert reg.health_check() == [fast]


def test_own_timing_is_kept_in_snapshots_restored_and_forgotten(reg):
    reg.configure(StoreSettings(timeout=LONG))
    original = service("own", heartbeat_timeout_secs=0.5, ping_interval_secs=0.25, max_reconnect_attempts=2)
    sid, _ = reg.join(original)
    got = reg.get(sid).transport
    assert (got.heartbeat_timeout_secs, got.ping_interval_secs, got.max_reconnect_attempts) == (0.5, 0.25, 2)
    assert reg.client.hget(reg.keys["tmo"], sid) == "500000"
    reg.unregister(sid)
    assert reg.client.hexists(reg.keys["tmo"], sid) == 0
    assert reg.restore(original, LONG)
    assert reg.timing(sid).timeout == 0.5 and reg.get(sid).status is S.RUNNING
    plain, _ = reg.join(service("plain"))
    assert reg.client.hexists(reg.keys["tmo"], plain) == 0 and reg.timing(plain).timeout == LONG


# -- 4. restart intensity, atomic with the change --------------------------------------------------------

RETRY = Plan("retry", 1, 5.0, 3)  # attempt 1 in 5 s: no test waits for it


def intensity(reg: RedisRegistry, max_restarts: int = 2, window: float = 60.0, timeout: float = LONG) -> None:
    reg.configure(StoreSettings(timeout=timeout, max_restarts=max_restarts, restart_window=window))


def revive(reg: RedisRegistry, sid: str) -> None:
    prior, events = reg.beat(sid, LONG)
    assert prior in (S.RECONNECTING, S.ERROR) and "reconnected" in kinds(events)


def test_error_reports_beyond_max_restarts_leave_the_service_flapping_in_error(reg):
    intensity(reg)
    sid = running(reg)
    for n in (1, 2):
        prior, events = reg.report_error(sid, "broken pipe", RETRY)
        assert prior is S.RUNNING
        assert kinds(events) == ["service_error", "status_changed", "status_changed", "reconnecting"]
        assert reg.restarts(sid) == n
        revive(reg, sid)  # RUNNING again; its restart times stay
    assert reg.restarts(sid) == 2
    prior, events = reg.report_error(sid, "broken pipe", RETRY)
    assert kinds(events) == ["service_error", "status_changed", "service_flapping"]
    flap = events[-1]
    assert isinstance(flap, ServiceFlapping) and (flap.service_id, flap.restarts, flap.window) == (sid, 3, 60.0)
    assert reg.get(sid).status is S.ERROR and reg.restarts(sid) == 3
    assert reg.client.zscore(reg.keys["todo"], sid) is None  # no attempt scheduled
    # Flapping: a further error plan is ignored (the error is still reported).
    prior, events = reg.report_error(sid, "still broken", RETRY)
    assert prior is S.ERROR and kinds(events) == ["service_error"]
    assert reg.get(sid).status is S.ERROR and reg.restarts(sid) == 3
    # A heartbeat brings it back and clears the flag; the restart times are still within the window.
    revive(reg, sid)
    _, events = reg.report_error(sid, "broken again", RETRY)
    assert kinds(events) == ["service_error", "status_changed", "service_flapping"]
    assert events[-1].restarts == 4  # as in memory: at most max_restarts + 1 times are kept


def test_a_timeout_beyond_max_restarts_is_a_flap_not_a_reconnect(reg):
    intensity(reg, max_restarts=1, timeout=0.15)
    sid = running(reg)
    lead(reg, 0.15)

    def expire() -> list[LifecycleEvent]:
        return sweep_until(reg, 1, Onset(True, 3, 5.0, 5.0))[1]

    assert kinds(expire()) == ["heartbeat_timeout", "status_changed", "reconnecting"]
    revive(reg, sid)
    events = expire()
    assert kinds(events) == ["heartbeat_timeout", "status_changed", "service_flapping"]
    assert (events[1].old_status, events[1].new_status) == (S.RUNNING, S.ERROR)
    assert events[-1].restarts == 2
    assert reg.get(sid).status is S.ERROR and reg.get(sid).retry_count == 0
    assert reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET).next_in is None  # nothing left to watch or attempt


def test_giving_up_at_once_counts_as_a_restart_and_no_auto_reconnect_does_not(reg):
    intensity(reg, max_restarts=1)
    sid = running(reg)
    _, events = reg.report_error(sid, "x", Plan("error"))  # no auto-reconnect: no restart
    assert kinds(events) == ["service_error", "status_changed"] and reg.restarts(sid) == 0
    _, events = reg.report_error(sid, "x", None)
    assert kinds(events) == ["service_error"] and reg.restarts(sid) == 0
    _, events = reg.report_error(sid, "x", Plan("giveup", 1, 0.0, 0))  # max_reconnect_attempts=0
    assert kinds(events) == ["service_error", "reconnect_failed"] and reg.restarts(sid) == 1
    _, events = reg.report_error(sid, "x", Plan("giveup", 1, 0.0, 0))
    assert kinds(events) == ["service_error", "service_flapping"]


def test_max_restarts_zero_refuses_the_first_restart(reg):
    intensity(reg, max_restarts=0)
    sid = running(reg)
    _, events = reg.report_error(sid, "x", RETRY)
    assert kinds(events) == ["service_error", "status_changed", "service_flapping"]
    assert events[-1].restarts == 1


def test_restarts_older_than_the_window_do_not_count(reg):
    intensity(reg, max_restarts=1, window=0.3)
    sid = running(reg)
    assert kinds(reg.report_error(sid, "x", RETRY)[1])[-1] == "reconnecting"
    revive(reg, sid)
    assert reg.restarts(sid) == 1
    poll(lambda: reg.restarts(sid) == 0, what="the restart to leave the window")
    assert kinds(reg.report_error(sid, "x", RETRY)[1])[-1] == "reconnecting"


def test_without_max_restarts_nothing_is_counted(reg):
    sid = running(reg)
    for _ in range(5):
        assert kinds(reg.report_error(sid, "x", RETRY)[1])[-1] == "reconnecting"
        revive(reg, sid)
    assert reg.restarts(sid) == 0 and not reg.client.exists(reg.keys["rst"])


def test_a_reconnecting_service_keeps_its_attempts_on_an_error(reg):
    intensity(reg, max_restarts=0)
    sid = running(reg)
    reg.restart(sid, RETRY)
    prior, events = reg.report_error(sid, "x", RETRY)
    assert prior is S.RECONNECTING and kinds(events) == ["service_error"] and reg.restarts(sid) == 0


def test_restart_brings_a_flapping_service_back_with_a_fresh_window(reg):
    intensity(reg, max_restarts=1)
    sid = running(reg)
    lead(reg)
    reg.report_error(sid, "x", RETRY)
    revive(reg, sid)
    reg.report_error(sid, "x", RETRY)
    assert reg.get(sid).status is S.ERROR and reg.restarts(sid) == 2
    prior, events = reg.restart(sid, Plan("retry", 1, 0.0, 3))  # with a connector: due at once
    assert prior is S.ERROR
    assert kinds(events) == ["status_changed", "reconnecting"]
    assert isinstance(events[-1], Reconnecting) and (events[-1].attempt, events[-1].delay) == (1, 0.0)
    assert reg.get(sid).status is S.RECONNECTING and reg.restarts(sid) == 0
    assert reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET).attempts == [(sid, 1)]
    assert "reconnected" in kinds(reg.attempt_done(sid, OWNER, 1, True, Plan("retry", 2, 0.0, 3)))
    # The window starts afresh: one restart is allowed again, and no longer flapping.
    assert kinds(reg.report_error(sid, "x", RETRY)[1])[-1] == "reconnecting"


def test_restart_from_running_and_reconnecting_voids_the_claim(reg):
    sid = running(reg)
    lead(reg)
    prior, events = reg.restart(sid, Plan("retry", 1, 0.0, 3))
    assert prior is S.RUNNING and kinds(events) == ["status_changed", "reconnecting"]
    assert reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET).attempts == [(sid, 1)]
    assert reg.attempt_done(sid, OWNER, 1, False, Plan("retry", 2, 0.0, 3)) is not None
    assert reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET).attempts == [(sid, 2)]  # attempt 2 claimed, in flight
    prior, events = reg.restart(sid, Plan("retry", 1, 1.0, 3))
    assert prior is S.RECONNECTING and kinds(events) == ["reconnecting"]  # no status change
    assert reg.get(sid).retry_count == 1
    assert reg.attempt_done(sid, OWNER, 2, True, Plan("retry", 3, 0.0, 3)) == []  # the old attempt is stale
    assert reg.get(sid).status is S.RECONNECTING


def test_restart_with_no_attempts_allowed_gives_up_at_once(reg):
    sid = running(reg)
    _, events = reg.restart(sid, Plan("giveup", 1, 0.0, 0))
    assert kinds(events) == ["status_changed", "status_changed", "reconnect_failed"]
    assert reg.get(sid).status is S.ERROR


def test_restart_changes_nothing_that_is_not_running_reconnecting_or_error(reg):
    sid, _ = reg.join(service("starting"))
    assert reg.restart(sid, RETRY) == (S.STARTING, [])
    stopping = running(reg, "stopping")
    reg.begin_stop(stopping)
    assert reg.restart(stopping, RETRY) == (S.STOPPING, [])
    assert reg.restart("nope", RETRY) == (None, [])
    assert reg.get(sid).status is S.STARTING and reg.get(stopping).status is S.STOPPING


def test_flapping_is_in_the_fleet_log_and_forgotten_with_the_service(reg):
    intensity(reg, max_restarts=0)
    sid = running(reg)
    after = reg.last_event_id()
    reg.report_error(sid, "x", RETRY)
    logged = [e for _, e in reg.read_events(after)]
    flaps = [e for e in logged if isinstance(e, ServiceFlapping)]
    assert [(e.service_id, e.restarts, e.window) for e in flaps] == [(sid, 1, 60.0)]
    reg.unregister(sid)
    assert not reg.client.hexists(reg.keys["rst"], sid) and not reg.client.hexists(reg.keys["flap"], sid)


# -- 5. the phi detector in the store --------------------------------------------------------------------

# Seeded at 0.1 s +/- 0.025 s, the first limit is 0.176 s; four samples kept, so the seeds leave soon.
PHI = PhiSettings(threshold=3.0, max_sample_size=4, min_std_deviation=0.02, acceptable_pause=0.0, first_interval=0.1)


@pytest.fixture
def raw(reg: RedisRegistry) -> Iterator[redis.Redis]:
    """A client that leaves replies as bytes: the interval history is packed doubles."""
    if isinstance(reg, _Inspectable):
        yield reg.client  # type: ignore[misc]
        return
    kwargs = reg.client.connection_pool.connection_kwargs
    client = redis.Redis(host=kwargs["host"], port=kwargs["port"])
    yield client
    client.close()


def with_phi(reg: RedisRegistry, timeout: float = LONG) -> None:
    reg.configure(StoreSettings(timeout=timeout, phi=PHI))


def intervals(reg: RedisRegistry, raw: redis.Redis, sid: str) -> list[float]:
    """The service's interval history in microseconds, oldest first, read from its ring; its sums agree."""
    if isinstance(reg, _Inspectable):
        history = reg.data.phi[sid]
        got = history.ring[:history.n] if history.n < history.size else [*history.ring[history.w:],
                                                                         *history.ring[:history.w]]
        assert math.isclose(history.total, sum(got)) and math.isclose(history.squares, sum(x * x for x in got))
        return got
    total, squares, n, w, size = struct.unpack("<ddddd", raw.hget(reg.keys["phi"], sid))
    n, w, size = int(n), int(w), int(size)
    slots = list(range(n)) if n < size else [*range(w, size), *range(w)]
    blocks: dict[int, bytes] = {}
    got = []
    for slot in slots:
        block = blocks.setdefault(slot // 32, raw.hget(reg.keys["phiv"], f"{sid}#{slot // 32}"))
        got.append(struct.unpack_from("<d", block, (slot % 32) * 8)[0])
    assert math.isclose(total, sum(got)) and math.isclose(squares, sum(x * x for x in got))
    return got


def expected_limit(history: list[float], timeout: float) -> float:
    """`History.limit`, capped at the timeout as the manager caps it, in microseconds, for these intervals."""
    model = History(PHI, 0.0)
    model.intervals = deque(x / 1e6 for x in history)
    model.total = sum(model.intervals)
    model.squares = sum(x * x for x in model.intervals)
    return min(timeout, model.limit(PHI, PHI.score)) * 1e6


def deadline_after_last(reg: RedisRegistry, sid: str) -> float:
    """Microseconds from the last heartbeat to the deadline the store armed."""
    return float(reg.client.zscore(reg.keys["dl"], sid)) - int(reg.client.hget(reg.keys["last"], sid))


def last_us(reg: RedisRegistry, sid: str) -> int:
    return int(reg.client.hget(reg.keys["last"], sid))


def test_a_service_becoming_running_gets_a_seeded_history_and_its_limit(reg, raw):
    with_phi(reg)
    sid = running(reg)
    assert intervals(reg, raw, sid) == [75_000, 125_000]
    assert abs(deadline_after_last(reg, sid) - expected_limit([75_000, 125_000], LONG)) <= 1
    assert abs(deadline_after_last(reg, sid) - 176_473) <= 1


@pytest.mark.parametrize("many", [False, True], ids=["beat", "beat_many"])
def test_each_heartbeat_learns_its_interval_capped_at_the_timeout_and_pulls_the_deadline(reg, raw, many):
    with_phi(reg)
    sid = running(reg, heartbeat_timeout_secs=0.3)
    seen = [75_000.0, 125_000.0]
    for pause in (0.05, 0.12, 0.0, 0.4):  # the last one is longer than the timeout: learned as 0.3 s
        before = last_us(reg, sid)
        time.sleep(pause)
        prior, events = reg.beat_many([sid], LONG)[0] if many else reg.beat(sid, LONG)
        assert prior is S.RUNNING and events == []
        seen.append(min(300_000, last_us(reg, sid) - before))
        assert intervals(reg, raw, sid) == seen[-4:]  # four kept, the oldest dropped
        assert abs(deadline_after_last(reg, sid) - expected_limit(seen[-4:], 0.3)) <= 2
    assert seen[-1] == 300_000


def test_a_take_over_learns_no_interval_for_the_silence_before_its_grant(reg, raw):
    """A fresh ownership grant of a RUNNING service (a new child) starts its deadline and its next interval."""
    with_phi(reg)
    sid = running(reg, heartbeat_timeout_secs=2.0)
    assert reg.own(sid, "member-a", 0.2, 0.1, "").fresh
    time.sleep(0.3)  # real time on the store's clock: member A's ownership runs out; no beat meanwhile
    before = last_us(reg, sid)
    assert reg.own(sid, "member-b", LONG, 0.1, "").fresh
    granted = last_us(reg, sid)
    assert granted - before >= 300_000  # the grant is where the new child's silence starts
    assert abs(deadline_after_last(reg, sid) - expected_limit([75_000, 125_000], 2e6)) <= 1
    assert not reg.own(sid, "member-b", LONG, 0.1, "").fresh  # a renewal moves nothing
    assert last_us(reg, sid) == granted
    assert reg.beat(sid, LONG) == (S.RUNNING, [])  # the new child's first beat: no event invented
    assert intervals(reg, raw, sid) == [75_000, 125_000, last_us(reg, sid) - granted]


def test_a_give_up_is_logged_once_for_the_other_candidates_and_emitted_to_nobody(reg):
    """DISOWN by the holder logs `Released` in the same step (members wake on it); by anyone else, nothing."""
    from lifecycle.registry import Released

    sid = running(reg)
    assert reg.own(sid, "member-a", LONG, 0.1, "").code == "owner"
    start = reg.last_event_id()
    reg.disown(sid, "member-b")  # not its holder: no change, nothing logged
    assert reg.owner_of(sid) == "member-a" and reg.read_events(start) == []
    reg.disown(sid, "member-a")
    assert reg.owner_of(sid) is None
    rows = reg.read_events(start)
    assert [type(event) for _, event in rows] == [Released] and rows[0][1].service_id == sid
    reg.disown(sid, "member-a")  # given up already: logged once
    assert len(reg.read_events(start)) == 1
    assert reg.own(sid, "member-b", LONG, 0.1, "").fresh  # and it is free for the next candidate


def test_a_revival_by_heartbeat_learns_the_silence_and_a_reconnect_does_not(reg, raw):
    with_phi(reg)
    sid = running(reg)
    reg.report_error(sid, "x", None)  # ERROR, no plan
    before = last_us(reg, sid)
    time.sleep(0.05)
    prior, events = reg.beat(sid, LONG)
    assert prior is S.ERROR and kinds(events) == ["status_changed", "reconnected"]
    learned = intervals(reg, raw, sid)
    assert learned == [75_000, 125_000, last_us(reg, sid) - before]
    assert abs(deadline_after_last(reg, sid) - expected_limit(learned, LONG)) <= 2
    # A reconnect made by the leader: the outage is no interval to learn; the deadline is from now.
    lead(reg)
    reg.restart(sid, Plan("retry", 1, 0.0, 3))
    assert reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET).attempts == [(sid, 1)]
    time.sleep(0.05)
    assert "reconnected" in kinds(reg.attempt_done(sid, OWNER, 1, True, Plan("retry", 2, 0.0, 3)))
    assert intervals(reg, raw, sid) == learned
    assert reg.timing(sid).silent < 0.05
    assert abs(deadline_after_last(reg, sid) - expected_limit(learned, LONG)) <= 2


def test_the_leader_expires_at_the_phi_limit_not_the_timeout(reg):
    with_phi(reg)
    sid = running(reg)
    lead(reg)
    nxt = reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET).next_in
    assert nxt is not None and nxt <= 0.177
    sweep = poll(lambda: (s := reg.sweep(OWNER, LONG, 30.0, 100, onset=ONSET)) and s.due and s,
                 what="the phi deadline")
    assert sweep.due == [sid]
    assert 0.176 <= reg.timing(sid).silent < 5.0
    assert kinds(sweep.events) == ["heartbeat_timeout", "status_changed", "reconnecting"]


def test_an_outage_rebase_arms_the_phi_limit(reg):
    with_phi(reg)
    running(reg)
    lead(reg)
    sweep = reg.sweep(OWNER, LONG, 0.0, 100, onset=ONSET)
    assert sweep.rebased == 1 and sweep.next_in is not None and 0.1 < sweep.next_in <= 0.177


def test_phi_is_read_as_history_computes_it(reg, raw):
    with_phi(reg)
    sid = running(reg)
    assert reg.phi(sid) < 1.0  # just heard
    poll(lambda: reg.timing(sid).silent >= 0.177, what="silence beyond the limit")
    assert reg.phi(sid) >= PHI.threshold - 0.01
    # The figure History gives for the same (seeded) intervals and the silence at the read, which lies
    # between the silences read just before and just after it.
    model = History(PHI, 0.0)
    before = reg.timing(sid).silent
    got = reg.phi(sid)
    after = reg.timing(sid).silent
    assert model.phi(before, PHI) - 1e-9 <= got <= model.phi(after, PHI) + 1e-9
    assert reg.phi("nope") == 0.0 and reg.phi(42) == 0.0  # type: ignore[arg-type]


def test_without_phi_nothing_is_kept_and_phi_is_zero(reg):
    sid = running(reg)
    reg.beat(sid, LONG)
    assert reg.phi(sid) == 0.0
    assert not reg.client.exists(reg.keys["phi"]) and not reg.client.exists(reg.keys["phiv"])
    assert abs(deadline_after_last(reg, sid) - LONG * 1e6) <= 1


def test_a_long_history_wraps_its_ring_across_blocks(reg, raw):
    wide = PhiSettings(threshold=8.0, max_sample_size=70, min_std_deviation=0.02, acceptable_pause=0.0,
                       first_interval=0.1)  # a ring of three blocks
    reg.configure(StoreSettings(timeout=LONG, phi=wide))
    sid = running(reg)
    seen = [75_000.0, 125_000.0]
    for _ in range(150):
        before = last_us(reg, sid)
        reg.beat(sid, LONG)
        seen.append(float(last_us(reg, sid) - before))
    assert intervals(reg, raw, sid) == seen[-70:]
    model = History(wide, 0.0)
    model.intervals = deque(x / 1e6 for x in seen[-70:])
    model.total, model.squares = sum(model.intervals), sum(x * x for x in model.intervals)
    assert abs(deadline_after_last(reg, sid) - model.limit(wide, wide.score) * 1e6) <= 2
    reg.unregister(sid)  # forgotten with the service: every block
    assert raw.hlen(reg.keys["phiv"]) == 0 and raw.hlen(reg.keys["phi"]) == 0


def test_a_history_is_forgotten_with_the_service(reg, raw):
    with_phi(reg)
    sid = running(reg)
    reg.beat(sid, LONG)
    reg.unregister(sid)
    assert raw.hget(reg.keys["phi"], sid) is None and raw.hlen(reg.keys["phiv"]) == 0


def test_beat_many_revives_through_the_full_script(reg, raw):
    with_phi(reg)
    up, down = running(reg, "up"), running(reg, "down")
    reg.report_error(down, "x", None)
    answers = reg.beat_many([up, down, "nope"])
    assert [prior for prior, _ in answers] == [S.RUNNING, S.ERROR, None]
    assert answers[0][1] == [] and kinds(answers[1][1]) == ["status_changed", "reconnected"]
    assert reg.get(down).status is S.RUNNING and len(intervals(reg, raw, down)) == 3
