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
from collections.abc import Iterable

from blinker import NamedSignal

from . import signals
from .events import LifecycleEvent
from .subscription import Subscription

__all__ = ["SIGNALS", "dispatch"]

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


def dispatch(sender: object, events: Iterable[LifecycleEvent], subscriptions: tuple[Subscription, ...]) -> None:
    """Send each event to `subscriptions` and to the receivers of its signal for `sender`."""
    if sys.is_finalizing():
        return
    for event in events:
        for subscription in subscriptions:
            subscription._put(event)
        signal = SIGNALS[event.signal_name]
        if not signal.receivers or signal.is_muted:
            continue
        kwargs = event.signal_kwargs()
        for receiver in signal.receivers_for(sender):
            try:
                result = receiver(sender, event=event, **kwargs)
            except Exception:
                log.exception("lifecycle: receiver %r of %s raised; other receivers still run",
                              receiver, signal.name)
                continue
            if result is not None and inspect.isawaitable(result):
                # An async receiver: checked on its result, which costs nothing for plain ones.
                close = getattr(result, "close", None)
                if close is not None:
                    close()
                log.error("lifecycle: skipped async receiver %r of %s; receivers must be plain functions",
                          receiver, signal.name)
