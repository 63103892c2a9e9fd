"""`connect`: attach a receiver to lifecycle signals with a strong reference, and detach it again.

blinker holds receivers weakly by default, so a lambda, a closure or a bound method of a
temporary object connected the plain way vanishes silently at the next garbage collection.
`connect` holds them strongly until `disconnect()` (or the end of a ``with`` block).
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from blinker import ANY, NamedSignal
from blinker._utilities import make_id

from .dispatch import SIGNALS

__all__ = ["Connection", "connect"]

Receiver = Callable[..., Any]


class Connection:
    """A receiver connected to some signals; `disconnect()` undoes it (idempotent)."""

    def __init__(self, receiver: Receiver, signals: tuple[NamedSignal, ...], sender: Any) -> None:
        self.receiver = receiver
        self.signals = signals
        self.sender = sender
        self.connected = True

    def disconnect(self) -> None:
        """Detach the receiver from every signal it was connected to."""
        if not self.connected:
            return
        self.connected = False
        receiver_id = make_id(self.receiver)
        for signal in self.signals:
            signal.disconnect(self.receiver, sender=self.sender)
            # A sender-scoped disconnect leaves the receiver (strongly held) in `signal.receivers`
            # even when no sender is left; forget it entirely once it listens to nobody.
            if not signal._by_receiver.get(receiver_id):
                signal.disconnect(self.receiver)

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
            raise ValueError(f"unknown signal {item!r}; choose from {', '.join(SIGNALS)}") from None
    if isinstance(item, NamedSignal) and SIGNALS.get(item.name) is item:
        return item
    raise TypeError(f"signals must be lifecycle signals or their names, not {item!r}")


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
    for signal in chosen:
        signal.connect(receiver, sender=sender, weak=False)
    return Connection(receiver, chosen, sender)
