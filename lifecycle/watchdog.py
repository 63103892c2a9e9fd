"""A generic timer thread: a `sched` queue whose waits can be cut short by an earlier timer.

It knows nothing of services. Callers enter actions with `call_at`; they run on the watchdog
thread (or, with ``autostart=False``, inside `run_pending` in the caller's thread).
"""

from __future__ import annotations

import contextvars
import logging
import math
import sched
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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

# Timers are kept within +/- this many seconds of the clock's origin (~31,700 years): far beyond
# any real deadline, and small enough that the slot arithmetic and every wait stay finite.
_FAR = 1e12


#: How long `yield_if_due` sleeps: about what a woken thread takes to get a core on a busy host.
#: Measured with `python -m benchmarks.cases handoff 10000`: 0.1 ms left the timer ~5 ms late at p99, 0.5 ms not.
_YIELD = 0.0005


def _due(timer: Timer) -> float:
    return timer.when


class Watchdog:
    """One daemon thread running a `sched.scheduler`, started lazily on the first timer.

    Timers due within the same millisecond share one `sched` event (a slot), so a burst of
    deadlines costs a list walk rather than a heap push and pop each. A slot's event is
    entered for its earliest timer and runs only the timers already due, in time order, so
    no timer ever fires early; the rest get a new event at their own time.

    Locking: the condition guards only the decision to sleep and the wake-up; actions run with
    no watchdog lock held. A timer entered from another thread for a time earlier than the one
    the thread sleeps towards notifies it, so it never oversleeps (`sched.run()` alone would).
    The thread survives any exception an action raises: it is logged and the loop goes on.
    """

    def __init__(self, *, autostart: bool = True, name: str = "lifecycle-watchdog") -> None:
        self._autostart = autostart
        self._name = name
        self._sched = sched.scheduler(self._time, _no_delay)
        # Set by run_pending: "now" stays where the call began (see there).
        self._now: float | None = None
        self._cond = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._held = _born_held.get()  # see hold() and born_held()
        # While the thread sleeps, the time it will wake at; -inf while it is awake.
        self._wake_at = -math.inf
        # Set when a timer was entered while the thread was awake, so it re-checks before sleeping.
        self._recheck = False
        self._fired = 0
        self._slot_lock = threading.Lock()
        self._slots: dict[int, list[Timer]] = {}
        self._slot_at: dict[int, float] = {}  # when each slot's earliest sched event fires
        self._queued = 0  # timers in the slots, cancelled ones included until they come due
        self._lateness: float | None = None  # how late the latest live timer ran

    @property
    def thread(self) -> threading.Thread | None:
        """The watchdog thread, if one was started."""
        return self._thread

    def call_at(self, when: float, action: Callable[..., Any], *args: Any) -> Timer:
        """Run `action(*args)` at monotonic time `when` (at once if already past).

        A `when` beyond `_FAR` (an overflowed sum, infinity) is kept at `_FAR`: never due, never
        an error in the watchdog thread. NaN is refused here, in the caller's thread.
        """
        return self._enter(Timer(self._clamp(when), action, args))

    def call_at_batched(self, when: float, action: Callable[[list[Any]], Any], item: Any) -> Timer:
        """Like `call_at`, but due timers that share `action` run together as one `action([item, ...])`.

        Timers that come due in the same slot (and are not separated by a different action
        there) make one call, in time order, so a burst of deadlines costs one call (one lock
        acquisition, one registry read) rather than one per timer. Cancelling one drops its item.
        """
        return self._enter(Timer(self._clamp(when), action, (item,), True))

    def rearm(self, pairs: list[tuple[float, Timer]]) -> None:
        """Enter each timer of (when, timer) again at its new time, under one lock; no new objects.

        Only for timers that have fired (their owner re-arms them from the action, holding its
        own lock so nothing else touches them meanwhile). Reusing them keeps a burst of re-armed
        deadlines from allocating, and so from feeding the cyclic garbage collector, whose full
        collections pause every thread. `Timer.cancel` works on a re-armed timer as on a new one.
        """
        if not pairs:
            return
        clamp = self._clamp
        for when, timer in pairs:
            timer.when = when if -_FAR <= when <= _FAR else clamp(when)
            timer.cancelled = False
        timers = [timer for _, timer in pairs]
        if self._running_here():
            if self._stopping:
                for timer in timers:
                    timer.cancelled = True
            else:
                self._add_many(timers)
            return
        with self._cond:
            if self._stopping:
                for timer in timers:
                    timer.cancelled = True
                return
            self._add_many(timers)
            self._wake_for(min(timer.when for timer in timers))

    @staticmethod
    def _clamp(when: float) -> float:
        if math.isnan(when):
            raise ValueError("a timer's time must be a number, not NaN")
        return min(max(when, -_FAR), _FAR)

    def _enter(self, timer: Timer) -> Timer:
        when = timer.when
        if self._running_here():
            # An action on the watchdog thread, inside sched.run(), which sees the new timer.
            if self._stopping:
                timer.cancelled = True
            else:
                self._add(timer)
            return timer
        with self._cond:
            if self._stopping:
                timer.cancelled = True
                return timer
            self._add(timer)
            self._wake_for(when)
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

    def call_later(self, delay: float, action: Callable[..., Any], *args: Any) -> Timer:
        """Run `action(*args)` `delay` seconds from now."""
        return self.call_at(_clock() + delay, action, *args)

    def armed(self) -> int:
        """How many timers are entered and not cancelled (O(n); for tests and diagnostics)."""
        with self._slot_lock:
            return sum(1 for slot in self._slots.values() for timer in slot if not timer.cancelled)

    def queued(self) -> int:
        """Timers entered and not yet come due, cancelled ones included (O(1), unlike `armed`)."""
        return self._queued

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
        return self._lateness

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
            if self._thread is None and self._autostart and not self._stopping and not self._sched.empty():
                self._start_thread()

    def run_pending(self) -> int:
        """Run every timer due now in the calling thread; return how many actions ran.

        "Now" is the moment the call began: a timer that an action enters, or that comes due
        because an action let (test) time move on, waits for the next call. Otherwise an
        action that takes longer than its own period would keep this call busy forever.
        """
        before = self._fired
        self._now = _clock()
        try:
            self._sched.run(blocking=False)
        finally:
            self._now = None
        return self._fired - before

    def stop(self, timeout: float | None = None) -> bool:
        """Stop the thread, drop every timer, and join; True if no thread is left running."""
        with self._cond:
            self._stopping = True
            with self._slot_lock:
                for slot in self._slots.values():
                    for timer in slot:
                        timer.cancelled = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def reset_after_fork(self) -> None:
        """In a forked child: fresh locks, no thread; pending timers stay and a thread restarts lazily."""
        self._cond = threading.Condition(threading.Lock())
        # sched guards its heap with a private RLock that may have been held by a parent thread.
        self._sched._lock = threading.RLock()  # type: ignore[attr-defined]
        self._slot_lock = threading.Lock()
        self._thread = None
        self._wake_at = -math.inf
        self._recheck = False
        if not self._stopping and not self._sched.empty() and self._autostart and not self._held:
            with self._cond:
                self._start_thread()

    def _running_here(self) -> bool:
        thread = self._thread
        return thread is not None and thread.ident == threading.get_ident()

    def _add(self, timer: Timer) -> None:
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
            self._sched.enterabs(timer.when, 0, self._fire_slot, (key,))

    def _add_many(self, timers: list[Timer]) -> None:
        """`_add` for each timer, under one acquisition of the slot lock."""
        slots, slot_at, floor = self._slots, self._slot_at, math.floor
        enter, fire = self._sched.enterabs, self._fire_slot
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
                self._sched.enterabs(at, 0, self._fire_slot, (key,))
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
                    self._add(later)
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
        try:
            live[0].action([timer.args[0] for timer in live])
        except Exception:
            log.exception("lifecycle: timer action %r raised; the watchdog goes on", live[0].action)

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
        delay = self._sched.run(blocking=False)
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
