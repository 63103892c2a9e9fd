"""Declared services: desired state that this process asserts until the registry holds it.

`declare` is idempotent: it starts the service, or joins it where the registry already has it
(the fleet), or finds it already started here. A failure the registry or the connector reports
(unreachable, refused, connect failed) never reaches the caller: it is logged once per service
and cause, and the declaration is asserted again with backoff until it holds. After the
registry lost its data a fleet registers every declared service again (`services`). A service
stopped on purpose here is forgotten, so this process does not bring it back.

Nor does a retry bring back one stopped on purpose elsewhere: in a fleet, a declaration that
failed notes where the fleet's event log ends (asked of the registry, or, when it could not be
reached, this host's clock: an entry's id is the server's time), and each retry first reads the
log on from there. If the last `service_stopped` or `service_started` of the service since then
is a stop, the retry ends without registering it; the declaration stays, so a data loss
registers it again (as for a process that joined it). Only the log tells a stop from a
registration still to come. A stop the log trimmed or does not keep (`events_maxlen=0`), or
within the difference of this host's and the server's clocks, is not seen.

Locking: `_lock` guards the declarations and their retry timers; starting runs outside it.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable

from ..connector import Hooks
from ..errors import LifecycleError, RegistryUnavailable, ServiceAlreadyExists
from ..events import Started, Stopped
from ..fleet import SharedRegistry
from ..model import ExtensionService, ServiceId
from ..timers import Timer
from ..watchdog import Watchdog
from .runner import Executor

__all__ = ["Declarations"]

log = logging.getLogger("lifecycle")

Start = Callable[[ExtensionService, "Hooks | None"], ServiceId]

_PAGE = 1000  # log entries read per call when a retry looks for a stop made elsewhere
_PAGES = 20  # at most per retry: a log busier than that is read on at the next retry


class _Declared:
    __slots__ = ("service", "hooks", "retry", "delay", "failing", "since")

    def __init__(self, service: ExtensionService, hooks: Hooks | None) -> None:
        self.service = copy.deepcopy(service)
        self.hooks = hooks
        self.retry: Timer | None = None
        self.delay = 0.0
        self.failing: tuple[str, str] | None = None  # the cause last logged
        self.since: str | None = None  # fleet: where the event log was read up to since the first failure


class Declarations:
    """This process's declared services, each asserted through `start` until it holds."""

    def __init__(self, watchdog: Watchdog, executor: Executor, start: Start, log: SharedRegistry | None = None,
                 *, first: float = 0.5, most: float = 30.0) -> None:
        self._watchdog = watchdog
        self._log = log  # a fleet's registry: its event log tells of stops made elsewhere
        self._executor = executor
        self._start = start
        self._first = first
        self._most = most
        self._lock = threading.Lock()
        self._declared: dict[str, _Declared] = {}

    def declare(self, service: ExtensionService, hooks: Hooks | None) -> ServiceId:
        """Assert `service` now, in this thread; on failure keep trying in the background. Its id either way."""
        with self._lock:
            known = self._declared.get(service.id)
            if known is None:
                known = self._declared[service.id] = _Declared(service, hooks)
        return self._assert(known)

    def forget(self, id: str) -> None:
        """Stopped on purpose: not asserted any more."""
        with self._lock:
            known = self._declared.pop(id, None)
            if known is not None and known.retry is not None:
                known.retry.cancel()

    def services(self) -> list[ExtensionService]:
        """Every declared service (what a fleet registers again after the registry lost its data)."""
        with self._lock:
            return [known.service for known in self._declared.values()]

    def _again(self, known: _Declared) -> None:
        with self._lock:
            if self._declared.get(known.service.id) is not known:
                return  # forgotten meanwhile
            known.retry = None
        # A start connects: user code, so off the watchdog thread when there are threads.
        self._executor.run(lambda: self._retry(known))

    def _retry(self, known: _Declared) -> None:
        try:
            stopped = self._stopped_elsewhere(known)
        except LifecycleError as exc:  # the log cannot be read: neither can the registry be told
            self._failed(known, exc)
            return
        except Exception:  # a reply it cannot read must not end the declaration: asserted as before
            log.exception("lifecycle: reading the fleet's event log for declared service %r failed",
                          known.service.name)
            stopped = False
        if not stopped:
            self._assert(known)
            return
        log.warning("lifecycle: declared service %r was stopped on purpose by another process: not registered "
                    "from here (a process that starts later, or a data loss, registers it again)",
                    known.service.name)
        known.failing, known.delay, known.since = None, 0.0, None

    def _stopped_elsewhere(self, known: _Declared) -> bool:
        """Whether the fleet's log shows the service stopped (and not started again) since the first failure."""
        if self._log is None or known.since is None:
            return False
        id = known.service.id
        stopped = False
        for _ in range(_PAGES):
            rows = self._log.read_events(known.since, count=_PAGE)
            if not rows:
                break
            known.since = rows[-1][0]
            for _, event in rows:
                if event.service_id == id and isinstance(event, (Started, Stopped)):
                    stopped = isinstance(event, Stopped)
        return stopped

    def _assert(self, known: _Declared) -> ServiceId:
        service = known.service
        try:
            sid = self._start(service, known.hooks)
        except ServiceAlreadyExists as exc:  # already started here (by id or by name): it holds
            sid = ServiceId(exc.id or service.id)
        except LifecycleError as exc:
            self._failed(known, exc)
            return service.id
        if known.failing is not None:
            log.warning("lifecycle: declared service %r is registered again (%s)", service.name, sid)
            known.failing = None
        known.delay, known.since = 0.0, None  # a later failure reads the log from where it happens
        return sid

    def _failed(self, known: _Declared, exc: LifecycleError) -> None:
        # Its kind, not its text (a connect's message often counts or times something): one cause.
        inner = exc.__cause__
        cause = (type(exc).__name__, "" if inner is None else type(inner).__name__)
        if cause != known.failing:
            log.error("lifecycle: declared service %r is not registered yet: %s; retried with backoff "
                      "(logged once per cause)", known.service.name, exc)
            known.failing = cause
        known.delay = self._first if known.delay == 0.0 else min(known.delay * 2, self._most)
        if known.since is None and self._log is not None:
            known.since = self._log_end(self._log, exc)  # a stop from here on is the fleet's word on it
        with self._lock:
            if self._declared.get(known.service.id) is known and known.retry is None:
                known.retry = self._watchdog.call_later(known.delay, self._again, known)

    @staticmethod
    def _log_end(registry: SharedRegistry, exc: LifecycleError) -> str:
        """Where the fleet's log ends now: asked of a registry that answers, else read off this host's clock.

        An unreachable one is not asked again (a second wait for a timeout, at boot): an entry's id
        is the server's time in milliseconds, so this host's time is the position, to within the
        two clocks' difference.
        """
        if not isinstance(exc, RegistryUnavailable):
            with contextlib.suppress(LifecycleError):
                return registry.last_event_id()
        return ",".join([f"{int(time.time() * 1000)}-0"] * registry.partitions)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
