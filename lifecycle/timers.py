"""A timer queue that knows nothing of threads: its caller runs what is due and decides how to wait.

As kombu's `asynchronous/timer.py` leaves threading to its caller, `TimerQueue` only keeps
timers and runs the due ones when asked (`run_due`), answering how long until the next. The
`Watchdog` drives one from its thread; `run_pending` drives it from a test's thread.

Timers due within the same millisecond share one `sched` event (a slot), so a burst of
deadlines costs a list walk rather than a heap push and pop each. A slot's event is entered for
its earliest timer and runs only the timers already due, in time order, so no timer ever fires
early; the rest get a new event at their own time. An action that raises is logged and the
queue goes on.

An action may hand the part of its work that is not urgent to `after_due`: it runs once every
timer due by then has run, so a burst of deadlines is not held up by what follows each one.
Follow-ups run one at a time, each after every timer due by then: hand them over in small pieces.
On the watchdog's clock they also wait (a few milliseconds at most) while a burst goes on.

Locking: `_slot_lock` guards the slots; `sched` guards its heap. Actions run with neither held.
"""

from __future__ import annotations

import logging
import math
import sched
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Timer", "TimerQueue"]

log = logging.getLogger("lifecycle")


def _clock() -> float:
    # Looked up at call time so freezegun's patched time.monotonic is honoured;
    # sched's default timefunc is bound at import and would escape it.
    return time.monotonic()


def _no_delay(_seconds: float) -> None:
    # sched.run(blocking=False) calls delayfunc(0) after every action; sleeping there
    # costs ~56 us per fired timer and nothing needs it.
    return None


class Timer:
    """A handle to one entered action; `cancel` is O(1) and the stale entry later fires as a no-op."""

    __slots__ = ("when", "action", "args", "cancelled", "batched")

    def __init__(self, when: float, action: Callable[..., Any], args: tuple[Any, ...],
                 batched: bool = False) -> None:
        self.when = when
        self.action = action
        self.args = args
        self.cancelled = False
        self.batched = batched  # entered by call_at_batched: args is (item,)

    def cancel(self) -> None:
        """Make the timer do nothing when it comes due; safe from any thread, idempotent."""
        self.cancelled = True

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "armed"
        return f"<Timer at {self.when:.3f} {getattr(self.action, '__name__', self.action)!r} {state}>"


_SLOTS_PER_SECOND = 1000.0

#: The most items one call of a batched action gets (see `_fire_batch`).
_PIECE = 16

#: On the watchdog's clock, follow-ups wait while a timer comes due within this many seconds...
_QUIET = 0.002
#: ...but never longer than this after they were handed over.
_PATIENCE = 0.010

# Timers are kept within +/- this many seconds of the clock's origin (~31,700 years): far beyond
# any real deadline, and small enough that the slot arithmetic and every wait stay finite.
FAR = 1e12


def _due(timer: Timer) -> float:
    return timer.when


class TimerQueue:
    """Timers in millisecond slots over one `sched.scheduler`; `run_due` runs those due and says when next."""

    def __init__(self) -> None:
        self._sched = sched.scheduler(self._time, _no_delay)
        # Set by run_due(now=...): "now" stays where the call began (see there).
        self._now: float | None = None
        self._fired = 0
        self._slot_lock = threading.Lock()
        self._slots: dict[int, list[Timer]] = {}
        self._slot_at: dict[int, float] = {}  # when each slot's earliest sched event fires
        self._queued = 0  # timers in the slots, cancelled ones included until they come due
        self._lateness: float | None = None  # how late the latest live timer ran
        # Work handed over by actions, run once nothing is due (deque: appends need no lock).
        self._after: deque[tuple[Callable[..., Any], tuple[Any, ...], float]] = deque()
        # One bound method for every slot's event: a new one per slot would be one more object kept
        # per armed timer, and what a burst keeps decides when the garbage collector stops every thread.
        self._fire_slot_at = self._fire_slot

    def timer(self, when: float, action: Callable[..., Any], args: tuple[Any, ...], batched: bool = False) -> Timer:
        """A timer for `when` (clamped; NaN refused here, in the caller's thread), not yet entered."""
        return Timer(self.clamp(when), action, args, batched)

    @staticmethod
    def clamp(when: float) -> float:
        if math.isnan(when):
            raise ValueError("a timer's time must be a number, not NaN")
        return min(max(when, -FAR), FAR)

    def empty(self) -> bool:
        return self._sched.empty()

    def armed(self) -> int:
        """How many timers are entered and not cancelled (O(n); for tests and diagnostics)."""
        with self._slot_lock:
            return sum(1 for slot in self._slots.values() for timer in slot if not timer.cancelled)

    def queued(self) -> int:
        """Timers entered and not yet come due, cancelled ones included (O(1), unlike `armed`)."""
        return self._queued

    @property
    def lateness(self) -> float | None:
        """Seconds between the most recent live timer's time and when it ran; None before any ran."""
        return self._lateness

    @property
    def fired(self) -> int:
        """Live timers run so far."""
        return self._fired

    def run_due(self, now: float | None = None) -> float | None:
        """Run every timer due; return the seconds until the next one (None: none is entered).

        With `now`, "now" stays there for the whole call: a timer that an action enters, or that
        comes due because an action let (test) time move on, waits for the next call. Otherwise
        an action that takes longer than its own period would keep the call busy forever.
        """
        self._now = now
        after = self._after
        try:
            while True:
                delay = self._sched.run(blocking=False)
                if not after:
                    return delay
                if now is None and delay is not None and delay < _QUIET:
                    # A burst goes on (the watchdog's clock): its next timers first, while the
                    # follow-ups can wait. What they allocate (the next attempts' timers) could
                    # set off the garbage collector in the middle of the burst otherwise.
                    wait = after[0][2] + _PATIENCE - _clock()
                    if wait > 0:
                        return min(delay, wait)
                # One follow-up, then back to the timers: one that came due meanwhile waits for
                # one follow-up at most, not for all of them.
                self._run_one_after()
        finally:
            self._now = None

    def after_due(self, action: Callable[..., Any], *args: Any) -> None:
        """Run `action(*args)` after every timer already due (not counted as fired).

        For an action's follow-up work: a burst of timers that come due together each get their
        urgent part done before any of them does the rest. With a fixed "now" (`run_pending`) it
        runs in this `run_due` call; on the watchdog's clock it waits while timers keep coming
        due within `_QUIET` s, at most `_PATIENCE` s.
        """
        self._after.append((action, args, _clock()))

    def _run_one_after(self) -> None:
        try:
            action, args, _ = self._after.popleft()
        except IndexError:  # another thread driving the queue took the last one
            return
        try:
            action(*args)
        except Exception:
            log.exception("lifecycle: follow-up %r raised; the watchdog goes on", action)

    def cancel_all(self) -> None:
        self._after.clear()
        with self._slot_lock:
            for slot in self._slots.values():
                for timer in slot:
                    timer.cancelled = True

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks (a parent thread may have held them)."""
        # sched guards its heap with a private RLock; there is no public way to renew it.
        self._sched._lock = threading.RLock()  # type: ignore[attr-defined]
        self._slot_lock = threading.Lock()

    def add(self, timer: Timer) -> None:
        """Enter `timer`."""
        key = math.floor(timer.when * _SLOTS_PER_SECOND)
        with self._slot_lock:
            self._queued += 1
            slot = self._slots.get(key)
            if slot is None:
                self._slots[key] = [timer]
            else:
                slot.append(timer)
                if timer.when >= self._slot_at[key]:
                    return
            self._slot_at[key] = timer.when
            self._sched.enterabs(timer.when, 0, self._fire_slot_at, (key,))

    def add_many(self, timers: list[Timer]) -> None:
        """`add` for each timer, under one acquisition of the slot lock."""
        slots, slot_at, floor = self._slots, self._slot_at, math.floor
        enter, fire = self._sched.enterabs, self._fire_slot_at
        with self._slot_lock:
            self._queued += len(timers)
            for timer in timers:
                when = timer.when
                key = floor(when * _SLOTS_PER_SECOND)
                slot = slots.get(key)
                if slot is None:
                    slots[key] = [timer]
                else:
                    slot.append(timer)
                    if when >= slot_at[key]:
                        continue
                slot_at[key] = when
                enter(when, 0, fire, (key,))

    def _time(self) -> float:
        now = self._now
        return _clock() if now is None else now

    def _fire_slot(self, key: int) -> None:
        now = self._time()
        with self._slot_lock:
            slot = self._slots.pop(key, None)
            if slot is None:
                return  # an earlier event for this slot already ran everything
            del self._slot_at[key]
            due = [timer for timer in slot if timer.when <= now]
            self._queued -= len(due)
            if len(due) < len(slot):
                rest = [timer for timer in slot if timer.when > now]
                self._slots[key] = rest
                at = self._slot_at[key] = min(timer.when for timer in rest)
                self._sched.enterabs(at, 0, self._fire_slot_at, (key,))
        if len(due) > 1:
            due.sort(key=_due)
        index = 0
        while index < len(due):
            timer = due[index]
            end = index + 1
            try:
                if timer.batched:
                    action = timer.action
                    while end < len(due) and due[end].batched and due[end].action == action:
                        end += 1
                    self._fire_batch(due[index:end])
                else:
                    self._fire(timer)
            except BaseException:
                # Only an interrupt gets here (run_pending in the owner's thread): keep the rest queued.
                for later in due[end:]:
                    self.add(later)
                raise
            index = end

    def _fire(self, timer: Timer) -> None:
        if timer.cancelled:
            return
        timer.cancelled = True
        self._fired += 1
        self._lateness = max(0.0, self._time() - timer.when)
        try:
            timer.action(*timer.args)
        except Exception:
            log.exception("lifecycle: timer action %r raised; the watchdog goes on", timer.action)

    def _fire_batch(self, timers: list[Timer]) -> None:
        live = [timer for timer in timers if not timer.cancelled]
        if not live:
            return
        for timer in live:
            timer.cancelled = True
        self._fired += len(live)
        self._lateness = max(0.0, self._time() - live[-1].when)
        action = live[0].action
        # In pieces: what one call allocates (a burst's events) is freed before the next, so a
        # burst does not by itself set off the garbage collector, whose pass stops every thread.
        for k in range(0, len(live), _PIECE):
            try:
                action([timer.args[0] for timer in live[k:k + _PIECE]])
            except Exception:
                log.exception("lifecycle: timer action %r raised; the watchdog goes on", action)
