"""What a registry shared by several managers (processes, hosts) adds to `Registry`.

A shared registry keeps every deadline, reconnect attempt and status on its own clock and
changes them only in atomic compare-and-set operations, so that a fleet of managers acts as
one: any process records heartbeats and errors, exactly one (the holder of the lease, the
leader) expires deadlines and runs reconnect attempts, and every change is made, and its
events are produced, exactly once. See docs/fleet.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol, TypeGuard

from . import _validate
from .errors import FieldTypeError
from .events import LifecycleEvent
from .model import ExtensionService, ServiceId, ServiceStatus
from .phi import PhiSettings
from .registry import Registry

__all__ = ["Detail", "Lease", "Members", "Onset", "Plan", "SharedRegistry", "StoreSettings", "Sweep", "Timing",
           "is_shared"]

_Events = list[LifecycleEvent]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a service that left RUNNING does next: retry `attempt` after `delay` s, give up, or stay in ERROR.

    Computed by the manager from its config and backoff; the registry applies it atomically
    with the change that made it necessary.
    """

    mode: Literal["retry", "giveup", "error"]
    attempt: int = 1
    delay: float = 0.0
    max_attempts: int = 0


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """What the shared registry must know to decide alone, atomically with each change: given once.

    `timeout` is the default heartbeat timeout in seconds (a service's own
    `TransportConfig.heartbeat_timeout_secs` wins); `max_restarts` within `restart_window`
    seconds is the restart intensity (None: off); `phi` selects the phi accrual detector (None:
    the fixed timeout). The engine passes its `LifecycleConfig`'s values to
    `SharedRegistry.configure` once, when it is built.
    """

    timeout: float
    max_restarts: int | None = None
    restart_window: float = 60.0
    phi: PhiSettings | None = None

    def __post_init__(self) -> None:
        _validate.duration(self.timeout, "timeout")
        if self.max_restarts is not None:
            _validate.integer(self.max_restarts, "max_restarts", minimum=0)
        _validate.duration(self.restart_window, "restart_window")
        if self.phi is not None and not isinstance(self.phi, PhiSettings):
            raise TypeError(f"phi must be a PhiSettings or None, not {type(self.phi).__name__}")


class Detail(NamedTuple):
    """What the leader needs to plan a due service's expiry, from its registration."""

    name: str
    auto_reconnect: bool  # its transport's (the config's must allow it too)
    max_attempts: int | None = None  # its transport's max_reconnect_attempts; None: the config's


@dataclass(frozen=True, slots=True)
class Onset:
    """How a leader's sweep begins each timed-out service's reconnect cycle: the config's policy for attempt 1.

    A service's transport narrows it (auto_reconnect off: it stays in ERROR; its own
    max_reconnect_attempts replaces `max_attempts`, 0 giving up at once). The first delay is drawn
    uniformly from [`low`, `high`] seconds (the backoff's jitter window for attempt 1), afresh for
    each service, from a generator seeded with `seed`: the registry draws them where the services are.
    """

    auto_reconnect: bool
    max_attempts: int
    low: float
    high: float
    seed: int = 0

    def plan(self, detail: Detail, draw: float) -> Plan:
        """The plan of a due service with `detail`; `draw` in [0, 1) places its delay in the window."""
        limit = self.max_attempts if detail.max_attempts is None else detail.max_attempts
        if not (self.auto_reconnect and detail.auto_reconnect):
            return Plan("error")
        if limit < 1:
            return Plan("giveup", 1, 0.0, limit)
        return Plan("retry", 1, self.low + (self.high - self.low) * draw, limit)


class Timing(NamedTuple):
    """A service's status, silence on the registry's clock (None: never heard) and heartbeat timeout, in seconds."""

    status: ServiceStatus
    silent: float | None
    timeout: float  # its own TransportConfig.heartbeat_timeout_secs, else the registry's default

    @property
    def healthy(self) -> bool:
        """RUNNING and heard within its timeout."""
        return self.status is ServiceStatus.RUNNING and self.silent is not None and self.silent < self.timeout


@dataclass(frozen=True, slots=True)
class Sweep:
    """What a leader's sweep did and left to do: the services it timed out, reconnect attempts it claimed."""

    due: list[ServiceId]
    attempts: list[tuple[ServiceId, int]]
    next_in: float | None  # seconds until the next deadline or attempt; None when there is none
    rebased: int = 0  # services given a fresh full timeout after an outage
    # For each due service: its name (for the leader's log line), its transport's auto_reconnect and
    # max_reconnect_attempts, from which its plan was made.
    details: dict[ServiceId, Detail] = field(default_factory=dict)
    # What timing `due` out did: each one's timeout, its status change and what followed, in order.
    events: list[LifecycleEvent] = field(default_factory=list)


class Members(NamedTuple):
    """A partitioned namespace's live members as one of them sees them (`SharedRegistry.members`)."""

    live: int  # how many members are live, the asking one included
    fewest: int | None  # the fewest partitions another live member leads; None: no other
    settled: int | None  # the same over the others that renewed their presence `standing` s after they came

@dataclass(frozen=True, slots=True)
class Lease:
    """The answer to a lease request: are we the leader, the registry's generation marker, and was it free."""

    leader: bool
    generation: str
    free: bool = False  # nobody held it and, asked politely, it was left free (see `SharedRegistry.lease`)


def check_services(services: Sequence[ExtensionService]) -> Sequence[ExtensionService]:
    """`services`, each checked to be an `ExtensionService` before anything is sent (the first that is not is named)."""
    for i, service in enumerate(services):
        if not isinstance(service, ExtensionService):
            raise FieldTypeError(f"services[{i}]", "type", f"must be an ExtensionService, not {type(service).__name__}")
    return services


class SharedRegistry(Registry, Protocol):
    """The atomic operations fleet mode needs; each returns the events its change produced.

    Nominal: a registry is shared because its class names `SharedRegistry` as a base (see
    `is_shared`), never because it happens to have these methods.

    Leader operations take the caller's lease `owner` token and do nothing (returning None)
    unless it still holds the lease: that is the fencing that keeps a paused ex-leader inert.
    Durations are seconds on the registry's own clock. `lease_ttl_secs` is how long a lease
    lasts unrenewed: the longest a dead leader's fleet goes without an actor.
    """

    lease_ttl_secs: float
    #: How many partitions the namespace is spread over, each with its own lease (1: not partitioned).
    partitions: int

    def partition_of(self, id: str) -> int:
        """The partition holding service `id` (0 to `partitions` - 1; always 0 with one partition)."""
        ...

    def configure(self, settings: StoreSettings) -> None:
        """Keep `settings` for every later operation; called once, when the engine is built.

        Until it is called, each operation's `timeout` argument is the default timeout, and
        restart intensity and the phi detector are off.
        """
        ...

    def join(self, service: ExtensionService) -> tuple[ServiceId, bool]:
        """Register, or join the service already registered with its id (or name and version)."""
        ...

    def activate(self, id: str, timeout: float) -> _Events:
        """STARTING -> RUNNING with a full deadline (the start counts as a heartbeat)."""
        ...

    def beat(self, id: str, timeout: float) -> tuple[ServiceStatus | None, _Events]:
        """Record a heartbeat; a RECONNECTING or ERROR service becomes RUNNING. Returns the prior status.

        With the phi detector the interval since the last heartbeat (capped at the service's
        timeout) is learned, also by a revival, and the deadline is where phi reaches its threshold.
        """
        ...

    def timing(self, id: str) -> Timing | None:
        """Status, silence and the service's own heartbeat timeout (what `is_healthy` needs); None if unknown."""
        ...

    def report_error(self, id: str, error: str, plan: Plan | None) -> tuple[ServiceStatus | None, _Events]:
        """`service_error`; unless RECONNECTING, ERROR and then `plan` (None: stay in ERROR).

        With restart intensity a plan begins a reconnect cycle only within `max_restarts`; beyond
        it the service stays ERROR, flapping (`service_flapping`), and ignores plans until it is
        RUNNING again or restarted.
        """
        ...

    def restart(self, id: str, plan: Plan) -> tuple[ServiceStatus | None, _Events]:
        """RUNNING, RECONNECTING or ERROR -> RECONNECTING, fresh restart window, then `plan`; returns the prior status.

        Any other status (or None: unknown) is returned and nothing changes.
        """
        ...

    def restarts(self, id: str) -> int:
        """Restarts (reconnect cycles begun) within the restart window now (0 without restart intensity)."""
        ...

    def phi(self, id: str) -> float:
        """The phi detector's suspicion level for the service now (0.0 with the fixed detector or no history)."""
        ...

    def begin_stop(self, id: str) -> tuple[ServiceStatus | None, _Events]:
        """-> STOPPING unless already stopping; returns the prior status (the caller won if it is not STOPPING)."""
        ...

    def finish_stop(self, id: str) -> _Events:
        """-> STOPPED, unregister, `service_stopped`."""
        ...

    def restore(self, service: ExtensionService, timeout: float) -> bool:
        """Register `service` as RUNNING with a full deadline if the registry lost it; True if it did."""
        ...

    def restore_many(self, services: Sequence[ExtensionService], timeout: float) -> list[bool]:
        """`restore` for each service, in order (a store may send them together); True for each it registered."""
        return [self.restore(service, timeout) for service in check_services(services)]

    def lease(self, owner: str, ttl: float, *, polite: bool = False) -> Lease:
        """Take or renew the leader lease for `ttl` seconds; `ttl` 0 is a peek that only reads the generation.

        `polite` renews a lease `owner` holds but leaves a free one free (answering `Lease.free`): a
        member that already leads its share of a partitioned namespace defers to one that leads fewer.
        """
        ...

    def members(self, owner: str, ttl: float, leads: int, standing: float = 0.0) -> Members:
        """A partitioned namespace's live members: `owner` is one for `ttl` s more (0: it leaves), leading `leads`.

        Another member is settled once it renewed its presence `standing` s after it came. The engine asks
        only when `partitions` > 1 (engine/spread.py); a registry of one partition keeps no
        record and answers that `owner` is alone.
        """
        return Members(1, None, None)

    def leader(self) -> str | None:
        """The owner token of the manager holding the lease ("host:pid:random"), or None when nobody holds it."""
        ...

    def release(self, owner: str) -> None:
        """Give the lease up (if `owner` holds it) so another manager takes over at once."""
        ...

    def sweep(self, owner: str, timeout: float, grace: float, limit: int, *, onset: Onset,
              tick: float | None = None) -> Sweep | None:
        """Leader: time out what is due now and claim due attempts; after a gap > `grace`, fresh deadlines for all.

        One atomic step: each service whose deadline passed (at most `limit`) times out and begins
        its reconnect cycle as `onset.plan` says for its details (restart intensity may refuse
        it: flapping); `due` lists them, `events` says what happened to each, in order.
        A claim lasts the service's `transport.timeout_secs` plus `tick` (the leader's tick interval;
        None: the registry's default); an attempt whose outcome never came is then handed out again.
        """
        ...

    def last_event_id(self) -> str:
        """The fleet log's newest entry id, where a reader of events "from now on" starts."""
        ...

    def read_events(self, after: str = "$", *, block: float | None = None, count: int = 100
                    ) -> list[tuple[str, LifecycleEvent]]:
        """The fleet event log after entry `after` ("$": from now on), oldest first, with entry ids."""
        ...

    def attempt_done(self, id: str, owner: str, attempt: int, ok: bool, plan: Plan, *,
                     timeout: float | None = None) -> _Events | None:
        """Leader: a claimed attempt's outcome: RUNNING (deadline in `timeout` s) and `reconnected`, or apply `plan`."""
        ...


def is_shared(registry: object) -> TypeGuard[SharedRegistry]:
    """True if the registry's class declares itself a `SharedRegistry` (a base class): fleet mode is chosen by name."""
    return SharedRegistry in type(registry).__mro__
