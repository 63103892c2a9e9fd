"""The one I/O thread: a `selectors` loop over every transport's pipes, sockets and pidfds.

One loop serves the whole process, whatever the number of connectors and services, so the
thread count stays watchdog + pool + 1. The thread starts on the first registration and ends
(closing its selector and wake-up pipe) when nothing is registered any more.

Threading: only the loop thread touches the selector. Other threads hand it work with
`call_soon` (a list under a short lock plus a byte on the wake-up pipe). Callbacks run with no
loop lock held, so they may call into the manager, which emits signals to user receivers.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable

from .._forksafe import hold_across_fork

__all__ = ["LOOP", "IOLoop", "real_now"]

log = logging.getLogger("lifecycle")

Callback = Callable[[], None]


def real_now() -> float:
    """Monotonic seconds that freezegun leaves alone: children and sockets live in real time
    even while a test freezes the manager's clock (`time.monotonic` is patched then)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class IOLoop:
    """A lazily started daemon thread multiplexing readable fds with `selectors`, plus simple timers."""

    def __init__(self, name: str = "lifecycle-io") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._ops: list[Callback] = []
        self._thread: threading.Thread | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_r = -1
        self._wake_w = -1
        self._timers: list[tuple[float, int, Callback]] = []
        self._seq = itertools.count()
        # True while the thread runs callbacks (which may call into the manager and user code),
        # False while it waits in select().
        self.busy = False
        hold_across_fork(lambda: [self._lock], self._after_fork_in_child)

    @property
    def thread(self) -> threading.Thread | None:
        """The I/O thread while it runs."""
        return self._thread

    def in_loop(self) -> bool:
        """True when called on the I/O thread itself."""
        thread = self._thread
        return thread is not None and thread.ident == threading.get_ident()

    def call_soon(self, fn: Callback) -> None:
        """Run `fn()` on the I/O thread soon, starting the thread if it is not running."""
        with self._lock:
            self._ops.append(fn)
            if self._thread is None:
                self._start()
                return
            wake = self._wake_w
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(wake, b"\0")

    def run_here_or_soon(self, fn: Callback) -> None:
        """Run `fn()` now if on the I/O thread (it is then safe to touch the selector), else soon."""
        if self.in_loop():
            fn()
        else:
            self.call_soon(fn)

    # -- only on the I/O thread ----------------------------------------------------------------

    def register(self, fd: int, callback: Callback) -> None:
        """Call `callback()` whenever `fd` is readable (level-triggered) until `unregister(fd)`."""
        assert self._selector is not None and self.in_loop()
        self._selector.register(fd, selectors.EVENT_READ, callback)

    def unregister(self, fd: int) -> None:
        """Stop watching `fd`; unknown fds are ignored. Call before closing the fd."""
        assert self._selector is not None and self.in_loop()
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)

    def call_later(self, delay: float, fn: Callback) -> None:
        """Run `fn()` on the I/O thread after `delay` seconds (call from the I/O thread)."""
        assert self.in_loop()
        heapq.heappush(self._timers, (real_now() + delay, next(self._seq), fn))

    # -- internals -------------------------------------------------------------------------------

    def _start(self) -> None:
        """Under the lock: a fresh selector and wake-up pipe, and the thread."""
        self.busy = True
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        selector = self._selector
        assert selector is not None
        while True:
            try:
                if self._run_ops_or_exit(selector):
                    return
                self._run_timers()
                timeout = None if not self._timers else max(0.0, self._timers[0][0] - real_now())
                self.busy = False
                ready = selector.select(timeout)
                self.busy = True
                for key, _mask in ready:
                    if selector.get_map().get(key.fd) is not key:
                        # Unregistered by an earlier callback of this round, and maybe closed: its
                        # number may already be another thread's new (blocking) pipe.
                        continue
                    if key.data is None:
                        with contextlib.suppress(BlockingIOError, OSError):
                            os.read(self._wake_r, 4096)
                    else:
                        key.data()
            except Exception:  # the I/O thread never dies
                log.exception("lifecycle: I/O loop caught an exception; going on")

    def _run_ops_or_exit(self, selector: selectors.BaseSelector) -> bool:
        """Run queued work; if then nothing is watched or pending, close down and return True."""
        while True:
            with self._lock:
                ops, self._ops = self._ops, []
                if not ops:
                    if len(selector.get_map()) > 1 or self._timers:
                        return False
                    # Nothing left: this thread ends; the next registration starts a new one.
                    # `thread` is cleared last, so whoever sees it gone sees the fds closed.
                    self._selector = None
                    selector.close()
                    os.close(self._wake_r)
                    os.close(self._wake_w)
                    self._wake_r = self._wake_w = -1
                    self._thread = None
                    return True
            for op in ops:
                try:
                    op()
                except Exception:
                    log.exception("lifecycle: I/O loop task %r raised; going on", op)

    def _run_timers(self) -> None:
        now = real_now()
        while self._timers and self._timers[0][0] <= now:
            _when, _seq, fn = heapq.heappop(self._timers)
            try:
                fn()
            except Exception:
                log.exception("lifecycle: I/O loop timer %r raised; going on", fn)

    def _after_fork_in_child(self) -> None:
        """The thread does not exist in a forked child: close the parent's loop fds, start empty."""
        if self._selector is not None:
            with contextlib.suppress(OSError):
                self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._lock = threading.Lock()
        self._ops = []
        self._timers = []
        self._thread = None
        self._selector = None
        self._wake_r = self._wake_w = -1


#: The process's I/O loop, shared by every connector.
LOOP = IOLoop()
