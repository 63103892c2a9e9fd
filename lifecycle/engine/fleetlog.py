"""A fleet subscription's reader: a daemon thread copying the fleet event log into a `Subscription`."""

from __future__ import annotations

import logging
import threading

from ..errors import RegistryUnavailable
from ..fleet import SharedRegistry
from ..subscription import Subscription

__all__ = ["follow_log"]

log = logging.getLogger("lifecycle")


def follow_log(registry: SharedRegistry, subscription: Subscription, *, poll: float = 0.5) -> threading.Thread:
    """Start a daemon thread copying the fleet event log into `subscription` until it stops being active.

    It starts at the log's end (events from the call on) and blocks on the server at most `poll`
    seconds at a time, so it notices a closed subscription that soon. An outage is logged once;
    reading resumes from the last entry seen, so nothing the log still holds is missed.
    """

    start = registry.last_event_id()  # here, so that nothing emitted after subscribe() returns is missed

    def run() -> None:
        after = start
        down = False
        pause = threading.Event()
        while subscription.active:
            try:
                rows = registry.read_events(after, block=poll)
            except Exception as exc:
                # Whatever went wrong (an outage, a reply it cannot read), the reader must not die
                # silently and leave the subscription empty for good.
                if not down:
                    log.error("lifecycle: fleet event log: %s; retrying", exc, exc_info=not isinstance(
                        exc, RegistryUnavailable))
                    down = True
                pause.wait(poll)
                continue
            down = False
            for entry_id, event in rows:
                after = entry_id
                subscription._put(event)

    thread = threading.Thread(target=run, name="lifecycle-fleet-log", daemon=True)
    thread.start()
    return thread
