"""Spreads a partitioned namespace's leaders over the fleet's live members: about P/M partitions each.

Without it the first process to tick takes every free lease, so one process leads every partition
and a burst of timeouts lands on its CPU alone. With it every member publishes, with its presence,
how many partitions it leads (`SharedRegistry.members`: once per tick interval, and as soon as
that number changes), and learns the fewest any other live member leads. Then:

- A member leading no more than that fewest takes a free lease at once. One leading more asks
  politely (`Lease.free`: the lease is left free) and defers one tick, so a member leading fewer
  takes it first; still free on its next tick, it takes it whatever it leads.
- A member leading two or more over a settled member (one that renewed its presence a tick after
  it came) gives one lease up gracefully, at most one per tick interval, and does not take that
  one back for two ticks: the member leading fewer picks it up. So the counts settle within one of each other
  (ceil(P/M) at most), and heal as members join or leave (a closed member withdraws its
  presence; a killed one's lapses after a lease).

Liveness never waits on the spread. A dead leader's partition is led again within the lease plus
two ticks (a tick is a third of the lease): its lease runs out, the next tick of every member sees
it free, and at the latest on the tick after (the deferral) someone takes it. A graceful hand-over
leaves a partition without a leader for at most two ticks (one when a member leading fewer is
there to take it): its deadlines keep running on the store's clock, so no timeout is false; the
next sweep comes within the lease of the last, the sweep's grace, so no outage credit is given
(at worst, three ticks, right at the grace, it may be: every deadline then starts afresh, which
delays a timeout and never makes one). Every hand-over is a new lease, fenced as any other. When
the members' record cannot be read the member takes every free lease, as without spreading. With
one partition nothing of this runs.

Threads: ticks run on the watchdog thread (or in `run_pending`); `_lock` guards the state, never
held across a call to the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..fleet import Lease, SharedRegistry

if TYPE_CHECKING:
    from .lease import Outage, Ticker

__all__ = ["Spread"]

log = logging.getLogger("lifecycle")

_MEMBERS = -1  # the members' record, in `Outage`'s map of failing partitions


class Spread:
    """The lease requests of one process's tickers over a partitioned namespace (`Ticker.spread`)."""

    def __init__(self, registry: SharedRegistry, tickers: Sequence[Ticker], outage: Outage) -> None:
        self._registry = registry
        self._tickers = tickers
        self._outage = outage
        first = tickers[0]
        self.ttl, self.tick = first.ttl, first.renew_every
        self._lock = threading.Lock()
        self._fewest: int | None = None  # the fewest partitions another live member leads; None: none known
        self._settled: int | None = None  # the same over the settled members (`_sheds`)
        self._published: int | None = None  # what this member last published it leads
        self._refreshed = -float("inf")  # when (monotonic) it last did
        self._seen: dict[int, int] = {}  # partition -> ticks that found it free and deferred (below 0: shed by us)
        self._shed = -float("inf")  # when this member last gave a lease up

    @property
    def leads(self) -> int:
        """How many partitions this member leads (by the last answers)."""
        return sum(ticker.claims for ticker in self._tickers)

    def lease(self, ticker: Ticker) -> Lease:
        """Ticker's lease request of this tick: renew or take, politely, or give the lease up to spread the leaders."""
        p, owner = ticker.partition, ticker.owner
        self._refresh(owner, self.leads)
        shed = self._sheds(ticker) and self._refresh(owner, self.leads, force=True) and self._sheds(ticker)
        with self._lock:
            fewest, settled, leads = self._fewest, self._settled, self.leads
            polite = shed or (not ticker.claims and fewest is not None and leads > fewest and self._seen.get(p, 0) < 1)
            if shed:
                self._shed, self._seen[p] = time.monotonic(), -1  # not taken back by us for two ticks
        if shed:
            log.info("lifecycle: this process gives partition %d up to spread the fleet's leaders (it leads %d, "
                     "another member %s)", p, leads, settled)
            self._registry.release(owner, **ticker.which)
        lease = self._registry.lease(owner, ticker.ttl, polite=polite, **ticker.which)
        with self._lock:
            if lease.free:
                self._seen[p] = self._seen.get(p, 0) + 1
            else:
                self._seen.pop(p, None)
        self._refresh(owner, self.leads - ticker.claims + lease.leader)  # a change is published at once
        return lease

    def _sheds(self, ticker: Ticker) -> bool:
        """Give ticker's lease up? It leads two or more over a settled member, and gave none up this tick interval.

        Only to a member that renewed its presence a tick after it came: one that died as it joined
        (a worker crashing on boot, again and again) leaves a record that would draw leases to the dead.
        """
        with self._lock:
            settled = self._settled
            return (ticker.claims and settled is not None and self.leads >= settled + 2
                    and time.monotonic() - self._shed >= self.tick)

    def _refresh(self, owner: str, leads: int, *, force: bool = False) -> bool:
        """Publish presence and `leads` once per tick interval, when `leads` changed, or if `force`; learn the fewest.

        False when the members' record could not be read (then the fewest is unknown, and it is
        asked again a tick later: a server that does not answer holds no partition's tick up twice).
        """
        now = time.monotonic()
        with self._lock:
            failed = self._published is None  # the last call failed (or none was made yet: then it is not recent)
            if now - self._refreshed < 0.9 * self.tick and (failed or (not force and leads == self._published)):
                return not failed
            self._refreshed = now
        try:
            members = self._registry.members(owner, self.ttl, leads, self.tick)
        except Exception as exc:  # the members' record unreadable: take free leases as without spreading
            with self._lock:
                self._fewest = self._settled = self._published = None
            self._outage.failed(_MEMBERS, exc)
            return False
        self._outage.recovered(_MEMBERS)
        with self._lock:
            self._fewest, self._settled, self._published = members.fewest, members.settled, leads
        return True

    def leave(self, owner: str) -> None:
        """Withdraw this member's presence (it is closing), so the others stop counting it at once."""
        try:
            self._registry.members(owner, 0.0, 0)
        except Exception as exc:
            log.warning("lifecycle: could not withdraw from the fleet's members (%s); it lapses on its own", exc)

    def after_fork_in_child(self) -> None:
        """A forked child is a new member: it has published nothing and leads nothing."""
        self._lock = threading.Lock()
        self._fewest = self._settled = self._published = None
        self._refreshed = -float("inf")
        self._seen, self._shed = {}, -float("inf")
