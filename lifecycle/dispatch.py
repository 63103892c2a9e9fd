"""Deliver events: to subscriptions, then to each blinker receiver in isolation.

blinker's own `send` stops at the first receiver that raises; this loop logs the error and
goes on, closes and reports what an async receiver returns (there is no event loop to run it),
and honours `signal.muted()`.
Callers must not hold any manager lock: receivers may call back into the manager.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from blinker import NamedSignal
from blinker._utilities import make_id

from . import signals
from ._forksafe import hold_across_fork
from .events import LifecycleEvent
from .subscription import Subscription

__all__ = ["SIGNALS", "Dispatcher"]

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


_generation = _Generation()
hold_across_fork(lambda: [_generation._lock], lambda: setattr(_generation, "_lock", threading.Lock()))
for _signal in SIGNALS.values():
    _signal.receiver_connected.connect(_generation.bump, weak=False)
    _signal.receiver_disconnected.connect(_generation.bump, weak=False)


class Dispatcher:
    """Delivers one sender's events; caches which receivers listen to it, per signal.

    blinker's `receivers_for` rebuilds the receiver set on every send; the cache is rebuilt
    only when a receiver was connected or disconnected since. Entries keep blinker's own
    references (weak ones stay weak), so caching never keeps a receiver alive.
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


def _references(signal: NamedSignal, sender: object) -> tuple[Any, ...]:
    stored = signal.receivers
    return tuple(stored[make_id(receiver)] for receiver in signal.receivers_for(sender))


def _check_result(result: object, receiver: Any, signal: NamedSignal) -> None:
    """An async receiver shows itself by returning an awaitable: close it unrun and say so."""
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()
        log.error("lifecycle: skipped async receiver %r of %s; receivers must be plain functions",
                  receiver, signal.name)
