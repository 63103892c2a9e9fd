"""Ownership of process-bound services in a fleet: one live member spawns, respawns and stops each child.

A STDIO child (or a socket one process holds) cannot move between processes, so in a fleet each
such service has an owner recorded in the store with a lease of its own (`OwnerStore.own`),
fenced like the leader's: every member that started or declared the service is a candidate;
on each tick a candidate asks the store, and the one holding the ownership spawns the child
(at once on a fresh grant of a RUNNING service, or as the reconnect attempt the store claimed
for it). Any member still records heartbeats, reads status and stops the service; a stop made
elsewhere reaches the owner through the store (the service is gone or stopping at its next
tick), and it ends its child.

Hand-over: `close` (a graceful shutdown) ends each child first, then gives the ownership up, so
another candidate takes over at its next tick; a dead owner's ownership runs out after its TTL.
An owner whose ownership may have lapsed (it could not renew in time: paused, say) ends its child
before anything else and records none of its heartbeats: two children of one service never live.

Locking: `_lock` guards the candidates; connector calls and store calls run outside it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable

from ..connector import Hooks
from ..errors import LifecycleError
from ..model import ExtensionService, ServiceId
from ..registry import Owned, OwnerStore
from .runner import Executor

__all__ = ["Owners", "process_bound"]

log = logging.getLogger("lifecycle")

Spawn = Callable[[ExtensionService, Hooks, int], None]  # (service, hooks, attempt or 0 for a takeover)


def process_bound(hooks: Hooks | None, service: ExtensionService) -> bool:
    """True when the service's connection lives in the process that opened it (a STDIO child)."""
    connector = getattr(hooks.connect, "__self__", None) if hooks is not None else None
    pick = getattr(connector, "connector_for", None)
    if callable(pick):
        connector = pick(service)
    return bool(getattr(connector, "process_bound", False))


class _Bound:
    """A process-bound service this process may own: what it needs to spawn it, and what it holds."""

    __slots__ = ("id", "service", "hooks", "held", "until", "epoch")

    def __init__(self, service: ExtensionService, hooks: Hooks) -> None:
        self.id = service.id
        self.service = copy.deepcopy(service)
        self.hooks = hooks
        self.held = False  # this process may hold a child of it (spawned, not yet ended)
        self.until = 0.0  # monotonic: our ownership is valid at most until then
        self.epoch = 0


class Owners:
    """The process-bound services this member is a candidate for; `tick` asserts or gives up each."""

    def __init__(self, store: OwnerStore, executor: Executor, token: Callable[[], str], ttl: float,
                 tick: float, spawn: Spawn) -> None:
        self._store = store
        self._executor = executor
        self._token = token
        self.ttl = ttl
        self._tick = tick
        self._spawn = spawn
        self._lock = threading.Lock()
        self._bound: dict[str, _Bound] = {}

    def __contains__(self, id: object) -> bool:
        return id in self._bound

    def add(self, service: ExtensionService, hooks: Hooks, *, spawned: bool) -> None:
        """Become a candidate; `spawned`: this process just started the child as the owner."""
        with self._lock:
            bound = self._bound.setdefault(service.id, _Bound(service, hooks))
            if spawned:
                bound.held = True

    def take(self, service: ExtensionService, hooks: Hooks) -> bool:
        """Before spawning a new service's first child: own it. True if this process may spawn it."""
        bound = _Bound(service, hooks)
        answer = self._ask(bound)
        if answer is None or answer.code != "owner":
            return False
        with self._lock:
            self._bound[service.id] = bound
        return True

    def lapsed(self, id: str) -> bool:
        """True when this process holds a child of `id` but its ownership may have run out (heartbeats dropped)."""
        bound = self._bound.get(id)
        return bound is not None and bound.held and time.monotonic() >= bound.until

    def held(self, id: str) -> bool:
        """True when this process owns `id` now and holds its child (it pings it)."""
        bound = self._bound.get(id)
        return bound is not None and bound.held and time.monotonic() < bound.until

    def tick(self) -> None:
        """Renew or seek ownership of every candidate; act on what the store answers."""
        with self._lock:
            bounds = list(self._bound.values())
        for bound in bounds:
            try:
                self._assert(bound)
            except Exception:
                log.exception("lifecycle: asserting the ownership of %r failed; tried again next tick",
                              bound.service.name)

    def _ask(self, bound: _Bound) -> Owned | None:
        asked = time.monotonic()
        try:
            answer = self._store.own(bound.id, self._token(), self.ttl, self._tick)
        except LifecycleError as exc:
            log.debug("lifecycle: ownership of %s not renewed: %s", bound.id, exc)
            return None  # an outage: the tick logs it once; our lease runs out on its own
        if answer.code == "owner":
            bound.until, bound.epoch = asked + self.ttl, answer.epoch
        return answer

    def _assert(self, bound: _Bound) -> None:
        if self.lapsed(bound.id):
            # Paused or cut off past our ownership: another member may own it now. End ours first.
            log.warning("lifecycle: ownership of %r (%s) lapsed; ending its child here", bound.service.name, bound.id)
            self.end(bound)
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
        if answer.attempt:
            bound.held = True
            self._spawn(bound.service, bound.hooks, answer.attempt)
        elif answer.fresh and answer.status == "running":
            log.info("lifecycle: this process now owns %r (%s), epoch %d; spawning it",
                     bound.service.name, bound.id, answer.epoch)
            bound.held = True
            self._spawn(bound.service, bound.hooks, 0)

    def end(self, bound: _Bound) -> None:
        """End this process's child of the service (no error is reported for it)."""
        if not bound.held:
            return
        bound.held = False
        self._executor.disconnect(bound.hooks, bound.service, bound.service.transport.timeout_secs,
                                  f"{bound.service.name!r} ({bound.id})")

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
        if bound is not None and self.lapsed(id):
            self._executor.run(lambda: self.end(bound))

    def close(self) -> list[ServiceId]:
        """Graceful hand-over: end every child, then give each ownership up; the ids handed over."""
        with self._lock:
            bounds, self._bound = list(self._bound.values()), {}
        handed = []
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
        return handed

    def after_fork_in_child(self) -> None:
        """A forked child holds none of the parent's children and owns nothing."""
        self._lock = threading.Lock()
        for bound in self._bound.values():
            bound.held = False
            bound.until = 0.0
