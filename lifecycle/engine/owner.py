"""Ownership of process-bound services in a fleet: one live member spawns, respawns and stops each child.

A STDIO child (or a socket one process holds) cannot move between processes, so in a fleet each
such service has an owner recorded in the store with a lease of its own (`OwnerStore.own`),
fenced like the leader's: every member that started or declared the service is a candidate;
on each tick a candidate asks the store, and the one holding the ownership spawns the child
(at once on a fresh grant of a RUNNING service, or as the reconnect attempt the store claimed
for it). Any member still records heartbeats, reads status and stops the service; a stop made
elsewhere reaches the owner through the store (the service is gone or stopping at its next
tick), and it ends its child.

Hand-over: `close` (a graceful shutdown) ends each child first, then gives the ownership up; the
store logs the give-up (`Released`) in the same step, and every other candidate that reads it in the
fleet log (`nudge`) asserts that service's ownership at once, not at its next tick; so does a member
as it becomes a candidate (`add`), in case the service was given up before it could read that.
A dead owner's ownership runs out after its TTL.
A new owner spawns at once when the service is RUNNING or ERROR (a child that failed for good
gets a fresh start on another member), or runs the attempt the store claims for it.
An owner whose ownership may have lapsed (it could not renew in time: paused, say) ends its child
before anything else and records none of its heartbeats or errors: two children of one service
never live. The owner records itself and its child (host, pids, /proc start times) with the
ownership; a new owner on the same host ends a paused earlier owner's leftover child, verified by
its start time, before it spawns (leftover.py).

Locking: `nudge` runs on the log reader's thread: it only arms a watchdog timer, whose action hands
the step to the executor (a take-over spawns: a connector call). `_lock` guards the candidates and
each one's `held` flag (the one caller that clears it ends the child: a report and the tick may find
a lapse together); connector and store calls run outside it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from ..connector import Hooks
from ..errors import InvalidState, LifecycleError
from ..events import LifecycleEvent, Stopped
from ..model import ExtensionService, ServiceId
from ..registry import Owned, OwnerStore, Released
from ..watchdog import Watchdog
from .base import error_text
from .leftover import end_leftovers, start_time
from .runner import Executor, Outcome

__all__ = ["Owners", "Spawner", "process_bound"]

log = logging.getLogger("lifecycle")



class Spawner(NamedTuple):
    """What the engine lends the owners: the store's copy of a service, running a claimed attempt, an error report."""

    lookup: Callable[[str], ExtensionService | None]
    attempt: Callable[[ExtensionService, Hooks, int], None]  # runs claimed attempt k and reports its outcome
    error: Callable[[str, str], None]  # handle_error: a spawn after a takeover failed


def _connector(hooks: Hooks | None, service: ExtensionService) -> object:
    connector = getattr(hooks.connect, "__self__", None) if hooks is not None else None
    pick = getattr(connector, "connector_for", None)
    return pick(service) if callable(pick) else connector


def process_bound(hooks: Hooks | None, service: ExtensionService) -> bool:
    """True when the service's connection lives in the process that opened it (a STDIO child)."""
    return bool(getattr(_connector(hooks, service), "process_bound", False))


class _Bound:
    """A process-bound service this process may own: what it needs to spawn it, and what it holds."""

    __slots__ = ("id", "service", "hooks", "held", "until", "epoch", "child")

    def __init__(self, service: ExtensionService, hooks: Hooks) -> None:
        self.id = service.id
        self.service = copy.deepcopy(service)
        self.hooks = hooks
        self.held = False  # this process may hold a child of it (spawned, not yet ended)
        self.until = 0.0  # monotonic: our ownership is valid at most until then
        self.epoch = 0
        self.child: tuple[int, str] = (0, "")  # the live child's pid and identity, as last recorded


class Owners:
    """The process-bound services this member is a candidate for; `tick` asserts or gives up each."""

    def __init__(self, store: OwnerStore, executor: Executor, token: Callable[[], str], ttl: float,
                 tick: float, spawn: Spawner, host: str, watchdog: Watchdog) -> None:
        self.host = host
        self._watchdog = watchdog
        self._store = store
        self._executor = executor
        self._token = token
        self.ttl = ttl
        self._tick = tick
        self._spawn = spawn
        self._lock = threading.Lock()
        self._bound: dict[str, _Bound] = {}
        self._me = (0, "")  # this process's pid and its part of the record ('host,pid,start')

    def __contains__(self, id: object) -> bool:
        return id in self._bound

    def add(self, service: ExtensionService, hooks: Hooks, *, spawned: bool) -> None:
        """Become a candidate; `spawned`: this process just started the child as the owner (recorded at once)."""
        with self._lock:
            bound = self._bound.setdefault(service.id, _Bound(service, hooks))
            if spawned:
                bound.held = True
        if spawned:
            self.record(service.id)
        else:
            # A new candidate asks at once rather than at its first tick: the owner may have given the
            # service up before this member was there to read it (the last one of its workers recycled).
            self._wake(service.id)

    def take(self, service: ExtensionService, hooks: Hooks) -> bool:
        """Before spawning a new service's first child: own it. True if this process may spawn it."""
        bound = _Bound(service, hooks)
        answer = self._ask(bound)
        if answer is None or answer.code != "owner":
            return False
        self._leftover(bound, answer.before)
        with self._lock:
            self._bound[service.id] = bound
        return True

    def lapsed(self, id: str) -> bool:
        """True when this process holds a child of `id` but its ownership may have run out (heartbeats dropped)."""
        bound = self._bound.get(id)
        return bound is not None and bound.held and time.monotonic() >= bound.until

    def check_live(self, id: str, what: str) -> None:
        """Refuse a report of `id`'s child (and end it) when our ownership of it may have lapsed."""
        if self.lapsed(id):
            self.fence(id)
            raise InvalidState(f"{what} of service {id} dropped: this process's ownership of it lapsed")

    def held(self, id: str) -> bool:
        """True when this process owns `id` now and holds its child (it pings it)."""
        bound = self._bound.get(id)
        return bound is not None and bound.held and time.monotonic() < bound.until

    def tick(self) -> None:
        """Renew or seek ownership of every candidate; act on what the store answers."""
        with self._lock:
            bounds = list(self._bound.values())
        for bound in bounds:
            self._step(bound)

    def nudge(self, events: list[LifecycleEvent]) -> None:
        """Fleet log entries: a candidate's service given up (or stopped) elsewhere is asserted at once.

        Called on the log reader's thread: it arms a timer at 0 on the watchdog, which hands the
        step to the executor (it may spawn a child), so no reader waits on a connector.
        """
        for id in {e.service_id for e in events if isinstance(e, (Released, Stopped)) and e.service_id in self}:
            self._wake(id)

    def _wake(self, id: str) -> None:
        """Assert `id`'s ownership as soon as the watchdog runs a timer: the step itself on the executor."""
        self._watchdog.call_later(0.0, self._executor.run, lambda: self.step(id))

    def step(self, id: str) -> None:
        """Assert the ownership of candidate `id` now (a no-op once it is no candidate)."""
        bound = self._bound.get(id)
        if bound is not None:
            self._step(bound)

    def _step(self, bound: _Bound) -> None:
        try:
            self._assert(bound)
        except Exception:
            log.exception("lifecycle: asserting the ownership of %r failed; tried again next tick",
                          bound.service.name)

    def record(self, id: str) -> None:
        """After a spawn: record the new child with our ownership at once (a new owner may have to end it)."""
        bound = self._bound.get(id)
        if bound is None or not bound.held:
            return
        answer = self._ask(bound)
        if answer is not None and answer.code != "owner":
            self.end(bound)  # we lost it while spawning: someone else spawns its child

    def _identity(self, bound: _Bound) -> str:
        """What we hold of `bound`, as the store records it with our ownership: 'host,pid,start,child,start'.

        This process, and its live child if any (see leftover.py): the record is written at the
        grant itself, before any spawn, so a child of ours is never one a new owner cannot find.
        """
        pid = getattr(_connector(bound.hooks, bound.service), "pid", None)
        live = pid(bound.id) if bound.held and callable(pid) else None
        if not isinstance(live, int):
            return f"{self._owner()},,"
        if bound.child[0] != live:
            bound.child = (live, f"{live},{start_time(live) or ''}")
        return f"{self._owner()},{bound.child[1]}"

    def _owner(self) -> str:
        me = os.getpid()
        if self._me[0] != me:  # computed once per process (a forked child is another one)
            self._me = (me, f"{self.host},{me},{start_time(me)}")
        return self._me[1]

    def _leftover(self, bound: _Bound, before: str) -> None:
        """On a fresh grant: end what an earlier owner left on this host (paused, say) before spawning."""
        for pid in end_leftovers(before, self.host, bound.id):
            log.warning("lifecycle: ended process %d, a child of %r left by its earlier owner on this host, "
                        "before spawning a new one", pid, bound.service.name)

    def _ask(self, bound: _Bound) -> Owned | None:
        asked = time.monotonic()
        try:
            answer = self._store.own(bound.id, self._token(), self.ttl, self._tick, self._identity(bound))
        except LifecycleError as exc:
            log.debug("lifecycle: ownership of %s not renewed: %s", bound.id, exc)
            return None  # an outage: the tick logs it once; our lease runs out on its own
        if answer.code == "owner":
            bound.until, bound.epoch = asked + self.ttl, answer.epoch
        return answer

    def _assert(self, bound: _Bound) -> None:
        if self.lapsed(bound.id) and self._release(bound):
            # Paused or cut off past our ownership: another member may own it now. End ours first.
            self._lapse(bound)
            self._end_child(bound)
        answer = self._ask(bound)
        if answer is None:
            return
        if answer.code in ("missing", "stopping"):
            # Stopped (maybe by another member): the owner ends its child; a gone one is no candidate.
            self.end(bound)
            if answer.code == "missing":
                with self._lock:
                    if self._bound.get(bound.id) is bound:
                        del self._bound[bound.id]
            return
        if answer.code != "owner":
            if bound.held:
                self.end(bound)  # fenced: someone else owns it now
            return
        if answer.fresh:
            self._leftover(bound, answer.before)
        if answer.attempt:
            if answer.fresh:  # taken over while it reconnects (it timed out between two owners)
                log.info("lifecycle: this process now owns %r (%s), epoch %d; running its reconnect attempt %d",
                         bound.service.name, bound.id, answer.epoch, answer.attempt)
            bound.held = True
            self._spawn.attempt(self._spawn.lookup(bound.id) or bound.service, bound.hooks, answer.attempt)
        elif answer.fresh and answer.status in ("running", "error"):
            log.info("lifecycle: this process now owns %r (%s), epoch %d; spawning it",
                     bound.service.name, bound.id, answer.epoch)
            bound.held = True
            self._take_over(bound)

    def _take_over(self, bound: _Bound) -> None:
        """Spawn the child of a service we now own (RUNNING, or ERROR: a fresh start); its beats keep it alive."""
        current = self._spawn.lookup(bound.id) or bound.service

        def spawned(error: BaseException | None) -> bool:
            if error is None:
                self.record(bound.id)
            else:
                with contextlib.suppress(LifecycleError):
                    self._spawn.error(bound.id, f"spawning it in its new owner failed: {error_text(error)}")
            return True

        self._executor.connect(Outcome(), bound.hooks, current, current.transport.timeout_secs, spawned, lambda: True)

    def end(self, bound: _Bound) -> None:
        """End this process's child of the service (no error is reported for it)."""
        if self._release(bound):
            self._end_child(bound)

    def _release(self, bound: _Bound) -> bool:
        """Mark `bound`'s child as no longer held; True for the one caller that found it held (it ends it)."""
        with self._lock:
            held, bound.held = bound.held, False
        return held

    def _end_child(self, bound: _Bound) -> None:
        self._executor.disconnect(bound.hooks, bound.service, bound.service.transport.timeout_secs,
                                  f"{bound.service.name!r} ({bound.id})")

    @staticmethod
    def _lapse(bound: _Bound) -> None:
        log.warning("lifecycle: ownership of %r (%s) lapsed; ending its child here", bound.service.name, bound.id)

    def forget(self, id: str) -> None:
        """The service was stopped through this process: its child is ended by the stop."""
        with self._lock:
            bound = self._bound.pop(id, None)
        if bound is not None:
            bound.held = False
            with contextlib.suppress(LifecycleError):
                self._store.disown(id, self._token())

    def fence(self, id: str) -> None:
        """End the child of `id` now: our ownership lapsed (called when one of its heartbeats was dropped)."""
        bound = self._bound.get(id)
        if bound is not None and self.lapsed(id) and self._release(bound):
            self._lapse(bound)  # said once, whichever of a report or the tick finds it first
            self._executor.run(lambda: self._end_child(bound))

    def close(self) -> list[ServiceId]:
        """Graceful hand-over: end every child, then give each ownership up; the ids handed over."""
        with self._lock:
            bounds, self._bound = list(self._bound.values()), {}
        handed: list[ServiceId] = []
        for bound in bounds:
            was_held = bound.held
            try:
                self.end(bound)  # first: at no moment two children of one service
            finally:
                try:
                    self._store.disown(bound.id, self._token())
                except Exception as exc:
                    log.warning("lifecycle: could not give up the ownership of %r (%s); it runs out on its own",
                                bound.service.name, exc)
            if was_held:
                handed.append(bound.id)
        if handed:
            log.info("lifecycle: %d process-bound service(s) handed over to the fleet: %s", len(handed),
                     ", ".join(handed))
        return handed

    def after_fork_in_child(self) -> None:
        """A forked child holds none of the parent's children and owns nothing."""
        self._lock = threading.Lock()
        for bound in self._bound.values():
            bound.held = False
            bound.until = 0.0
