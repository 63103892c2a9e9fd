"""The in-process twin of `lifecycle._redis_scripts`: the same steps, in Python, on plain containers.

`Data` is the "server": every container a namespace of `RedisRegistry` keeps (named after the
Redis keys), one lock, and the event log. `Prelude` is the scripts' shared prelude (status
changes, plans, restart intensity, the phi history), `Scripts` the scripts themselves. One
`Scripts` object is one script run: made under `Data.lock` with the time of the call and the
caller's settings (`Head`), so each operation is atomic as a script is.

Times are integer microseconds on `time.monotonic()` (looked up at every call, so freezegun
drives it), truncated where the Lua formats them with %d, so every comparison, deadline and
learned interval is the one the Lua computes.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from .events import (
    Error,
    Heartbeat,
    HeartbeatTimeout,
    LifecycleEvent,
    Reconnected,
    ReconnectFailed,
    Reconnecting,
    ServiceFlapping,
    Started,
    StatusChanged,
    Stopped,
)
from .fleet import Detail, Onset
from .model import ExtensionService, ServiceId, ServiceStatus
from .registry import Released

__all__ = ["US", "Data", "Head", "PhiHead", "Scripts", "now_us"]

US = 1_000_000
S = ServiceStatus
_CONNECT_DEFAULT = 30  # seconds, for a claimed attempt of a service whose description is gone (as the Lua)


def now_us() -> int:
    """The store's clock: `time.monotonic()` (read at call time) in integer microseconds."""
    return round(time.monotonic() * US)


class PhiHead(NamedTuple):
    """The phi detector's settings as the scripts get them (times in microseconds)."""

    score: float
    max_size: int
    min_std: int
    pause: int
    first: int


class Head(NamedTuple):
    """What every script run is given (the Lua's HEAD ARGV): the caller's settings."""

    maxlen: int
    timeout: int  # the default heartbeat timeout, microseconds
    log_beats: bool
    max_restarts: int | None
    window: int  # microseconds
    phi: PhiHead | None


@dataclass
class Phi:
    """One service's interval history (K_PHI's sums and K_PHIV's ring)."""

    size: int
    ring: list[float]
    total: float = 0.0
    squares: float = 0.0
    n: int = 0
    w: int = 0


@dataclass
class Lease:
    owner: str
    until: int  # microseconds


@dataclass(eq=False)
class Data:
    """A namespace's whole state: what `RedisRegistry` keeps in its keys, plus one lock and the log."""

    svc: dict[str, ExtensionService] = field(default_factory=dict)
    reg: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    status: dict[str, ServiceStatus] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)
    upd: dict[str, int] = field(default_factory=dict)
    att: dict[str, int] = field(default_factory=dict)
    dl: dict[str, int] = field(default_factory=dict)  # sorted set: id -> deadline
    todo: dict[str, int] = field(default_factory=dict)  # sorted set: id -> when the next attempt is due
    claim: dict[str, str] = field(default_factory=dict)
    tmo: dict[str, int] = field(default_factory=dict)
    rst: dict[str, list[int]] = field(default_factory=dict)
    flap: set[str] = field(default_factory=set)
    phi: dict[str, Phi] = field(default_factory=dict)
    # Ownership of process-bound services: id -> (holder, until, epoch); the attempt number the owner runs.
    own: dict[str, tuple[str, int, int, str]] = field(default_factory=dict)  # holder, until, epoch, child
    oclaim: dict[str, int] = field(default_factory=dict)
    lease: Lease | None = None
    epoch: int = 0
    tick: int | None = None
    gen: str | None = None
    events: deque[tuple[tuple[int, int], LifecycleEvent]] = field(default_factory=deque)
    last_entry: tuple[int, int] = (0, 0)  # the newest entry id ever given: ids never go back, even after a clear
    record: int | None = None  # the namespace's partition count, recorded by its first handle (as in Redis)
    parts: list[Data] = field(default_factory=list)  # with partitions > 1: each partition's own data
    name_claims: dict[str, str] = field(default_factory=dict)  # a part's claims: name -> id, namespace-wide
    members: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # member -> until, since, last, leads
    lock: threading.Lock = field(default_factory=threading.Lock)
    appended: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.appended = threading.Condition(self.lock)

    def clear(self) -> None:
        """Drop everything (the Lua CLEAR deletes every key: the lease, the log and the generation marker too)."""
        for column in (self.svc, self.reg, self.names, self.status, self.last, self.upd, self.att, self.dl,
                       self.todo, self.claim, self.tmo, self.rst, self.flap, self.phi, self.events, self.own,
                       self.oclaim, self.name_claims):
            column.clear()
        self.lease, self.epoch, self.tick, self.gen = None, 0, None, None

    def append(self, event: LifecycleEvent, maxlen: int) -> None:
        """XADD with MAXLEN: an entry id as a stream's (milliseconds-sequence), the oldest entries trimmed."""
        ms = max(int(time.time() * 1000), self.last_entry[0])
        entry = (ms, self.last_entry[1] + 1 if ms == self.last_entry[0] else 0)
        self.last_entry = entry
        self.events.append((entry, event))
        while len(self.events) > maxlen:
            self.events.popleft()
        self.appended.notify_all()

    def holder(self, now: int) -> str | None:
        """The lease's owner, None once it expired (as a key with PX)."""
        lease = self.lease
        return None if lease is None or lease.until <= now else lease.owner


def _first(zset: dict[str, int]) -> int | None:
    return min(zset.values()) if zset else None


def _range(zset: dict[str, int], upto: int, limit: int) -> list[str]:
    """ZRANGEBYSCORE -inf upto LIMIT 0 limit: by score, then by member."""
    return [i for score, i in sorted((s, i) for i, s in zset.items() if s <= upto)][:limit]


class Prelude:
    """The scripts' shared prelude: one object per script run, with its time, settings and events."""

    def __init__(self, data: Data, head: Head) -> None:
        self.d = data
        self.head = head
        self.now = now_us()
        self.at = self.now / US  # the events' time
        self.out: list[LifecycleEvent] = []

    # -- the event log -------------------------------------------------------------------------

    def log(self, event: LifecycleEvent) -> None:
        if self.head.maxlen > 0:
            self.d.append(event, self.head.maxlen)

    def emit(self, event: LifecycleEvent) -> None:
        self.log(event)
        self.out.append(event)

    # -- timeouts and the phi detector ----------------------------------------------------------

    def tmo(self, id: str) -> int:
        """The service's own heartbeat timeout, else the default."""
        return self.d.tmo.get(id, self.head.timeout)

    def phi_limit(self, t: float, history: Phi) -> float:
        """History.limit: mean + acceptable pause + score * max(std, min std), never beyond the timeout t."""
        phi = self.head.phi
        assert phi is not None
        mean = history.total / history.n
        std = max(math.sqrt(max(0.0, history.squares / history.n - mean * mean)), phi.min_std)
        return min(t, max(0, mean + phi.pause + phi.score * std))

    def limit(self, id: str) -> float:
        """Microseconds of silence after which the service is timed out: every deadline is last + limit(id)."""
        t = self.tmo(id)
        history = self.d.phi.get(id) if self.head.phi is not None else None
        return t if history is None else self.phi_limit(t, history)

    def phi_add(self, id: str, intervals: list[float]) -> Phi:
        """History._add for each interval: once max_size are kept, the oldest goes."""
        phi = self.head.phi
        assert phi is not None
        history = self.d.phi.get(id)
        if history is None or history.size != phi.max_size:  # none, or kept under another max_sample_size
            history = self.d.phi[id] = Phi(phi.max_size, [0.0] * phi.max_size)
        for x in intervals:
            if history.n >= history.size:  # the slot holds the oldest interval
                old = history.ring[history.w]
                history.total, history.squares, history.n = history.total - old, history.squares - old * old, \
                    history.n - 1
            history.ring[history.w] = x
            history.total, history.squares = history.total + x, history.squares + x * x
            history.n, history.w = history.n + 1, (history.w + 1) % history.size
        return history

    def _seeds(self) -> list[float]:
        first = self.head.phi.first if self.head.phi is not None else 0
        return [first - first / 4, first + first / 4]

    def phi_seed(self, id: str) -> None:
        """A service becoming RUNNING gets a seeded history, unless it has one."""
        if self.head.phi is not None and id not in self.d.phi:
            self.phi_add(id, self._seeds())

    def phi_beat(self, id: str, t: int) -> float:
        """A heartbeat: learn the interval since the last one (capped at t); return the new limit."""
        last = self.d.last.get(id)
        history = self.d.phi.get(id)
        if history is None:
            return self.phi_limit(t, self.phi_add(id, self._seeds()))
        if last is None:
            return self.phi_limit(t, history)
        return self.phi_limit(t, self.phi_add(id, [float(min(t, max(0, self.now - last)))]))

    # -- status changes and what follows them ----------------------------------------------------

    def set_status(self, id: str, new: ServiceStatus) -> ServiceStatus:
        d = self.d
        old = d.status[id]
        if old is new:
            return old
        d.status[id] = new
        d.upd[id] = self.now
        if new is S.RUNNING:
            self.phi_seed(id)
            d.dl[id] = int(d.last.get(id, self.now) + self.limit(id))
            d.att.pop(id, None)
            d.flap.discard(id)  # RUNNING again: no longer flapping (its restart times stay)
        else:
            d.dl.pop(id, None)
        if new is not S.RECONNECTING:
            d.todo.pop(id, None)
            d.claim.pop(id, None)
        self.emit(StatusChanged(ServiceId(id), self.at, old, new))
        return old

    def plan(self, id: str, mode: str, k: int, delay: int, max_attempts: int) -> None:
        sid = ServiceId(id)
        if mode == "retry":
            self.set_status(id, S.RECONNECTING)
            self.d.att[id] = k
            self.d.claim.pop(id, None)
            self.d.todo[id] = self.now + delay
            self.emit(Reconnecting(sid, self.at, k, max_attempts, delay / US))
        elif mode == "giveup":
            self.set_status(id, S.ERROR)
            self.d.att[id] = k - 1
            self.emit(ReconnectFailed(sid, self.at, k - 1))
        else:
            self.set_status(id, S.ERROR)

    def restart_times(self, id: str) -> list[int]:
        """The service's restart times within the window now, oldest first."""
        return [t for t in self.d.rst.get(id, ()) if t > self.now - self.head.window]

    def restart(self, id: str, max_restarts: int) -> int | None:
        """A restart now, recorded (at most max_restarts + 1 kept); the restarts it makes if one too many."""
        times = self.restart_times(id)
        over = len(times) + 1 if len(times) >= max_restarts else None
        times.append(self.now)
        self.d.rst[id] = times[max(0, len(times) - max_restarts - 1):]
        return over

    def begin_cycle(self, id: str, mode: str, k: int, delay: int, max_attempts: int) -> None:
        """`plan` after a timeout or an error, unless restart intensity refuses it: then ERROR, flapping."""
        max_restarts = self.head.max_restarts
        if mode != "error" and max_restarts is not None:
            over = self.restart(id, max_restarts)
            if over is not None:
                self.set_status(id, S.ERROR)
                self.d.flap.add(id)
                self.emit(ServiceFlapping(ServiceId(id), self.at, over, self.head.window / US))
                return
        self.plan(id, mode, k, delay, max_attempts)

    def fenced(self, owner: str) -> bool:
        return self.d.holder(self.now) != owner

    def forget(self, id: str) -> None:
        d = self.d
        service = d.svc.get(id)
        if service is not None:
            d.names.pop(service.name, None)
        for column in (d.svc, d.reg, d.status, d.last, d.upd, d.att, d.claim, d.tmo, d.rst, d.phi, d.dl, d.todo,
                       d.own, d.oclaim):
            column.pop(id, None)
        d.flap.discard(id)

    def silent(self, id: str) -> int | None:
        last = self.d.last.get(id)
        return None if last is None else max(0, self.now - last)


Info = tuple[ExtensionService, int, int, ServiceStatus, int | None, int, int]
"""A registration as `info()` in the Lua gives it: service, registered, updated, status, silent, attempt, now."""


class Scripts(Prelude):
    """The scripts of `lifecycle._redis_scripts`, one method each, same names in lower case."""

    def info(self, id: str) -> Info:
        d = self.d
        return (d.svc[id], d.reg.get(id, 0), d.upd.get(id, 0), d.status[id], self.silent(id), d.att.get(id, 0),
                self.now)

    def register(self, service: ExtensionService, join: bool, own: int | None) -> tuple[str, str]:
        d, id = self.d, service.id
        named = d.names.get(service.name)
        # As in the in-memory registry, a taken name is reported before a taken id.
        if named is not None and not join:
            return "name_taken", named
        if id in d.status:
            return ("joined", id) if join and named == id else ("id_taken", id)
        if named is not None:
            return ("joined", named) if join and d.svc[named].version == service.version else ("name_taken", named)
        self._store(service, service.status, own)
        if service.status is S.RUNNING:
            self.phi_seed(id)
            d.dl[id] = int(self.now + self.limit(id))
        return "new", id

    def _store(self, service: ExtensionService, status: ServiceStatus, own: int | None) -> None:
        d, id = self.d, service.id
        if own is not None:
            d.tmo[id] = own
        d.svc[id], d.reg[id], d.names[service.name] = service, self.now, id
        d.status[id], d.upd[id] = status, self.now

    def restore(self, service: ExtensionService, own: int | None) -> bool:
        d, id = self.d, service.id
        if id in d.status or service.name in d.names:
            return False
        self._store(service, S.RUNNING, own)
        d.last[id] = self.now
        self.phi_seed(id)
        d.dl[id] = int(self.now + self.limit(id))
        return True

    def unregister(self, id: str, emit: bool) -> Info | None:
        if id not in self.d.status:
            return None
        before = self.info(id)
        if emit:
            self.set_status(id, S.STOPPED)
            self.emit(Stopped(ServiceId(id), self.at))
        self.forget(id)
        return before

    def beat(self, id: str) -> ServiceStatus | None:
        """HEARTBEAT, and REVIVE for a RECONNECTING or ERROR service (one step here: the status is the same)."""
        d = self.d
        st = d.status.get(id)
        if st is S.RUNNING:
            t = self.tmo(id)
            silence: float = self.phi_beat(id, t) if self.head.phi is not None else t
            d.last[id] = self.now
            d.dl[id] = int(self.now + silence)
        elif st is S.STARTING:
            d.last[id] = self.now
        elif st is S.RECONNECTING or st is S.ERROR:
            self._revive(id)
        else:
            return st
        if self.head.log_beats:
            self.log(Heartbeat(ServiceId(id), self.at))
        return st

    def _revive(self, id: str) -> None:
        if self.head.phi is not None:
            self.phi_beat(id, self.tmo(id))
        self.d.last[id] = self.now
        self.set_status(id, S.RUNNING)
        self.emit(Reconnected(ServiceId(id), self.at))

    def activate(self, id: str) -> None:
        if self.d.status.get(id) is not S.STARTING:
            return
        self.d.last[id] = self.now
        self.emit(Started(ServiceId(id), self.at))
        self.set_status(id, S.RUNNING)

    def set_status_if(self, id: str, new: ServiceStatus, expected: ServiceStatus | None) -> ServiceStatus | None:
        st = self.d.status.get(id)
        if st is None or (expected is not None and st is not expected):
            return st
        self.set_status(id, new)
        return st

    def report_error(self, id: str, error: str, plan: tuple[str, int, int, int] | None) -> ServiceStatus | None:
        st = self.d.status.get(id)
        if st is None or st in (S.STOPPING, S.STOPPED, S.STARTING):
            return st
        self.emit(Error(ServiceId(id), self.at, error))
        if st is not S.RECONNECTING:
            self.set_status(id, S.ERROR)
            # A flapping service ignores error plans until it is RUNNING again or restarted.
            if plan is not None and id not in self.d.flap:
                self.begin_cycle(id, *plan)
        return st

    def begin_stop(self, id: str) -> ServiceStatus | None:
        st = self.d.status.get(id)
        if st is None or st is S.STOPPING or st is S.STOPPED:
            return st
        self.set_status(id, S.STOPPING)
        return st

    def expire(self, id: str, new: ServiceStatus, timeout: int) -> bool:
        d = self.d
        if d.status.get(id) is not S.RUNNING:
            return False
        last = d.last.get(id)
        if last is not None and last + timeout > self.now:
            d.dl[id] = int(last + self.limit(id))
            return False
        self.set_status(id, new)
        return True

    def lease(self, owner: str, ttl_ms: int, generation: str, polite: bool = False) -> tuple[str, str]:
        d = self.d
        if d.gen is None:
            d.gen = generation
        holder = d.holder(self.now)
        if ttl_ms == 0:  # a peek: the generation marker, nothing sought or renewed
            return "leader" if holder == owner else "follower", d.gen
        if holder is not None:
            if holder == owner:
                d.lease = Lease(owner, self.now + ttl_ms * 1000)
            return "leader" if holder == owner else "follower", d.gen
        if polite:
            return "free", d.gen
        d.lease = Lease(owner, self.now + ttl_ms * 1000)
        d.epoch += 1
        # Attempts an earlier leader had claimed are void (it is fenced now): they are due again at once.
        for id in d.claim:
            d.todo[id] = self.now
        d.claim.clear()
        return "leader", d.gen

    def members(self, owner: str, ttl_us: int, leads: int, standing_us: int) -> tuple[int, int | None, int | None]:
        """MEMBERS (lifecycle._redis_parts): `owner` live `ttl_us` more (0: gone); live, others' fewest, settled's."""
        members, now = self.d.members, self.now
        for gone in [m for m, (until, *_) in members.items() if until <= now]:
            del members[gone]
        if ttl_us > 0:
            members[owner] = (now + ttl_us, members.get(owner, (0, now))[1], now, leads)
        else:
            members.pop(owner, None)
        others = [(last - since, n) for m, (_, since, last, n) in members.items() if m != owner]
        return (len(members), min((n for _, n in others), default=None),
                min((n for age, n in others if age >= standing_us), default=None))

    def release(self, owner: str) -> None:
        if self.d.holder(self.now) == owner:
            self.d.lease = None

    def sweep(self, owner: str, grace: int, batch: int, tick: int, onset: Onset
              ) -> tuple[list[tuple[str, str, bool, int | None]], list[tuple[str, int]], int | None, int] | None:
        if self.fenced(owner):
            return None
        d = self.d
        rebased = 0
        if d.tick is None or self.now - d.tick > grace:
            # Nobody watched for a while (outage, restart, failover): silence in that gap counts for nothing.
            for id in list(d.dl):
                d.dl[id] = int(self.now + self.limit(id))
                d.last[id] = self.now
            rebased = len(d.dl)
        d.tick = self.now
        due = self._time_out([self._detail(id) for id in _range(d.dl, self.now, batch)], onset)
        claimed = []
        for id in _range(d.todo, self.now, batch):
            service = d.svc.get(id)
            connect = _CONNECT_DEFAULT if service is None else service.transport.timeout_secs
            d.todo[id] = self.now + math.floor(connect * US) + tick
            d.claim[id] = owner
            claimed.append((id, d.att.get(id, 0)))
        nxt = min((x for x in (_first(d.dl), _first(d.todo)) if x is not None), default=None)
        return due, claimed, None if nxt is None else max(0, nxt - self.now), rebased

    def _time_out(self, due: list[tuple[str, str, bool, int | None]], onset: Onset
                  ) -> list[tuple[str, str, bool, int | None]]:
        """SWEEP's timeouts: each due service still RUNNING times out and begins its cycle; those, as `due`."""
        draws = random.Random(onset.seed)
        out = []
        for row in due:
            id = row[0]
            if self.d.status.get(id) is not S.RUNNING:
                self.d.dl.pop(id, None)  # only a RUNNING service has a deadline
                continue
            plan = onset.plan(Detail(*row[1:]), draws.random())
            self.emit(HeartbeatTimeout(ServiceId(id), self.at))
            self.begin_cycle(id, plan.mode, plan.attempt, math.floor(plan.delay * US), plan.max_attempts)
            out.append(row)
        return out

    def _detail(self, id: str) -> tuple[str, str, bool, int | None]:
        service = self.d.svc.get(id)
        if service is None:
            return id, "", True, None
        return id, service.name, service.transport.auto_reconnect, service.transport.max_reconnect_attempts

    def attempt_done(self, id: str, owner: str, attempt: int, ok: bool, plan: tuple[str, int, int, int]
                     ) -> str:
        d = self.d
        by_owner = self.holder_of(id) == owner  # a process-bound service's attempts are its owner's
        if self.fenced(owner) and not by_owner:
            return "fenced"
        claimed = d.oclaim.get(id) == attempt if by_owner else d.claim.get(id) == owner
        if d.status.get(id) is not S.RECONNECTING or not claimed or d.att.get(id) != attempt:
            return "stale"
        del d.claim[id]
        if ok:
            d.last[id] = self.now
            self.set_status(id, S.RUNNING)
            self.emit(Reconnected(ServiceId(id), self.at))
        else:
            self.plan(id, *plan)
        return "ok"

    def holder_of(self, id: str) -> str | None:
        """The live owner of a process-bound service, None when nobody holds it."""
        record = self.d.own.get(id)
        return None if record is None or record[1] <= self.now or not record[0] else record[0]

    def own(self, id: str, owner: str, ttl_ms: int, tick: int,
            child: str = "-") -> tuple[str, int, bool, str, int, str]:
        """OWN: take or renew ownership; as the owner, claim the due reconnect attempt (0: none).

        `child` (the owner's record, engine/leftover.py; '' none, '-' keep) is kept with the ownership. Returns
        code ('owner', 'other', 'missing', 'stopping'), epoch, fresh grant, status, attempt to run,
        and on a fresh grant the child an earlier owner recorded.
        """
        d = self.d
        st = d.status.get(id)
        if st is None:
            return "missing", 0, False, "", 0, ""
        holder, until, epoch, had = d.own.get(id, ("", 0, 0, ""))
        if holder and holder != owner and until > self.now:
            return "other", epoch, False, st.value, 0, ""
        if st in (S.STOPPING, S.STOPPED):
            return "stopping", epoch, False, st.value, 0, ""
        fresh = holder != owner or until <= self.now
        before = ""
        if fresh:
            epoch += 1
            before, had = had, ""
            d.oclaim.pop(id, None)  # an attempt an earlier owner began is run again by this one
            if st is S.RUNNING:  # a take-over: the new child's deadline runs from now, as after a start
                d.last[id] = self.now
                d.dl[id] = int(self.now + self.limit(id))
        d.own[id] = (owner, self.now + ttl_ms * 1000, epoch, had if child == "-" else child)
        run = 0
        if st is S.RECONNECTING:
            att = d.att.get(id, 0)
            due = d.todo.get(id)
            if d.oclaim.get(id) != att and ((due is not None and due <= self.now) or id in d.claim):
                service = d.svc.get(id)
                connect = _CONNECT_DEFAULT if service is None else service.transport.timeout_secs
                d.oclaim[id] = run = att
                d.claim[id] = owner
                d.todo[id] = self.now + math.floor(connect * US) + tick
        return "owner", epoch, fresh, st.value, run, before

    def disown(self, id: str, owner: str) -> None:
        """DISOWN: give ownership up if `owner` holds it (the epoch stays, so the next grant is newer); logged."""
        record = self.d.own.get(id)
        if record is not None and record[0] == owner:
            self.d.own[id] = ("", 0, record[2], "")
            self.log(Released(ServiceId(id), self.at))  # wakes the other candidates; no signal

    def restart_now(self, id: str, plan: tuple[str, int, int, int]) -> ServiceStatus | None:
        """RESTART: from RUNNING, RECONNECTING or ERROR to RECONNECTING, a fresh window, any claim void, then plan."""
        d = self.d
        st = d.status.get(id)
        if st not in (S.RUNNING, S.RECONNECTING, S.ERROR):
            return st
        d.rst.pop(id, None)
        d.flap.discard(id)
        d.claim.pop(id, None)
        self.set_status(id, S.RECONNECTING)
        self.plan(id, *plan)
        return st

    def health_check(self, target: ServiceStatus) -> list[str]:
        d = self.d
        stale = [id for id, st in d.status.items() if st is S.RUNNING
                 and (id not in d.last or self.now - d.last[id] >= self.tmo(id))]
        for id in stale:
            self.set_status(id, target)
        return stale
