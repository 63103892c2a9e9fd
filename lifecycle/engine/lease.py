"""The fleet's tick: one recurring timer per process that holds or seeks the leader lease.

Each tick takes or renews the lease; in the leader it then asks the engine to act on what is
due (`act`), which says how long until the next thing is; the tick is armed for then, or for the
next renewal, whichever is sooner. So detection stays deadline-driven with one timer per process.

Nothing stops the tick: whatever a tick raises (an outage, an error the server answers, a bug)
is logged once per distinct cause (once per process, however many partitions' ticks see it:
`Outage`), the process stops calling itself leader, and the tick comes again after a backoff
that doubles up to the renewal interval. A leader whose lease may have
run out (it could not renew in time) is not the leader, whatever it last heard.

Threads and locks: ticks run on the watchdog thread (or in `run_pending`); the little state kept
here (leader, the armed tick, pokes made during a tick) is guarded by `_lock`.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ..errors import LifecycleError
from ..fleet import SharedRegistry
from ..timers import Timer
from ..watchdog import Watchdog
from .spread import Spread

__all__ = ["Leases", "Outage", "Ticker"]

log = logging.getLogger("lifecycle")

_RETRY_MIN = 0.05
# A leader's tick within this share of a renewal interval after its last renewal sweeps on that
# lease: a burst's deadlines fall due one after another, and a lease round trip before each of
# their sweeps was a sixth of a leader's CPU in one (the sweeps are fenced: a lost lease still shows).
_REUSE = 0.25


def owner_token() -> str:
    """Unique per process and manager (renewed after fork); host and pid make logs readable."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Outage:
    """What the ticks of one process's partitions log while they fail: each cause once, and one recovery.

    Every partition's tick meets the same cause when the server is down; it is logged by the
    first tick that meets it and by no other while any partition still fails with it, and "reachable
    again" is logged once every failing partition has recovered. Each ticker keeps its own
    backoff. Ticks run on the watchdog thread or in `run_pending`; `_lock` guards the map.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failing: dict[int, tuple[str, str]] = {}  # partition -> the cause its ticks last met
        self._since = 0.0

    def failed(self, partition: int, exc: Exception) -> None:
        """Partition's tick failed with `exc`: log it unless it already did, or another failing one met it."""
        cause = (type(exc).__name__, str(exc))
        with self._lock:
            if not self._failing:
                self._since = time.monotonic()
            before = self._failing.get(partition)
            self._failing[partition] = cause
            if cause == before or any(c == cause for p, c in self._failing.items() if p != partition):
                return
        if isinstance(exc, LifecycleError):  # the registry said what is wrong (unreachable, or refused)
            log.error("lifecycle: %s; the watchdog keeps trying (logged once per cause)", exc)
        else:
            log.error("lifecycle: the fleet's tick failed: %s: %s; the watchdog keeps trying "
                      "(logged once per cause)", *cause, exc_info=exc)

    def recovered(self, partition: int) -> None:
        """Partition's tick worked: once no partition fails any more, say how long the registry was out."""
        with self._lock:
            if self._failing.pop(partition, None) is None or self._failing:
                return
            since = self._since
        log.warning("lifecycle: the registry is reachable again after %.1f s", time.monotonic() - since)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        self._failing = {}


class Ticker:
    """Holds or seeks the lease on every tick; as leader calls `act(within) -> seconds until next`."""

    def __init__(self, registry: SharedRegistry, watchdog: Watchdog, timeout: float,
                 act: Callable[[Ticker, float], float], restore: Callable[[], None], *, partition: int = 0,
                 owner: str | None = None, outage: Outage | None = None) -> None:
        self.registry = registry
        self.partition = partition
        # A partitioned registry is told which partition's lease; a registry of one partition is asked as always.
        self.which: dict[str, Any] = {"partition": partition} if registry.partitions > 1 else {}
        self.ttl = float(getattr(registry, "lease_ttl_secs", 5.0))
        self.renew_every = self.ttl / 3
        self._timeout = timeout
        self._watchdog = watchdog
        self._act = act
        self._restore = restore
        self._lock = threading.Lock()
        self.owner = owner_token() if owner is None else owner
        self._leader = False
        self._lease_until = 0.0
        self._renewed = -math.inf  # when (monotonic) a renewal last made this process the leader
        self._generation: str | None = None
        self._timer: Timer | None = None
        self._ticking = False
        self._wake = math.inf  # a tick must come by then (monotonic): what pokes asked for during a tick
        self._failing = False  # while ticks fail (the backoff grows)
        self._outage = Outage() if outage is None else outage  # what is logged, shared by a process's partitions
        self._retry = _RETRY_MIN
        self.rebase = False  # the next sweep gives every service a fresh full timeout
        self._closed = False
        #: Asks for the lease on each tick when the namespace is partitioned (see `Leases`); None: asked plainly.
        self.spread: Spread | None = None
        #: Called on every tick of every member after the lease step (ownership of process-bound services).
        self.each: Callable[[], None] | None = None
        self.ticks = 0  # ticks that reached the registry (status and tests read it)
        self.draining = False  # sweeping a backlog of full batches (see `sweeps.drain`)
        self.bursts = 0  # sweeps that timed services out (see `sweeps.drain`)

    @property
    def leader(self) -> bool:
        """True while this process holds a lease it renewed less than a lease ago."""
        return self._leader and time.monotonic() < self._lease_until

    @property
    def claims(self) -> bool:
        """True if the last answer made this process the leader: worth asking the registry, which fences."""
        return self._leader

    def start(self) -> None:
        self._arm(0.0)

    def prime(self) -> None:
        """Learn the registry's generation marker before this process first registers a service.

        Otherwise a loss between that registration and the first tick (armed at once, but late
        on a loaded host) would go unnoticed: the tick would take the new marker for the first.
        """
        if self._generation is not None:
            return
        lease = self.registry.lease(self.owner, 0.0, **self.which)  # a peek: the lease stays with the ticks
        with self._lock:
            if self._generation is None:
                self._generation = lease.generation

    def poke(self, delay: float) -> None:
        """Make sure a tick comes within `delay` seconds (a deadline or an attempt this process just set).

        A poke during a tick is kept in `_wake` and honoured when the tick arms the next one.
        """
        if not self.leader:
            return
        when = time.monotonic() + max(0.0, delay)
        with self._lock:
            self._wake = min(self._wake, when)
            timer = self._timer
            if self._ticking or timer is None or timer.when <= when:
                return
            old = self._arm_locked(delay)
        if old is not None:
            old.cancel()

    def _arm(self, delay: float) -> None:
        with self._lock:
            old = self._arm_locked(delay)
        if old is not None:
            old.cancel()

    def _arm_locked(self, delay: float) -> Timer | None:
        if self._closed:
            return None
        old, self._timer = self._timer, self._watchdog.call_later(max(0.0, delay), self.tick)
        return old

    def tick(self) -> None:
        """Renew or take the lease; as leader, act on what is due; always arm the next tick."""
        if self._closed:
            return
        with self._lock:
            self._ticking, self._wake = True, math.inf
        delay = self.renew_every
        renewed = [False]
        try:
            delay = self._tick(renewed)
        except Exception as exc:
            delay = self._on_failure(exc, renewed[0])
        else:
            self._on_success()
        finally:
            with self._lock:
                self._ticking = False
                old = self._arm_locked(min(delay, self._wake - time.monotonic()))
            if old is not None:
                old.cancel()

    def _tick(self, renewed: list[bool]) -> float:
        asked = time.monotonic()
        if self._leader and not self._failing and asked - self._renewed < _REUSE * self.renew_every:
            renewed[0] = True  # the lease renewed moments ago (see `_REUSE`); the next tick renews it on time
            self.ticks += 1
            return min(self._act(self, min(self.renew_every, self._timeout)), self._renewed + self.renew_every - asked)
        spread = self.spread
        lease = self.registry.lease(self.owner, self.ttl, **self.which) if spread is None else spread.lease(self)
        renewed[0] = True
        self.ticks += 1
        if self._generation is not None and lease.generation != self._generation:
            self._restore()
        self._generation = lease.generation
        self.set_leader(lease.leader, asked)
        if lease.leader:
            self._renewed = asked
        if self.each is not None:
            self.each()
        if not self._leader:
            return self.renew_every
        # Another process may have set a deadline since our last sweep (a start, a revival): none
        # is sooner than one timeout from now, so sleeping at most that long never oversleeps it.
        return self._act(self, min(self.renew_every, self._timeout))

    def set_leader(self, leader: bool, asked: float = 0.0) -> None:
        if leader:
            # Our lease is valid at most ttl from when we asked: past that we start nothing.
            self._lease_until = asked + self.ttl
        if leader != self._leader:
            self._leader = leader
            part = f" (partition {self.partition})" if self.which else ""
            log.info("lifecycle: this process %s for the fleet%s (%s)",
                     "now acts" if leader else "no longer acts", part, self.owner)

    def _on_failure(self, exc: Exception, renewed: bool) -> float:
        """A tick failed: log a new cause once, back off; without a renewed lease, stop calling ourselves leader."""
        if not renewed:
            self.set_leader(False)
        # Heartbeats may have been refused meanwhile, and the server's deadlines kept running:
        # silence that overlaps a failure counts for nothing (the next sweep restarts every deadline).
        self.rebase = True
        self._retry = min(self._retry * 2, self.renew_every) if self._failing else _RETRY_MIN
        self._failing = True
        self._outage.failed(self.partition, exc)
        return self._retry

    def _on_success(self) -> None:
        if self._failing:
            self._failing = False
            self._outage.recovered(self.partition)

    def close(self) -> None:
        """Stop ticking and give the lease up, so another process takes over at once."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        if self._leader:
            self._leader = False
            try:
                self.registry.release(self.owner, **self.which)
            except Exception as exc:
                log.warning("lifecycle: could not release the fleet lease (%s); it expires on its own", exc)

    def after_fork_in_child(self, owner: str | None = None) -> None:
        """A forked child is a new member of the fleet: its own owner token, not the leader."""
        self._lock = threading.Lock()
        self.owner = owner_token() if owner is None else owner
        self._leader, self._renewed = False, -math.inf
        self._ticking, self._wake = False, math.inf  # a tick the parent was running does not run here
        self.draining = False


class Leases:
    """A process's ticks, one `Ticker` per partition of the registry, all under one owner token.

    Each partition has its own lease, so its own leader, fencing, failure backoff and outage
    credit: a partition whose server fails over or is down stops no other. With several, one
    `Spread` shares the leases out with the fleet's other members (engine/spread.py). With one
    partition this is one `Ticker`, as it always was.
    """

    def __init__(self, registry: SharedRegistry, watchdog: Watchdog, timeout: float,
                 act: Callable[[Ticker, float], float], restore: Callable[[], None]) -> None:
        self.owner = owner_token()
        count = registry.partitions
        self.outage = Outage()  # a server that is down is logged once, not once per partition
        self.tickers = [Ticker(registry, watchdog, timeout, act, restore, partition=p, owner=self.owner,
                               outage=self.outage) for p in range(count)]
        self._of = registry.partition_of
        #: How this process's tickers share the partitions' leases out with the fleet (None: one partition).
        self.spread = Spread(registry, self.tickers, self.outage) if count > 1 else None
        for ticker in self.tickers:
            ticker.spread = self.spread
        first = self.tickers[0]
        self.ttl, self.renew_every = first.ttl, first.renew_every

    @property
    def each(self) -> Callable[[], None] | None:
        """Called on each tick of partition 0's ticker (once per tick interval): ownership of process-bound services."""
        return self.tickers[0].each

    @each.setter
    def each(self, call: Callable[[], None] | None) -> None:
        self.tickers[0].each = call

    @property
    def leader(self) -> bool:
        """True while this process holds, and renewed in time, the lease of at least one partition."""
        return any(ticker.leader for ticker in self.tickers)

    @property
    def claims(self) -> bool:
        """True if the last answer of any partition made this process its leader."""
        return any(ticker.claims for ticker in self.tickers)

    @property
    def ticks(self) -> int:
        """Ticks that reached the registry, over every partition."""
        return sum(ticker.ticks for ticker in self.tickers)

    @property
    def draining(self) -> bool:
        """True while a partition's tick sweeps a backlog: its own log entries can wait (see `sweeps.drain`)."""
        return any(ticker.draining for ticker in self.tickers)

    @property
    def bursts(self) -> int:
        """Sweeps that timed services out, over every partition (the log's reading waits after each)."""
        return sum(ticker.bursts for ticker in self.tickers)

    def of(self, id: str) -> Ticker:
        """The ticker of the partition holding service `id`."""
        return self.tickers[self._of(id)] if len(self.tickers) > 1 else self.tickers[0]

    def start(self) -> None:
        for ticker in self.tickers:
            ticker.start()

    def prime(self, id: str) -> None:
        """Know the generation of the partition of service `id` before registering it (see `Ticker.prime`)."""
        self.of(id).prime()

    def poke(self, delay: float, id: str | None = None) -> None:
        """A tick within `delay` s in the partition of `id` (None: in every partition this process leads)."""
        for ticker in self.tickers if id is None else [self.of(id)]:
            ticker.poke(delay)

    def close(self) -> None:
        for ticker in self.tickers:
            ticker.close()
        if self.spread is not None:
            self.spread.leave(self.owner)

    def after_fork_in_child(self) -> None:
        self.owner = owner_token()
        self.outage.after_fork_in_child()
        if self.spread is not None:
            self.spread.after_fork_in_child()
        for ticker in self.tickers:
            ticker.after_fork_in_child(self.owner)
