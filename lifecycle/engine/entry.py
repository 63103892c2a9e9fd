"""What the in-memory engine keeps per service beside the registry's status and last heartbeat."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ..connector import Hooks
from ..model import ExtensionService, ServiceId, ServiceStatus
from ..phi import History
from ..timers import Timer
from .base import label
from .policy import ReconnectPolicy

if TYPE_CHECKING:
    from .runner import Outcome


class Entry:
    """One service's hooks, timing, timers and reconnect cycle; guarded by the engine's lock."""

    __slots__ = (
        "id", "name", "hooks", "policy", "connect_timeout", "timeout", "ping_interval",
        "attempt", "deadline", "retry", "ping", "ping_busy", "inflight", "restarts", "flapping", "history",
        "expired_to", "expired_flaps", "expired_at",
    )

    def __init__(self, service: ExtensionService, hooks: Hooks | None, policy: ReconnectPolicy,
                 timeout: float, ping_interval: float, restarts: deque[float] | None) -> None:
        self.id: ServiceId = service.id
        self.name = service.name
        self.hooks = hooks
        self.policy = policy
        self.connect_timeout = service.transport.timeout_secs
        self.timeout = timeout
        self.ping_interval = ping_interval
        self.attempt = 0
        self.deadline: Timer | None = None
        self.retry: Timer | None = None
        self.ping: Timer | None = None
        self.ping_busy = False
        self.inflight: Outcome | None = None  # the connect attempt in flight; any other's result is stale
        self.restarts = restarts  # when each restart within the window began (only with max_restarts)
        self.flapping = False  # over the intensity: no reconnect until RUNNING again or restart
        self.history: History | None = None  # the phi detector's intervals (detector="phi" only)
        # The last timeout, until its follow-up: the status it went to, the restarts it would make if
        # over the intensity (None: within it), and when. Kept here, not in a tuple per timeout: what
        # a burst keeps alive decides when the garbage collector stops every thread.
        self.expired_to: ServiceStatus | None = None
        self.expired_flaps: int | None = None
        self.expired_at = 0.0

    @property
    def auto_reconnect(self) -> bool:
        return self.policy.auto_reconnect

    def label(self) -> str:
        return label(self.name, self.id)

    def drop_attempt(self) -> None:
        """Forget the attempt due or in flight: its timer, and its connect's timeout."""
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None
        if self.inflight is not None:
            self.inflight.cancel_timeout()
            self.inflight = None

    def cancel_timers(self) -> None:
        self.drop_attempt()
        for timer in (self.deadline, self.ping):
            if timer is not None:
                timer.cancel()
        self.deadline = self.ping = None
