"""Waiting on several partitions' event logs at once, where no one blocking read can name them all.

On a Redis Cluster each partition's log lies in its own slot, and a command's keys must share
one: a blocking XREAD waits on one log only. `LogWaiters` gives each log a short-lived daemon
thread blocked on it for one slice (`_SLICE_MAX` seconds, below any sane socket timeout, and
longer than a reader's usual wait) and wakes its caller as soon as any log has an entry after
the caller's position, whichever partition it is in. A waiter still blocked on the same position
when the next wait begins is joined rather than doubled, so an idle reader keeps at most one
thread per partition, each making one blocking read a slice.

Locking: `_cond` guards the waiters; the threads block on the server without it. A forked child
(whose copy of the lock may be held by a thread that does not exist there) starts afresh.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable, Sequence

__all__ = ["LogWaiters"]

#: `read(partition, after, block)`: the partition's log has an entry after `after`, waiting up to `block` s.
Read = Callable[[int, str, float], bool]


class _Waiter:
    """One thread blocked on one partition's log after one position."""

    __slots__ = ("after", "thread", "done", "news")

    def __init__(self, after: str) -> None:
        self.after = after
        self.thread: threading.Thread | None = None
        self.done = False
        self.news = False


class LogWaiters:
    """Blocks on every partition's log at once, a thread each; `wait` returns once any has news."""

    def __init__(self, partitions: int, read: Read, slice_max: float) -> None:
        self._read = read
        self._slice_max = slice_max
        self._partitions = partitions
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._waiters: list[_Waiter | None] = [None] * partitions

    def wait(self, cursor: Sequence[str], block: float) -> bool:
        """True once a log has an entry after `cursor` (or a read failed: the caller's next read says why).

        False after about `block` seconds without one. Turns are counted, not timed (as the
        one-log-at-a-time wait does), so a frozen clock in a test cannot stall it.
        """
        span = self._slice_max  # a waiter outlives a short wait, so the next one joins it (one read, one thread)
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._cond = threading.Condition(threading.Lock())
            self._waiters = [None] * self._partitions
        with self._cond:
            for _ in range(max(1, math.ceil(block / span))):
                mine = [self._ensure(p, after, span) for p, after in enumerate(cursor)]
                self._cond.wait_for(functools.partial(_settled, mine), min(block, span))
                if any(w.news for w in mine):
                    return True
        return False

    def _ensure(self, p: int, after: str, span: float) -> _Waiter:
        """The waiter of partition `p` after `after`: the one still blocked there, else a new one (`_cond` held)."""
        waiter = self._waiters[p]
        if waiter is not None and waiter.after == after and not waiter.done and waiter.thread is not None \
                and waiter.thread.is_alive():  # not a thread of the parent before a fork
            return waiter
        waiter = self._waiters[p] = _Waiter(after)
        waiter.thread = threading.Thread(target=self._run, args=(p, waiter, span), name=f"lifecycle-log-wait-{p}",
                                         daemon=True)
        waiter.thread.start()
        return waiter

    def _run(self, p: int, waiter: _Waiter, span: float) -> None:
        try:
            news = self._read(p, waiter.after, span)
        except Exception:  # the caller's own read, next, raises it with its context
            news = True
        with self._cond:
            waiter.news, waiter.done = news, True
            if self._waiters[p] is waiter:
                self._waiters[p] = None
            self._cond.notify_all()


def _settled(waiters: list[_Waiter]) -> bool:
    """One has news, or every one gave up."""
    return any(w.news for w in waiters) or all(w.done for w in waiters)
