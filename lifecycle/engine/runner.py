"""Connector calls, written once for both engines: where they run, how long they may take, what a late one does.

The executor is chosen once from the manager's `autostart`, as kazoo chooses a handler:
`InlineExecutor` runs every call in the caller's thread (manual mode: `run_pending` drives it,
no thread exists); `PoolExecutor` runs it on the manager's worker pool, bounded by the
transport timeout on the watchdog, so a hanging `connect` delays nobody else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

from ..connector import Hooks
from ..errors import ConnectionFailed
from ..model import ExtensionService
from ..pool import WorkerPool
from ..timers import Timer
from ..watchdog import Watchdog
from .base import error_text

__all__ = ["Executor", "InlineExecutor", "Outcome", "PoolExecutor", "call_hook", "connect_first", "within"]

log = logging.getLogger("lifecycle")

Hook = Callable[[ExtensionService], Any]
Report = Callable[[BaseException | None], bool]


class Outcome:
    """One connect in flight: the first of its return and its timeout is reported, the other is late."""

    __slots__ = ("_lock", "_settled", "timed_out", "timeout")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled = False
        self.timed_out = False
        self.timeout: Timer | None = None  # the timer that bounds it, when threaded

    def cancel_timeout(self) -> None:
        """Nobody waits for this connect any more: its timeout need not fire."""
        timer = self.timeout
        if timer is not None:
            timer.cancel()

    def settle(self, *, timed_out: bool = False) -> bool:
        """True for the one caller whose result counts."""
        with self._lock:
            if self._settled:
                return False
            self._settled = True
            self.timed_out = timed_out
            return True


def call_hook(fn: Hook, service: ExtensionService) -> BaseException | None:
    """Run a connector hook inline; return its exception (KeyboardInterrupt and SystemExit propagate)."""
    try:
        fn(service)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        return exc
    return None


def connect_first(hooks: Hooks, service: ExtensionService, who: str, undo: Callable[[], None]) -> None:
    """A start's connect, in the caller's thread: if it raises, `undo()` and raise `ConnectionFailed` from it."""
    try:
        hooks.connect(service)
    except BaseException as exc:
        undo()
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise ConnectionFailed(f"connecting service {who} failed: {error_text(exc)}") from exc


def within(limit: float, deadline: float | None) -> float:
    """`limit` seconds, or less if a `deadline` (monotonic) comes sooner."""
    return limit if deadline is None else max(0.0, min(limit, deadline - time.monotonic()))


def _close_late(hooks: Hooks, service: ExtensionService, outcome: Outcome, keep: Callable[[], bool]) -> None:
    """A connection nobody asked for any more: closed, unless a heartbeat revived the service meanwhile."""
    if hooks.disconnect is None or (not outcome.timed_out and keep()):
        return
    error = call_hook(hooks.disconnect, service)
    if error is not None:
        log.warning("lifecycle: disconnect of a late connection of %r failed: %s", service.name, error_text(error))


def _log_failure(future: Future[Any]) -> None:
    error = future.exception()
    if error is not None:
        log.error("lifecycle: a background connector call failed: %s", error_text(error), exc_info=error)


class Executor(Protocol):
    threaded: bool

    def connect(self, outcome: Outcome, hooks: Hooks, service: ExtensionService, timeout: float,
                report: Report, keep: Callable[[], bool]) -> None:
        """Run `hooks.connect`; `report(error)` once (True if applied); close a connection made for nothing."""
        ...

    def ping(self, fn: Hook, service: ExtensionService, timeout: float,
             done: Callable[[BaseException | None], None]) -> None: ...

    def disconnect(self, hooks: Hooks, service: ExtensionService, limit: float, who: str) -> None: ...

    def run(self, fn: Callable[[], object]) -> None:
        """Run `fn` where connector calls run (it calls one)."""
        ...

    def shutdown(self, timeout: float) -> None: ...

    def after_fork_in_child(self) -> None: ...


class InlineExecutor:
    """Every call in the caller's thread (the watchdog's, or the one in `run_pending`), unbounded."""

    threaded = False

    def connect(self, outcome: Outcome, hooks: Hooks, service: ExtensionService, timeout: float,
                report: Report, keep: Callable[[], bool]) -> None:
        try:
            error = call_hook(hooks.connect, service)
        except BaseException as interrupt:  # KeyboardInterrupt/SystemExit: count the attempt, then let it go
            if outcome.settle():
                report(interrupt)
            raise
        if outcome.settle() and not report(error) and error is None:
            _close_late(hooks, service, outcome, keep)

    def ping(self, fn: Hook, service: ExtensionService, timeout: float,
             done: Callable[[BaseException | None], None]) -> None:
        done(call_hook(fn, service))

    def disconnect(self, hooks: Hooks, service: ExtensionService, limit: float, who: str) -> None:
        if hooks.disconnect is None:
            return
        error = call_hook(hooks.disconnect, service)
        if error is not None:
            log.warning("lifecycle: disconnect of %s failed: %s", who, error_text(error))

    def run(self, fn: Callable[[], object]) -> None:
        fn()

    def shutdown(self, timeout: float) -> None:
        return None

    def after_fork_in_child(self) -> None:
        return None


class PoolExecutor:
    """Every call on a small idle-shrinking pool; connects are bounded by a timer on the watchdog."""

    threaded = True

    def __init__(self, pool: WorkerPool, watchdog: Watchdog) -> None:
        self._pool = pool
        self._watchdog = watchdog
        self._inline = InlineExecutor()

    def connect(self, outcome: Outcome, hooks: Hooks, service: ExtensionService, timeout: float,
                report: Report, keep: Callable[[], bool]) -> None:
        def timed_out() -> None:
            if outcome.settle(timed_out=True):
                report(TimeoutError(f"still running after {timeout:g} s"))

        def returned(future: Future[Any]) -> None:
            outcome.cancel_timeout()
            error = future.exception()
            if outcome.settle():
                if report(error) or error is not None:
                    return
            elif error is not None:
                return
            _close_late(hooks, service, outcome, keep)

        outcome.timeout = self._watchdog.call_later(timeout, timed_out)
        future = self._submit(hooks.connect, service)
        if future is None:
            outcome.cancel_timeout()
            return
        future.add_done_callback(returned)

    def ping(self, fn: Hook, service: ExtensionService, timeout: float,
             done: Callable[[BaseException | None], None]) -> None:
        started = time.monotonic()

        def returned(future: Future[Any]) -> None:
            error = future.exception()
            if error is None and time.monotonic() - started > timeout:
                error = TimeoutError(f"ping took longer than {timeout:g} s")
            done(error)

        future = self._submit(fn, service)
        if future is not None:
            future.add_done_callback(returned)

    def disconnect(self, hooks: Hooks, service: ExtensionService, limit: float, who: str) -> None:
        """`disconnect` bounded by `limit` seconds, waited for in the caller's thread."""
        if hooks.disconnect is None:
            return
        future = self._submit(hooks.disconnect, service)
        if future is None:  # the pool is shut down (the manager is): run it here
            self._inline.disconnect(hooks, service, limit, who)
            return
        try:
            future.result(timeout=limit)
        except FutureTimeout:
            log.warning("lifecycle: disconnect of %s still running after %.3g s; abandoned", who, limit)
        except Exception as exc:
            log.warning("lifecycle: disconnect of %s failed: %s", who, error_text(exc))

    def run(self, fn: Callable[[], object]) -> None:
        future = self._submit(fn)
        if future is not None:
            future.add_done_callback(_log_failure)

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any] | None:
        """The pool's future for `fn(*args)`, or None once the pool is shut down (the manager is closing)."""
        try:
            return self._pool.submit(fn, *args)
        except RuntimeError:
            if not self._pool.closed:
                raise
            return None

    def shutdown(self, timeout: float) -> None:
        self._pool.shutdown(timeout)

    def after_fork_in_child(self) -> None:
        self._pool.reset_after_fork()
