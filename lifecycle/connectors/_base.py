"""What every transport connector shares: the binding to managers, the channel per service, fork and exit.

A connector keeps one channel (a child process or a socket) per service id, owned by the process
that opened it. `connect` replaces any channel the service still has (a hung child is killed
first); `disconnect` ends it and waits, bounded, for the I/O thread to close its fds.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Any

from .._forksafe import hold_across_fork
from ..errors import ConnectionFailed
from ..model import ExtensionService, ServiceId, ServiceStatus
from ._channel import Channel
from ._loop import LOOP

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..manager import LifecycleManager

__all__ = ["LineConnector"]

log = logging.getLogger("lifecycle")

#: The share of `timeout_secs` a child gets between SIGTERM and SIGKILL on `disconnect`: the
#: manager waits `timeout_secs` for `disconnect` as a whole, so the kill and the reaping fit in it.
TERM_GRACE = 0.75

#: How long `disconnect` waits for the I/O thread to close a channel's fds. Longer only when
#: the I/O thread is busy in a slow signal receiver; the fds are closed when it gets there.
_CLOSE_WAIT = 2.0


class LineConnector:
    """Base of the line-protocol connectors; subclasses implement `_open(service, manager)`.

    `ping=True` gives the connector a `ping(service)` hook: it sends ``ping`` and expects
    ``pong`` within the transport's `timeout_secs`. Without it the connector has no ping hook
    at all, and liveness comes from the ``heartbeat`` lines alone.
    """

    transport = "line"
    #: True when a connection cannot move between processes (a child process can only be
    #: ended and respawned by its parent); sockets can be reopened anywhere.
    process_bound = False

    def __init__(self, *, ping: bool = False) -> None:
        if not isinstance(ping, bool):
            raise TypeError(f"ping must be a bool, not {type(ping).__name__}")
        self._pinging = ping
        self._lock = threading.Lock()
        self._channels: dict[ServiceId, Channel] = {}
        self._owners: dict[ServiceId, int] = {}  # the pid that connected each service
        self._managers: weakref.WeakSet[LifecycleManager] = weakref.WeakSet()
        self._exiting = False  # set at interpreter exit: no new child may outlive the host
        _connectors.add(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} channels={len(self._channels)} ping={self._pinging}>"

    # -- the connector hooks ------------------------------------------------------------------

    def bind(self, manager: LifecycleManager) -> None:
        """Called by `LifecycleManager` with itself: heartbeats and errors of its services go there."""
        self._managers.add(manager)

    def connect(self, service: ExtensionService) -> None:
        """Open the service's channel (ending the one it still has) and hand it to the I/O thread."""
        if self._exiting:
            raise ConnectionFailed(f"not connecting service {service.name!r}: the interpreter is exiting")
        manager = self._manager_for(service)
        owner = self._owners.get(service.id)
        if owner is not None and owner != os.getpid():
            raise ConnectionFailed(
                f"service {service.name!r} ({service.id}) was connected by process {owner}, which owns it; "
                f"a forked process does not take it over (start it in this process instead)"
            )
        if (owner is None and self.process_bound and not manager.fleet
                and manager.get_status(service.id) is not ServiceStatus.STARTING):
            # A reconnect of a child some other process spawned: only the spawning process can end
            # the old child, so a new one here would be a duplicate. (In a fleet the store's
            # ownership decides who spawns: only the owner calls connect.)
            raise ConnectionFailed(
                f"service {service.name!r} ({service.id}) was not started by this process; the {self.transport} "
                f"of a STDIO service can only be restarted by the process that spawned it"
            )
        with self._lock:
            stale = self._channels.pop(service.id, None)
        if stale is not None and not stale.closed:
            log.info("lifecycle: ending the previous %s of %s before reconnecting", self.transport, stale.label())
            _end(stale, stale.timeout / 2)
        if manager.get_status(service.id) is None:
            raise ConnectionFailed(f"service {service.name!r} ({service.id}) is no longer managed")
        channel = self._open(service, manager)
        raced: Channel | None
        with self._lock:
            if self._exit_begun():  # the exit handler ran while this child was being spawned
                raced = channel
            else:
                raced = self._channels.get(service.id)
                self._channels[service.id] = channel
                self._owners[service.id] = os.getpid()
        if raced is not None:
            _end(raced, raced.timeout / 2)
            if raced is channel:
                raise ConnectionFailed(f"not connecting service {service.name!r}: the interpreter is exiting")
        LOOP.call_soon(channel.start)
        try:
            self._await_ready(channel)
            if manager.get_status(service.id) is None:
                # Stopped (or its manager shut down) while this connect ran: nobody wants it.
                raise ConnectionFailed(f"service {service.name!r} ({service.id}) is no longer managed")
        except BaseException:
            with self._lock:
                if self._channels.get(service.id) is channel:
                    del self._channels[service.id]
            _end(channel, 0.0)
            raise
        if self.process_bound and not manager.fleet:
            _say_own_copy(service)

    def _await_ready(self, channel: Channel) -> None:
        """Return once `channel` may count as connected; raise if it never will."""

    def disconnect(self, service: ExtensionService) -> None:
        """End the service's channel and close its fds.

        A child gets SIGTERM, then SIGKILL once 3/4 of `timeout_secs` passed, and is reaped.
        """
        with self._lock:
            channel = self._channels.pop(service.id, None)
            if channel is not None:
                del self._owners[service.id]
        if channel is not None:
            _end(channel, channel.timeout * TERM_GRACE)

    @property
    def ping(self) -> Callable[[ExtensionService], None] | None:
        """The ping hook when built with ``ping=True``, else None (so the manager schedules no pings)."""
        return self._ping if self._pinging else None

    def _ping(self, service: ExtensionService) -> None:
        channel = self._channels.get(service.id)
        if channel is None:
            raise ConnectionError(f"service {service.name!r} ({service.id}) is not connected")
        channel.ping()

    def owns(self, service_id: str) -> bool:
        """True if this process opened the service's connection (its child or socket lives here)."""
        return self._owners.get(ServiceId(service_id)) == os.getpid()

    def channels(self) -> int:
        """How many services are connected through this connector in this process."""
        return len(self._channels)

    # -- for subclasses ---------------------------------------------------------------------------

    def _open(self, service: ExtensionService, manager: LifecycleManager) -> Channel:
        raise NotImplementedError

    def _current(self, service_id: ServiceId) -> Channel | None:
        return self._channels.get(service_id)

    # -- internals ----------------------------------------------------------------------------------

    def _manager_for(self, service: ExtensionService) -> LifecycleManager:
        managers = list(self._managers)
        if len(managers) == 1:
            return managers[0]
        for manager in managers:
            if manager.get_status(service.id) is not None:
                return manager
        if not managers:
            raise ConnectionFailed(
                f"{type(self).__name__} is not bound to a manager: pass it as LifecycleManager(connector=...) "
                f"or start_service(..., connector=...) before connecting service {service.name!r}"
            )
        raise ConnectionFailed(f"no manager bound to {type(self).__name__} manages service {service.name!r}")

    def _exit_begun(self) -> bool:
        return self._exiting

    def _after_fork_in_child(self) -> None:
        """The parent's children and sockets are not this process's: close our copies, keep them."""
        self._lock = threading.Lock()
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            channel.forget_after_fork()
        _forgotten.extend(channels)

    def _end_all_at_exit(self) -> None:
        self._exiting = True
        with self._lock:
            channels = [c for c in self._channels.values() if c.owner_pid == os.getpid()]
            self._channels.clear()
        for channel in channels:
            channel.closing = True
        _end_many(channels)


def _end(channel: Channel, grace: float) -> None:
    """Stop `channel` (no report), then have the I/O thread close its fds; wait for that, bounded."""
    channel.closing = True
    try:
        channel.terminate(grace)
    finally:
        done = threading.Event()

        def close() -> None:
            try:
                channel.close_fds()
            finally:
                done.set()

        busy = LOOP.busy  # read first: the thread may be running the very receiver that called us
        LOOP.run_here_or_soon(close)
        # Waiting for a thread that is busy in a callback could wait for ourselves (a receiver on
        # the I/O thread stopping a service waits for this disconnect); it closes them next anyway.
        if not busy and not done.wait(_CLOSE_WAIT):
            log.warning("lifecycle: the I/O thread is busy; the fds of %s are closed when it gets there",
                        channel.label())


def _end_many(channels: list[Channel]) -> None:
    """At interpreter exit: end every channel together, so N children cost one grace period, not N."""
    if not channels:
        return
    grace = min(2.0, max(c.timeout for c in channels))
    for channel in channels:
        channel.begin_terminate()
    for channel in channels:
        try:
            channel.terminate(grace)
        except Exception:
            log.exception("lifecycle: ending %s at exit failed", channel.label())


_said_in: list[int] = [0]  # the pid that said it supervises its own copies (a forked worker says it again)


def _say_own_copy(service: ExtensionService) -> None:
    """Once per process: with an in-memory registry, every process that starts the service runs its own child."""
    pid = os.getpid()
    if _said_in[0] == pid:
        return
    _said_in[0] = pid
    log.info("lifecycle: process %d supervises its own copy of each STDIO service (first: %r): with an in-memory "
             "registry every process that starts one (each web server worker) runs its own child; share a "
             "registry (fleet mode) for one child owned by one member", pid, service.name)


_connectors: weakref.WeakSet[LineConnector] = weakref.WeakSet()
#: Channels inherited across fork: kept referenced so nothing of theirs is finalised in the child.
_forgotten: list[Any] = []


def _after_fork_in_child() -> None:
    for connector in list(_connectors):
        try:
            connector._after_fork_in_child()
        except Exception:
            log.exception("lifecycle: resetting %r after fork failed", connector)


@atexit.register
def _end_children_at_exit() -> None:
    # Children and sockets left open when the interpreter exits (no shutdown() was called).
    for connector in list(_connectors):
        try:
            connector._end_all_at_exit()
        except Exception:
            log.exception("lifecycle: ending the channels of %r at exit failed", connector)


hold_across_fork(lambda: [c._lock for c in list(_connectors)], _after_fork_in_child)
