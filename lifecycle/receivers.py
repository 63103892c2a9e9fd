"""`connect`: attach a receiver to lifecycle signals with a strong reference, and detach it again.

blinker holds receivers weakly by default, so a lambda, a closure or a bound method of a
temporary object connected the plain way vanishes silently at the next garbage collection.
`connect` holds them strongly until `disconnect()` (or the end of a ``with`` block).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from blinker import ANY, NamedSignal

from ._forksafe import hold_across_fork
from ._text import quote
from .dispatch import SIGNALS, ScopedReceiver

__all__ = ["Connection", "connect"]

Receiver = Callable[..., Any]


class Connection:
    """A receiver connected to some signals; `disconnect()` undoes it (idempotent)."""

    def __init__(self, receiver: Receiver, signals: tuple[NamedSignal, ...], sender: Any,
                 connected: ScopedReceiver) -> None:
        self.receiver = receiver
        self.signals = signals
        self.sender = sender
        self.connected = True
        self._connected = connected

    def disconnect(self) -> None:
        """Detach the receiver from every signal it was connected to."""
        with _lock:
            if not self.connected:
                return
            for signal in self.signals:
                signal.disconnect(self._connected)
            self.connected = False

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.disconnect()


def _signal(item: NamedSignal | str) -> NamedSignal:
    if isinstance(item, str):
        try:
            return SIGNALS[item]
        except KeyError:
            raise ValueError(f"unknown signal {quote(item)}; choose from {', '.join(SIGNALS)}") from None
    if isinstance(item, NamedSignal) and SIGNALS.get(item.name) is item:
        return item
    raise TypeError(f"signals must be lifecycle signals or their names, not {quote(item)}")


def connect(receiver: Receiver, *signals: NamedSignal | str, sender: Any = ANY) -> Connection:
    """Connect `receiver` strongly to `signals` (every lifecycle signal when none is named).

    Pass ``sender=manager`` to hear one manager only. Use the result as a context manager
    or call its `disconnect()`::

        with lifecycle.connect(lambda sender, **kw: print(kw["event"]), sender=manager):
            ...
    """
    if not callable(receiver):
        raise TypeError(f"receiver must be callable, not {type(receiver).__name__}")
    chosen = tuple(_signal(s) for s in signals) if signals else tuple(SIGNALS.values())
    scoped = ScopedReceiver(receiver, sender)
    with _lock:
        for signal in chosen:
            signal.connect(scoped, weak=False)
    return Connection(receiver, chosen, sender, scoped)


# blinker has no lock; serializing our own connects and disconnects keeps them from changing
# its tables under each other. Connections are made for every sender (see ScopedReceiver), so
# blinker's sender cleanup, which the garbage collector may run in any thread, never touches them.
_lock = threading.Lock()


def _renew_lock() -> None:
    global _lock
    _lock = threading.Lock()


hold_across_fork(lambda: [_lock], _renew_lock)
