"""One manager per process for the framework integrations: watching where requests are served, shut down at exit.

A process that loads the app may serve nothing: gunicorn's master under `--preload`, a
`flask` or `manage.py` command. With an in-memory registry no heartbeat ever reaches it, so
a watchdog there would only time every service out. So the managers built here arm their
timers but run none until the process serves: from boot where the server says so (a gunicorn
worker, the serving process of `flask run` or `runserver`: see `_boot`), else at its first
request, or right after a fork (a server's worker), or when the host calls `start_watching()`.

The same moment each manager declares its SERVICES (`LifecycleManager.declare`), once per
process: in the process that first serves, and again in every forked worker (a new process
of the fleet; in memory each worker supervises its own copy). With threads the declarations
run on a short-lived thread, so a slow connect delays neither the first request nor a
worker's boot; in manual mode they run inline.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import Any

from .._forksafe import hold_across_fork
from ..dispatch import ScopedReceiver
from ..errors import ManagerClosed
from ..events import LifecycleEvent, Started, Stopped
from ..fleet import is_shared
from ..manager import LifecycleManager
from ..model import ExtensionService, ServiceId
from ..registry import Registry
from ..signals import service_started, service_stopped
from ..watchdog import born_held
from ._boot import SERVES, boot_role
from ._eventlog import attach
from ._settings import Settings, describe_registry

__all__ = ["build_manager", "declared_services", "fleet_stopped_services", "start_watching", "stopped_services"]

log = logging.getLogger("lifecycle")

# manager -> its shutdown timeout; weak so that a dropped app does not keep its manager alive.
_at_exit: weakref.WeakKeyDictionary[LifecycleManager, float] = weakref.WeakKeyDictionary()

# manager -> which registry it uses, as the startup line says it: each forked worker says it again.
_described: weakref.WeakKeyDictionary[LifecycleManager, str] = weakref.WeakKeyDictionary()

_lock = threading.Lock()
_serving = False  # this process serves requests; read without the lock on every request
_waiting: weakref.WeakSet[LifecycleManager] = weakref.WeakSet()  # held until the process serves


class _Declared:
    """A manager's SERVICES, the ids it declared them under and those stopped on purpose (what `/healthz` checks)."""

    __slots__ = ("services", "threaded", "ids", "pid", "stopped", "after", "reading")

    def __init__(self, services: tuple[ExtensionService, ...], threaded: bool) -> None:
        self.services = services
        self.threaded = threaded
        # (id, name) per service; the id `declare` returned replaces the configured one once known.
        self.ids: tuple[tuple[ServiceId, str], ...] = tuple((s.id, s.name) for s in services)
        self.pid = 0  # the process that declared them last (0: none yet)
        # Ids stopped by `stop_service`: not pending, and not declared again by a forked child.
        self.stopped: frozenset[str] = frozenset()
        # Fleet mode: the last entry of the fleet's event log read for stops made elsewhere ("0-0": none yet).
        self.after = "0-0"
        self.reading = threading.Lock()

    def observe(self, sender: object, *, event: LifecycleEvent, **_kwargs: object) -> None:
        """The receiver of service_stopped and service_started: a declared service stopped, or started again."""
        id = str(event.service_id)
        if not any(sid == id for sid, _ in self.ids):
            return
        if isinstance(event, Stopped):
            self.stopped = self.stopped | {id}
        elif isinstance(event, Started):
            self.stopped = self.stopped - {id}


FLEET_LOG_PAGE = 1000
"""Entries of the fleet's event log asked per read, when /healthz looks for stops made by other processes."""

FLEET_LOG_PAGES = 20
"""Reads one look may make (twice the log's default length): a longer backlog is read on the next looks."""

_declared: weakref.WeakKeyDictionary[LifecycleManager, _Declared] = weakref.WeakKeyDictionary()
# The manager's receiver of its declared services' stops; blinker holds it weakly, this table for the manager's life.
_observers: weakref.WeakKeyDictionary[LifecycleManager, ScopedReceiver] = weakref.WeakKeyDictionary()


def build_manager(settings: Settings) -> LifecycleManager:
    """A manager from `settings`, registered for a bounded shutdown at interpreter exit.

    Unless this process already serves (or the manager is in manual mode), its watchdog waits
    for `start_watching()`. Its events are kept from the start (for the status page), so those
    of services started while the app loads are there too.
    """
    registry = _registry(settings)
    with _lock:
        hold = settings.autostart and not _serving
        # Held from birth: in fleet mode the constructor arms the first lease tick, and a thread
        # started for it would make a --preload master (which serves nothing) the fleet's leader.
        with born_held(hold):
            manager = LifecycleManager(registry=registry, config=settings.config, connector=settings.connector,
                                       autostart=settings.autostart)
        if hold:
            _waiting.add(manager)
        if settings.services:
            entry = _declared[manager] = _Declared(settings.services, settings.autostart)
            observer = _observers[manager] = ScopedReceiver(entry.observe, manager)
            for signal in (service_started, service_stopped):
                signal.connect(observer, weak=True)
        serving = _serving
    _at_exit[manager] = settings.shutdown_timeout
    _described[manager] = describe_registry(settings)
    attach(manager)
    if serving:
        _declare(manager)
    elif boot_role() == SERVES:
        _serve()  # the server says this process serves: watch from boot, no request needed
    return manager


def declared_services(manager: LifecycleManager) -> tuple[tuple[ServiceId, str], ...]:
    """The (id, name) of each service `manager` declares from its SERVICES setting; () when none."""
    entry = _declared.get(manager)
    return () if entry is None else entry.ids


def stopped_services(manager: LifecycleManager) -> frozenset[str]:
    """The ids of `manager`'s declared services that `stop_service` stopped (and nothing started again)."""
    entry = _declared.get(manager)
    return frozenset() if entry is None else entry.stopped


def fleet_stopped_services(manager: LifecycleManager) -> frozenset[str]:
    """Fleet mode: `stopped_services`, after reading the fleet's event log on from where the last look ended.

    A declared service another process stopped on purpose leaves the registry; only the fleet's
    log says it was a stop (`service_stopped`), not a loss or a registration still to come. The
    whole log is read the first time (bounded, and only when a declared service is missing),
    then what follows. Raises what the registry raises (`RegistryUnavailable`, `RegistryRefused`).
    """
    entry = _declared.get(manager)
    registry = manager.registry
    if entry is None or not is_shared(registry):
        return stopped_services(manager)
    if not entry.reading.acquire(blocking=False):
        return entry.stopped  # another request of this process is reading: what it knew so far
    try:
        for _ in range(FLEET_LOG_PAGES):
            rows = registry.read_events(entry.after, count=FLEET_LOG_PAGE)
            if not rows:
                break
            entry.after = rows[-1][0]
            for _, event in rows:
                if isinstance(event, (Started, Stopped)):
                    entry.observe(manager, event=event)
    finally:
        entry.reading.release()
    return entry.stopped


def _declare(manager: LifecycleManager) -> None:
    """Declare the manager's SERVICES, unless this process already did."""
    with _lock:
        entry = _declared.get(manager)
        pid = os.getpid()
        if entry is None or entry.pid == pid or manager.closed:
            return
        entry.pid = pid
    if entry.threaded:
        threading.Thread(target=_declare_all, args=(manager, entry), name="lifecycle-declare", daemon=True).start()
    else:
        _declare_all(manager, entry)


def _declare_all(manager: LifecycleManager, entry: _Declared) -> None:
    # `declare` never raises for an unreachable registry or a failed connect: it keeps trying.
    for index, service in enumerate(entry.services):
        if entry.ids[index][0] in entry.stopped:
            continue  # stopped on purpose (in the parent of a forked worker): not brought back
        try:
            sid = manager.declare(service)
        except ManagerClosed:
            return
        except Exception:
            log.exception("lifecycle: declaring the service %r from the settings failed", service.name)
            continue
        ids = list(entry.ids)
        ids[index] = (sid, service.name)
        entry.ids = tuple(ids)


def _registry(settings: Settings) -> Registry | None:
    """The shared registry of fleet mode when REDIS_URL is set; else None (the in-memory default)."""
    if settings.redis_url is None:
        return None
    from ..redis import RedisRegistry  # parse_settings checked that redis-py is installed

    lease: dict[str, Any] = {} if settings.redis_lease_secs is None else {"lease_ttl_secs": settings.redis_lease_secs}
    return RedisRegistry.from_url(settings.redis_url, namespace=settings.namespace,
                                  partitions=settings.redis_partitions, cluster=settings.redis_cluster,
                                  heartbeat_timeout_secs=settings.config.heartbeat_timeout_secs, **lease)


def start_watching() -> None:
    """This process serves: the integrations' managers run their timers from now on and declare their SERVICES.

    The Flask and Django integrations call it on every request (a flag test once done) and in
    every forked child, and at boot where the server says this process serves (a gunicorn
    worker, `flask run`, `runserver`). Call it yourself in a process that watches without
    serving HTTP, or in a server's own after-fork hook (uWSGI's `@postfork`).
    """
    _serve()


def _serve() -> None:
    global _serving
    if _serving:
        return
    with _lock:
        _serving = True
        waiting = list(_waiting)
        _waiting.clear()
        declaring = list(_declared)
    for manager in waiting:
        manager._start_watching()
    for manager in declaring:
        _declare(manager)


def _renew_in_child() -> None:
    global _lock, _serving
    _lock = threading.Lock()
    for entry in list(_declared.values()):
        entry.reading = threading.Lock()  # a request thread of the parent may have held it at the fork
    for manager, registry in list(_described.items()):
        if not manager.closed:  # a new process (a --preload worker): its own startup line, as the parent's
            log.info("lifecycle: registry: %s", registry)
    # A forked child is a server's worker (gunicorn, uwsgi): it is the process that serves, and
    # a new process of the fleet, so it declares again even when its parent had served.
    _serving = False
    _serve()


# Registered after the manager module's fork hook (imported above), so in the child each
# manager has its fresh locks before it is told to start watching.
hold_across_fork(lambda: [_lock], _renew_in_child)


def _shutdown_all() -> None:
    """Shut every integration-built manager down; each waits at most its SHUTDOWN_TIMEOUT."""
    for manager, timeout in list(_at_exit.items()):
        try:
            manager.shutdown(timeout)
        except Exception:
            log.exception("lifecycle: shutting %r down at exit failed", manager)


atexit.register(_shutdown_all)
