"""The watchdog: one daemon thread that drives a `TimerQueue`, waking early for an earlier timer.

It knows nothing of services. Callers enter actions with `call_at`; they run on the watchdog
thread (or, with ``autostart=False``, inside `run_pending` in the caller's thread). The queue
(`lifecycle.timers`) keeps the timers and runs the due ones; this module owns the thread, its
sleep and its wake-ups, holding it back (`hold`), and fork safety.
"""

from __future__ import annotations

import contextvars
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .timers import FAR, Timer, TimerQueue

__all__ = ["Timer", "Watchdog", "born_held"]

log = logging.getLogger("lifecycle")


_born_held: contextvars.ContextVar[bool] = contextvars.ContextVar("lifecycle_watchdog_born_held", default=False)


@contextmanager
def born_held(hold: bool = True) -> Iterator[None]:
    """Watchdogs created inside start held (see `Watchdog.hold`): even a timer their owner's
    constructor enters (fleet mode's first tick) starts no thread until `release()`."""
    token = _born_held.set(hold)
    try:
        yield
    finally:
        _born_held.reset(token)


def _clock() -> float:
    return time.monotonic()  # looked up at call time, so freezegun's patched clock is honoured


#: How long `yield_if_due` sleeps: about what a woken thread takes to get a core on a busy host.
#: Measured with `python -m benchmarks.cases handoff 10000`: 0.1 ms left the timer ~5 ms late at p99, 0.5 ms not.
_YIELD = 0.0005



class Watchdog:
    """One daemon thread running a `TimerQueue`, started lazily on the first timer.

    Locking: the condition guards only the decision to sleep and the wake-up; actions run with
    no watchdog lock held. A timer entered from another thread for a time earlier than the one
    the thread sleeps towards notifies it, so it never oversleeps (`sched.run()` alone would).
    The thread survives any exception an action raises: it is logged and the loop goes on.
    """

    def __init__(self, *, autostart: bool = True, name: str = "lifecycle-watchdog") -> None:
        self._autostart = autostart
        self._name = name
        self._queue = TimerQueue()
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._held = _born_held.get()  # see hold() and born_held()
        # While the thread sleeps, the time it will wake at; -inf while it is awake.
        self._wake_at = -math.inf
        # Set when a timer was entered while the thread was awake, so it re-checks before sleeping.
        self._recheck = False

    @property
    def thread(self) -> threading.Thread | None:
        """The watchdog thread, if one was started."""
        return self._thread

    def call_at(self, when: float, action: Callable[..., Any], *args: Any) -> Timer:
        """Run `action(*args)` at monotonic time `when` (at once if already past).

        A `when` beyond the queue's range (an overflowed sum, infinity) is kept at its end: never
        due, never an error in the watchdog thread. NaN is refused here, in the caller's thread.
        """
        return self._enter(self._queue.timer(when, action, args))

    def call_at_batched(self, when: float, action: Callable[[list[Any]], Any], item: Any) -> Timer:
        """Like `call_at`, but due timers that share `action` run together as one `action([item, ...])`.

        Timers that come due in the same slot (and are not separated by a different action
        there) make one call, in time order, so a burst of deadlines costs one call (one lock
        acquisition, one registry read) rather than one per timer. Cancelling one drops its item.
        """
        return self._enter(self._queue.timer(when, action, (item,), True))

    def call_later(self, delay: float, action: Callable[..., Any], *args: Any) -> Timer:
        """Run `action(*args)` `delay` seconds from now."""
        return self.call_at(_clock() + delay, action, *args)

    def after_due(self, action: Callable[..., Any], *args: Any) -> None:
        """From inside a timer action: run `action(*args)` once every timer due by now has run.

        It runs in the same thread and the same `run_pending` call, before the watchdog sleeps, so
        an action can send what is urgent at once and leave the rest until a burst is through.
        """
        self._queue.after_due(action, *args)

    def rearm(self, pairs: list[tuple[float, Timer]]) -> None:
        """Enter each timer of (when, timer) again at its new time, under one lock; no new objects.

        Only for timers that have fired (their owner re-arms them from the action, holding its
        own lock so nothing else touches them meanwhile). Reusing them keeps a burst of re-armed
        deadlines from allocating, and so from feeding the cyclic garbage collector, whose full
        collections pause every thread. `Timer.cancel` works on a re-armed timer as on a new one.
        """
        if not pairs:
            return
        clamp = self._queue.clamp
        for when, timer in pairs:
            timer.when = when if -FAR <= when <= FAR else clamp(when)
            timer.cancelled = False
        timers = [timer for _, timer in pairs]
        if self._running_here():
            if self._stopping:
                for timer in timers:
                    timer.cancelled = True
            else:
                self._queue.add_many(timers)
            return
        with self._cond:
            if self._stopping:
                for timer in timers:
                    timer.cancelled = True
                return
            self._queue.add_many(timers)
            self._wake_for(min(timer.when for timer in timers))

    def _enter(self, timer: Timer) -> Timer:
        if self._running_here():
            # An action on the watchdog thread, inside the queue's run, which sees the new timer.
            if self._stopping:
                timer.cancelled = True
            else:
                self._queue.add(timer)
            return timer
        with self._cond:
            if self._stopping:
                timer.cancelled = True
                return timer
            self._queue.add(timer)
            self._wake_for(timer.when)
        return timer

    def _wake_for(self, when: float) -> None:
        """After entering a timer for `when` (holding the condition): make sure the thread sees it in time."""
        if self._thread is None:
            if self._autostart and not self._held:
                self._start_thread()
        elif when < self._wake_at:
            self._cond.notify()
        elif self._wake_at == -math.inf:
            self._recheck = True

    def armed(self) -> int:
        """How many timers are entered and not cancelled (O(n); for tests and diagnostics)."""
        return self._queue.armed()

    def queued(self) -> int:
        """Timers entered and not yet come due, cancelled ones included (O(1), unlike `armed`)."""
        return self._queue.queued()

    def yield_if_due(self) -> None:
        """Give up the GIL briefly if the thread's timer is due but it has not woken up yet.

        Called now and then by a busy caller (the heartbeat fast path). A thread that
        wakes from its wait needs the GIL, and CPython hands it over only after the switch
        interval (5 ms) of a busy thread: a deadline would be late by that much, or a multiple
        with several busy threads. Sleeping `_YIELD` here lets it in at once; a caller pays
        that at most once per overdue wake-up (the check is cheap when nothing is due).
        """
        wake = self._wake_at
        if wake != -math.inf and _clock() >= wake:
            time.sleep(_YIELD)

    @property
    def lateness(self) -> float | None:
        """Seconds between the most recent live timer's time and when it ran; None before any ran."""
        return self._queue.lateness

    @property
    def held(self) -> bool:
        """True between `hold()` and `release()`."""
        return self._held

    def hold(self) -> None:
        """Start no thread until `release()`; timers are entered as usual, and those due then run at once.

        Meant for before the first timer: a thread already running is not stopped.
        """
        with self._cond:
            self._held = True

    def release(self) -> None:
        """Undo `hold()`: start the thread now if timers are waiting (cheap when not held)."""
        if not self._held:
            return
        with self._cond:
            self._held = False
            if self._thread is None and self._autostart and not self._stopping and not self._queue.empty():
                self._start_thread()

    def run_pending(self) -> int:
        """Run every timer due now in the calling thread; return how many actions ran.

        "Now" is the moment the call began (see `TimerQueue.run_due`).
        """
        before = self._queue.fired
        self._queue.run_due(_clock())
        return self._queue.fired - before

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread, drop every timer, and join; True if no thread is left running."""
        with self._cond:
            self._stopping = True
            self._queue.cancel_all()
            self._cond.notify_all()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks, no thread; pending timers stay and a thread restarts lazily."""
        self._cond = threading.Condition(threading.Lock())
        self._queue.reset_after_fork()
        self._thread = None
        self._wake_at = -math.inf
        self._recheck = False
        if not self._stopping and not self._queue.empty() and self._autostart and not self._held:
            with self._cond:
                self._start_thread()

    def _running_here(self) -> bool:
        thread = self._thread
        return thread is not None and thread.ident == threading.get_ident()

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread = thread
        thread.start()

    def _loop(self) -> None:
        while True:
            try:
                if self._step():
                    return
            except BaseException:  # the watchdog never dies, whatever user code or its own wait raises
                log.exception("lifecycle: watchdog loop caught an exception; going on")

    def _step(self) -> bool:
        """Run what is due, then sleep until the next timer or a notify; True once stopping."""
        delay = self._queue.run_due()
        cond = self._cond
        with cond:
            if self._stopping:
                return True
            if self._recheck:
                self._recheck = False
                return False
            try:
                if delay is None:
                    self._wake_at = math.inf
                    cond.wait()
                else:
                    # Condition.wait raises OverflowError above TIMEOUT_MAX; waking early is harmless.
                    delay = min(delay, threading.TIMEOUT_MAX)
                    self._wake_at = _clock() + delay
                    cond.wait(delay)
            finally:
                self._wake_at = -math.inf
        return False
