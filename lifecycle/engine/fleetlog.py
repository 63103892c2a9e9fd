"""Following the fleet event log: a daemon thread handing each batch of new entries to a callback."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..errors import LifecycleError
from ..events import LifecycleEvent
from ..fleet import SharedRegistry

__all__ = ["follow_log"]

log = logging.getLogger("lifecycle")

_HOLD = 0.05  # seconds between looks while reading is held
# Looks that reading waits after `busy` changed: a burst's deadlines fall due over a spread, and in
# one, reading (every member's timeouts decoded back) took three quarters of a member's CPU, its
# sweeps the rest. Counted, not timed, so that a frozen clock cannot hold reading for good.
_QUIET_LOOKS = 5
_PAGE = 100  # entries per read; a full page says the reader is behind (see `skip_behind`)


def follow_log(registry: SharedRegistry, deliver: Callable[[list[LifecycleEvent]], None],
               active: Callable[[], bool], *, start: str | None = None,
               on_ready: Callable[[], None] | None = None, poll: float = 0.5,
               hold: Callable[[], bool] | None = None, busy: Callable[[], int] | None = None,
               skip_behind: bool = False) -> threading.Thread:
    """Start a daemon thread calling `deliver(events)` for each batch the log gets, while `active()`.

    It reads after entry `start` (None: the log's end when the thread first reaches the server,
    after which it calls `on_ready`, so its caller can catch up on what came before) and blocks
    on the server at most `poll` seconds at a time, so it notices the end that soon. A failure is
    logged once until reading works again; reading resumes from the last entry seen, so nothing the
    log still holds is missed. `deliver` runs on this thread; an exception from it is logged.
    While `hold()` is true, reading waits (the leader sweeping a backlog: reading back the burst's
    own entries would only take the CPU its timeouts need); it then resumes where it was. Each time
    `busy()` (a count) changes, reading waits `_QUIET_LOOKS` looks more.

    With `skip_behind`, a read that comes back full (the reader is behind: a burst's timeouts,
    three entries each, from every member) is dropped: the reader jumps to the log's end and calls
    `on_ready` again. Only for a caller that learns what the entries would tell it some other way
    (the engine's sweeps): reading a burst back cost three quarters of a member's CPU in one.
    """

    def run() -> None:
        after = start
        down = False
        pause = threading.Event()
        seen, quiet = 0, 0
        while active():
            count = seen if busy is None else busy()
            if count != seen:
                seen, quiet = count, _QUIET_LOOKS
            if (hold is not None and hold()) or quiet:
                quiet = max(0, quiet - 1)
                pause.wait(_HOLD)
                continue
            try:
                if after is None:
                    after = registry.last_event_id()
                    if on_ready is not None:
                        on_ready()
                rows = registry.read_events(after, block=poll, count=_PAGE)
            except Exception as exc:
                # Whatever went wrong (an outage, a reply it cannot read), the reader must not die
                # silently and leave its reader with nothing for good.
                if not down:
                    log.error("lifecycle: fleet event log: %s; retrying", exc, exc_info=not isinstance(
                        exc, LifecycleError))
                    down = True
                pause.wait(poll)
                continue
            down = False
            if skip_behind and len(rows) >= _PAGE:
                after = None  # the next turn starts at the log's end, and calls on_ready
                continue
            if rows:
                after = rows[-1][0]
                try:
                    deliver([event for _, event in rows])
                except Exception:
                    log.exception("lifecycle: handling fleet events failed; reading goes on")

    thread = threading.Thread(target=run, name="lifecycle-fleet-log", daemon=True)
    thread.start()
    return thread
