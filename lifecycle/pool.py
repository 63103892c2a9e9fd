"""A small bounded pool of daemon threads that retire when idle, for connector calls.

`concurrent.futures.ThreadPoolExecutor` is not used because its threads never shrink and
are joined at interpreter exit, so one hanging `connect` would hang the host's exit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["WorkerPool"]

log = logging.getLogger("lifecycle")
T = TypeVar("T")

_Job = tuple["Future[Any]", Callable[..., Any], tuple[Any, ...]]


class WorkerPool:
    """Runs callables on at most `max_workers` daemon threads; a thread idle for `idle_timeout` exits."""

    def __init__(self, max_workers: int = 8, *, idle_timeout: float = 10.0, name: str = "lifecycle-worker") -> None:
        self._max_workers = max_workers
        self._idle_timeout = idle_timeout
        self._name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        # One token per idle worker: a submit that takes one knows an idle thread will serve it.
        self._idle = threading.Semaphore(0)
        self._workers: set[threading.Thread] = set()
        self._busy: set[threading.Thread] = set()
        self._closed = False
        self._count = 0

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Schedule `fn(*args)`; its result or exception (BaseException included) lands in the future."""
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is shut down")
            self._jobs.put((future, fn, args))
            if not self._idle.acquire(blocking=False) and len(self._workers) < self._max_workers:
                self._count += 1
                worker = threading.Thread(target=self._work, name=f"{self._name}-{self._count}", daemon=True)
                self._workers.add(worker)
                worker.start()
        return future

    def threads(self) -> int:
        """How many worker threads are alive."""
        return len(self._workers)

    def shutdown(self, timeout: float = 0.0) -> bool:
        """Refuse new work, tell workers to exit, and wait up to `timeout` for them; True if all exited.

        A worker stuck in a hanging call is abandoned (it is a daemon thread and cannot block exit).
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                for _ in range(len(self._workers)):
                    self._jobs.put(None)
            # A worker stuck in a call the manager has given up on is not waited for.
            workers = [w for w in self._workers if w not in self._busy]
        end = time.monotonic() + timeout
        for worker in workers:
            if worker is not threading.current_thread():
                worker.join(max(0.0, end - time.monotonic()))
        return not any(w.is_alive() for w in workers)

    @property
    def closed(self) -> bool:
        """True after `shutdown()`."""
        return self._closed

    def reset_after_fork(self) -> None:
        """In a forked child the parent's threads do not exist: start empty with fresh locks."""
        self._lock = threading.Lock()
        self._idle = threading.Semaphore(0)
        self._workers = set()
        self._busy = set()
        self._jobs = queue.SimpleQueue()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            try:
                job = self._jobs.get(timeout=self._idle_timeout)
            except queue.Empty:
                # Retire only if our idle token is unclaimed; if a submit took it, a job is coming.
                if self._idle.acquire(blocking=False):
                    with self._lock:
                        self._workers.discard(me)
                    return
                continue
            if job is None:
                with self._lock:
                    self._workers.discard(me)
                return
            future, fn, args = job
            if future.set_running_or_notify_cancel():
                self._busy.add(me)
                try:
                    result = fn(*args)
                except BaseException as exc:  # a connector's failure, whatever it is, is the caller's to judge
                    future.set_exception(exc)
                else:
                    future.set_result(result)
                finally:
                    self._busy.discard(me)
            del job, future, fn, args
            self._idle.release()
