"""Timer actions that cannot be lost: one that raises is logged once per cause and run again after a backoff.

The watchdog already survives any action that raises, but the action's work would be dropped:
a deadline never re-armed, an attempt never run, a service stuck RECONNECTING. A guarded action
is entered again with the same arguments (actions check whether they are still wanted, so a
late retry is harmless), after a delay doubling from `first` to `most` while the same cause
repeats. A cause is logged with its traceback the first time only; the next success of that
action logs that it recovered.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..watchdog import Watchdog

__all__ = ["Guard"]

log = logging.getLogger("lifecycle")

Action = Callable[..., object]


class Guard:
    """Wraps an engine's timer actions; the failures it has seen, per action, are its only state."""

    def __init__(self, watchdog: Watchdog, *, first: float = 0.05, most: float = 5.0) -> None:
        self._watchdog = watchdog
        self._first = first
        self._most = most
        self._lock = threading.Lock()
        self._failing: dict[str, tuple[tuple[str, str], float]] = {}  # action name -> (cause, next delay)

    def wrap(self, action: Action) -> Action:
        """`action`, guarded; wrap once and keep the result (batched timers group by the callable)."""
        name = getattr(action, "__qualname__", repr(action))

        @functools.wraps(action)
        def guarded(*args: Any) -> None:
            try:
                action(*args)
            except Exception as exc:
                self._retry(name, guarded, args, exc)
            else:
                if self._failing:
                    self._recovered(name)

        return guarded

    def report(self, fn: Callable[..., bool], *args: Any) -> Callable[[BaseException | None], bool]:
        """An executor's `report(error)`: `fn(*args, error)`; if it raises, it is retried as a guarded action
        would be, and the outcome counts as applied (so the connection it reports is kept)."""
        retry = self.wrap(fn)
        name = getattr(fn, "__qualname__", repr(fn))

        def call(error: BaseException | None) -> bool:
            try:
                return fn(*args, error)
            except Exception as exc:
                self._retry(name, retry, (*args, error), exc)
                return True

        return call

    def _retry(self, name: str, guarded: Action, args: tuple[Any, ...], exc: Exception) -> None:
        cause = (type(exc).__name__, str(exc))
        with self._lock:
            known = self._failing.get(name)
            delay = known[1] if known is not None and known[0] == cause else self._first
            self._failing[name] = (cause, min(delay * 2, self._most))
        if known is None or known[0] != cause:
            log.error("lifecycle: %s raised %s: %s; retried with backoff (logged once per cause)", name, *cause,
                      exc_info=exc)
        self._watchdog.call_later(delay, guarded, *args)

    def _recovered(self, name: str) -> None:
        with self._lock:
            known = self._failing.pop(name, None)
        if known is not None:
            log.warning("lifecycle: %s runs again after %s", name, known[0][0])

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
