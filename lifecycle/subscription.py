"""`Subscription`: a bounded queue of one manager's events for code that prefers pulling."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType

from . import _validate
from .events import LifecycleEvent

__all__ = ["Subscription"]

_OPEN, _ENDED, _CLOSED = "open", "ended", "closed"


class Subscription:
    """Events of one manager, oldest first; when full the oldest are dropped and counted in `dropped`.

    Thread-safe. Iterating blocks for the next event and ends after the manager shuts down
    (once the pending events are drained) or at once after `close()`.
    """

    def __init__(self, maxsize: int, on_close: Callable[[Subscription], None] | None = None) -> None:
        self.maxsize = _validate.integer(maxsize, "maxsize", minimum=1)
        self.dropped = 0
        self._events: deque[LifecycleEvent] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._state = _OPEN
        self._on_close = on_close

    def _after_fork_in_child(self) -> None:
        """A parent thread may have held the condition's lock at fork time; the child gets a fresh one."""
        self._cond = threading.Condition(threading.Lock())

    def __repr__(self) -> str:
        return f"<Subscription {self._state} pending={len(self._events)} dropped={self.dropped}>"

    @property
    def closed(self) -> bool:
        """True after `close()`."""
        return self._state == _CLOSED

    @property
    def active(self) -> bool:
        """True while events are still delivered (not closed, and its manager not shut down)."""
        return self._state == _OPEN

    def pending(self) -> int:
        """How many events wait to be read."""
        return len(self._events)

    def get(self, timeout: float | None = None) -> LifecycleEvent:
        """The next event; raises `queue.Empty` when `timeout` passes, or at once once ended/closed and empty."""
        if timeout is not None:
            # At most a year by validation, and never above what Condition.wait accepts.
            timeout = min(_validate.duration(timeout, "timeout", positive=False), threading.TIMEOUT_MAX)
        with self._cond:
            # wait_for keeps time with threading's own clock, so a frozen test clock cannot stall it.
            self._cond.wait_for(lambda: self._events or self._state != _OPEN, timeout)
            if self._state == _CLOSED or not self._events:
                raise queue.Empty
            return self._events.popleft()

    def get_nowait(self) -> LifecycleEvent:
        """The next event, or `queue.Empty` if none is pending."""
        with self._cond:
            if self._state == _CLOSED or not self._events:
                raise queue.Empty
            return self._events.popleft()

    def __iter__(self) -> Iterator[LifecycleEvent]:
        while True:
            try:
                yield self.get()
            except queue.Empty:
                return

    def close(self) -> None:
        """Stop delivery and discard pending events; idempotent."""
        with self._cond:
            if self._state == _CLOSED:
                return
            self._state = _CLOSED
            self._events.clear()
            self._cond.notify_all()
        if self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _put(self, event: LifecycleEvent) -> None:
        with self._cond:
            if self._state != _OPEN:
                return
            if len(self._events) >= self.maxsize:
                self._events.popleft()
                self.dropped += 1
            self._events.append(event)
            self._cond.notify()

    def _end(self) -> None:
        """The manager shut down: keep what is pending, then end iteration."""
        with self._cond:
            if self._state == _OPEN:
                self._state = _ENDED
            self._cond.notify_all()
