"""Deliver events: to subscriptions, then to each blinker receiver in isolation.

blinker's own `send` stops at the first receiver that raises; this loop logs the error and
goes on, closes and reports what an async receiver returns (there is no event loop to run it),
and honours `signal.muted()`.
Callers must not hold any manager lock: receivers may call back into the manager.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import sys
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from blinker import ANY, NamedSignal

from . import signals
from ._forksafe import hold_across_fork
from .events import LifecycleEvent
from .subscription import Subscription

__all__ = ["SIGNALS", "Dispatcher", "ScopedReceiver"]

log = logging.getLogger("lifecycle")

SIGNALS: dict[str, NamedSignal] = {
    name: getattr(signals, name)
    for name in (
        "service_started",
        "service_stopped",
        "status_changed",
        "heartbeat_received",
        "heartbeat_timeout",
        "reconnecting",
        "reconnected",
        "reconnect_failed",
        "service_error",
        "service_flapping",
    )
}


class _Generation:
    """Bumped whenever a receiver is connected to or disconnected from a lifecycle signal."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def bump(self, *_args: Any, **_kwargs: Any) -> None:
        with self._lock:
            self.value += 1


def _key(receiver: object) -> Hashable:
    """What identifies a receiver across calls (a bound method is made anew on each attribute access)."""
    if inspect.ismethod(receiver):
        return id(receiver.__self__), id(receiver.__func__)
    return id(receiver)


class _Order:
    """When each receiver was first connected: receivers run in that order.

    blinker keeps a signal's receivers in a set of their ids, so its own order follows memory
    addresses and changes from run to run. A stamp goes with its receiver (or the object of a
    bound method) when that is collected; one that cannot be weakly referenced loses it when
    explicitly disconnected, so a new receiver that reuses its id is not ordered by the old one.
    """

    def __init__(self) -> None:
        self._next = itertools.count()
        self._stamps: dict[Hashable, int] = {}
        self._pinned: set[Hashable] = set()  # stamped receivers that cannot be weakly referenced

    def connected(self, _signal: object, *, receiver: object, **_kwargs: Any) -> None:
        key = _key(receiver)
        if key in self._stamps:
            return
        self._stamps[key] = next(self._next)
        try:
            weakref.finalize(receiver.__self__ if inspect.ismethod(receiver) else receiver, self._stamps.pop, key, None)
        except TypeError:
            self._pinned.add(key)

    def disconnected(self, _signal: object, *, receiver: object, **_kwargs: Any) -> None:
        key = _key(receiver)
        if key in self._pinned:
            self._pinned.discard(key)
            self._stamps.pop(key, None)

    def of(self, receiver: object) -> float:
        """The receiver's stamp; one connected before this module was imported sorts last."""
        return self._stamps.get(_key(receiver), math.inf)


_generation = _Generation()
_order = _Order()
hold_across_fork(lambda: [_generation._lock], lambda: setattr(_generation, "_lock", threading.Lock()))
for _signal in SIGNALS.values():
    _signal.receiver_connected.connect(_order.connected, weak=False)
    _signal.receiver_connected.connect(_generation.bump, weak=False)
    _signal.receiver_disconnected.connect(_order.disconnected, weak=False)
    _signal.receiver_disconnected.connect(_generation.bump, weak=False)


class Dispatcher:
    """Delivers one sender's events; caches which receivers listen to it, per signal.

    blinker's `receivers_for` rebuilds the receiver set on every send; the cache is rebuilt
    only when a receiver was connected or disconnected since (blinker's public
    `receiver_connected`/`receiver_disconnected` signals say so). Entries are weak references
    where the receiver allows one, so caching never keeps a weakly connected receiver alive.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, tuple[Any, ...]]] = {}

    def dispatch(self, sender: object, events: Iterable[LifecycleEvent],
                 subscriptions: tuple[Subscription, ...]) -> None:
        """Send each event to `subscriptions` and to the receivers of its signal for `sender`."""
        if sys.is_finalizing():
            return
        for event in events:
            for subscription in subscriptions:
                subscription._put(event)
            signal = SIGNALS[event.signal_name]
            if not signal.receivers or signal.is_muted:
                continue
            cached = self._cache.get(event.signal_name)
            if cached is None or cached[0] != _generation.value:
                cached = self._cache[event.signal_name] = (_generation.value, _references(signal, sender))
            for reference in cached[1]:
                if isinstance(reference, weakref.ref):
                    receiver = reference()
                    if receiver is None:  # collected: blinker drops it, so must we
                        _generation.bump()
                        continue
                else:
                    receiver = reference
                try:
                    result = event._call(receiver, sender)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException:  # CancelledError and friends are a receiver's bug too
                    log.exception("lifecycle: receiver %r of %s raised; other receivers still run",
                                  receiver, signal.name)
                    continue
                if result is not None:
                    _check_result(result, receiver, signal)


class ScopedReceiver:
    """What `lifecycle.connect` connects to blinker: one receiver for one sender (or every sender).

    It is connected for every sender, so blinker never keeps sender bookkeeping for it (whose
    cleanup, run by the garbage collector in any thread, races blinker's own disconnect), and
    each `connect` gets its own object, so disconnecting one connection leaves the others. The
    sender is held weakly where it allows, so a connection never keeps a manager alive.
    """

    __slots__ = ("_strong", "_weak", "receiver", "__weakref__")

    def __init__(self, receiver: Callable[..., Any], sender: object) -> None:
        self.receiver = receiver
        self._strong: object = sender  # ANY, or a sender that cannot be weakly referenced
        self._weak: weakref.ref[Any] | None = None
        if sender is not ANY:
            try:
                self._weak = weakref.ref(sender)
                self._strong = None
            except TypeError:
                pass

    def hears(self, sender: object) -> bool:
        """True if the receiver listens to `sender` (never once a weakly held sender is gone)."""
        if self._weak is None:
            return self._strong is ANY or self._strong is sender
        target = self._weak()
        return target is not None and target is sender

    def __call__(self, sender: object, /, **kwargs: Any) -> Any:
        # Reached only through blinker's own `send`; `Dispatcher` calls the receiver directly.
        if self.hears(sender):
            return self.receiver(sender, **kwargs)
        return None

    def __repr__(self) -> str:
        return f"<ScopedReceiver {self.receiver!r}>"


def _references(signal: NamedSignal, sender: object) -> tuple[Any, ...]:
    """The receivers of `signal` for `sender`, in the order they were connected, weakly referenced where possible."""
    found: list[Any] = []
    for receiver in sorted(signal.receivers_for(sender), key=_order.of):
        if isinstance(receiver, ScopedReceiver):
            if receiver.hears(sender):
                # Held strongly by blinker until disconnected, which renews the cache.
                found.append(receiver.receiver)
            continue
        try:
            found.append(weakref.WeakMethod(receiver) if inspect.ismethod(receiver) else weakref.ref(receiver))
        except TypeError:  # not weak-referenceable, so blinker holds it strongly
            found.append(receiver)
    return tuple(found)


def _check_result(result: object, receiver: Any, signal: NamedSignal) -> None:
    """An async receiver shows itself by returning an awaitable: close it unrun and say so."""
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()
        log.error("lifecycle: skipped async receiver %r of %s; receivers must be plain functions",
                  receiver, signal.name)
