"""Keep locks consistent across `os.fork` (gunicorn `--preload`, multiprocessing's fork start method).

A child inherits every lock in whatever state some parent thread left it, and only the forking
thread survives. So, like the `logging` module, we take the locks just before the fork (no
operation is then half-done in the child), release them in the parent, and give the child
fresh ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["hold_across_fork"]

log = logging.getLogger("lifecycle")

_ACQUIRE_TIMEOUT = 2.0  # a lock still busy after this is left alone: the child renews it anyway


def hold_across_fork(locks: Callable[[], Iterable[Any]], renew_in_child: Callable[[], None]) -> None:
    """Around every fork, hold the locks `locks()` names; then call `renew_in_child()` in the child.

    Hooks registered later run their "before" step first, so a module that takes its locks
    before another module's (the manager before its registry) must register after it.
    """
    if not hasattr(os, "register_at_fork"):
        return
    held: list[Any] = []

    def before() -> None:
        for lock in locks():
            if lock.acquire(timeout=_ACQUIRE_TIMEOUT):
                held.append(lock)
            else:
                log.warning("lifecycle: a lock stayed busy across fork; the child gets a fresh one")

    def after_in_parent() -> None:
        while held:
            held.pop().release()

    def after_in_child() -> None:
        held.clear()  # the child's copies stay locked; renew_in_child replaces them
        try:
            renew_in_child()
        except Exception:
            log.exception("lifecycle: resetting state after fork failed")

    os.register_at_fork(before=before, after_in_parent=after_in_parent, after_in_child=after_in_child)
