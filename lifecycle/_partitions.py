"""One namespace spread over several partitions: a `SharedRegistry` routing each call to the part that holds it.

A service lives in partition ``crc32(id) % P`` for good: every per-service step is the part's
own atomic operation (one script in one hash slot on Redis). Each part has its own lease,
deadlines, outage watermark and event log, so leadership, fencing and outage credit hold per
partition; the engine runs one lease tick per partition. Names stay unique across the
namespace through a claim kept in the partition of the name (`NameClaims`), taken before the
registration and given back after the unregistration. The event logs are read together: a
reader's position is one entry id per part, joined by commas.

`RedisRegistry` and `SharedMemoryRegistry` build one when given ``partitions`` > 1; with 1
nothing here is used and the keys stay as they always were.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from . import _validate
from ._logwait import LogWaiters
from .errors import FieldValueError, PartitionsRefused, ServiceAlreadyExists
from .events import LifecycleEvent
from .fleet import Lease, Onset, Plan, StoreSettings, Sweep, Timing, check_services
from .model import ExtensionService, RegistrationInfo, ServiceFilter, ServiceId, ServiceStatus
from .registry import Owned, RegistryStats, _not_found

__all__ = ["NameClaims", "Partitioned", "check_partitions", "mismatch", "partition_of"]

MAX_PARTITIONS = 1024

_Events = list[LifecycleEvent]
_Rows = list[tuple[str, LifecycleEvent]]
_Logs = list[_Rows]  # one list of rows per part, in partition order
_A = TypeVar("_A")
_Services = list[ExtensionService]
_Ids = list[ServiceId]
_Parts = list[Any]
_Claims = list["NameClaims"]
_Texts = list[str]
_Holders = list[str | None]
_SLICE = 0.1  # seconds a blocking read of the logs waits on one part, at least, before the next part's turn
_SLICE_MAX = 1.0  # ... and at most (below any sane socket timeout)


def partition_of(id: object, partitions: int) -> int:
    """The partition of a service id (or a name): crc32 of its UTF-8 text modulo `partitions`; stable everywhere."""
    if partitions == 1 or not isinstance(id, str):
        return 0
    return zlib.crc32(id.encode("utf-8", "surrogatepass")) % partitions


def check_partitions(value: object) -> int:
    """`partitions`, checked: an int from 1 to `MAX_PARTITIONS`."""
    partitions = _validate.integer(value, "partitions", minimum=1)
    if partitions > MAX_PARTITIONS:
        raise FieldValueError("partitions", "too_large", f"must be at most {MAX_PARTITIONS}, got {partitions}")
    return partitions


def mismatch(recorded: str, configured: int, where: str, namespace: str, *, host: str = "",
             port: int | None = None) -> PartitionsRefused:
    """The refusal of a process whose partition count differs from the one `where` recorded for `namespace`."""
    count = int(recorded) if recorded.isdigit() else 0
    return PartitionsRefused(
        f"{where} holds namespace {namespace!r} with partitions={recorded}, but this process has "
        f"partitions={configured}: configure every process of the fleet with the same partitions "
        "(LIFECYCLE_REDIS_PARTITIONS, Django's REDIS_PARTITIONS), or use another namespace; the count of a "
        "namespace changes only once its keys are deleted (see docs/fleet.md)",
        recorded=count, configured=configured, host=host, port=port)


def _by_partition(keys: Sequence[str], partitions: int) -> dict[int, list[int]]:
    """The positions of `keys`, grouped by the partition each key falls in (in order within each)."""
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(partition_of(key, partitions), []).append(i)
    return groups


def _in_order(groups: dict[int, list[int]], answers: Mapping[int, Sequence[_A]], n: int, missing: _A) -> list[_A]:
    """Each partition's `answers` put back at their positions in `groups`: n answers in the callers' order."""
    out = [missing] * n
    for p, positions in groups.items():
        for i, answer in zip(positions, answers[p], strict=True):
            out[i] = answer
    return out


class NameClaims(Protocol):
    """One part's claims on names: which service id a name belongs to, namespace-wide."""

    def claim(self, name: str, id: str, expected: str = "") -> tuple[str, bool]:
        """Give `name` to `id` if free, already `id`'s, or held by `expected`; (holder, newly given)."""
        ...

    def release(self, name: str, id: str) -> None:
        """Free `name` if `id` holds it."""
        ...

    def holder(self, name: str) -> str | None:
        """The id holding `name`, or None."""
        ...

    def claim_free(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """Give each (name, id)'s name to its id where free; for each, whether the id holds it now (few calls)."""
        ...

    def clear(self) -> None:
        """Forget every claim."""
        ...


class Partitioned:
    """The namespace's registry over `parts` (each a one-partition registry of its own hash tag) and their claims.

    Mixed into `RedisRegistry` and `SharedMemoryRegistry` (before them), so it is one of them;
    `_parts` and `_claims` are set by their constructors. Their `register`, `join`, `unregister`,
    `finish_stop` and `len()` call the `_register`, `_unregister` and `count` defined here.
    """

    _parts: _Parts
    _claims: _Claims
    partitions: int

    def _at(self, id: object) -> Any:
        return self._parts[partition_of(id, self.partitions)]

    def partition_of(self, id: str) -> int:
        """The partition holding service `id`."""
        return partition_of(id, self.partitions)

    def _named(self, name: str) -> NameClaims:
        return self._claims[partition_of(name, self.partitions)]

    # -- settings -------------------------------------------------------------------------------

    def configure(self, settings: StoreSettings) -> None:
        """Keep `settings` for every later call of every part."""
        for part in self._parts:
            part.configure(settings)

    @property
    def settings(self) -> StoreSettings | None:
        """What `configure` was given, or None."""
        settings: StoreSettings | None = self._parts[0].settings
        return settings

    # -- registration (a name claimed namespace-wide first) ------------------------------------

    def _register(self, service: ExtensionService, *, join: bool) -> tuple[ServiceId, bool]:
        if not isinstance(service, ExtensionService):
            raise TypeError(f"service must be an ExtensionService, not {type(service).__name__}")
        name, id = service.name, service.id
        claims = self._named(name)
        holder, fresh = claims.claim(name, id)
        displaced = None
        if holder != id:
            other = self._at(holder).get(holder)
            if other is not None and other.name == name:
                if not join:
                    raise ServiceAlreadyExists.named(name, ServiceId(holder))
                if id in self._at(id):
                    raise ServiceAlreadyExists.with_id(ServiceId(id))
                if other.version != service.version:
                    raise ServiceAlreadyExists.named(name, ServiceId(holder))
                return ServiceId(holder), True
            # A claim whose registration never finished (or was lost): taken over if still that one's.
            displaced = holder
            holder, fresh = claims.claim(name, id, holder)
            if holder != id:
                raise ServiceAlreadyExists.named(name, ServiceId(holder))
        try:
            sid, joined = self._at(id)._register(service, join=join)
            if not joined:
                self._settle(service, displaced)
        except BaseException:
            if fresh:
                claims.release(name, id)
            raise
        return ServiceId(sid), bool(joined)

    def _settle(self, service: ExtensionService, displaced: str | None) -> None:
        """After registering: withdraw if the name's claim went to another, or the one we displaced registered.

        The claim and the registration live in two partitions, so no one script sees both; of two
        registrations racing for a name, the later one to look withdraws (both may, never neither).
        """
        name, id = service.name, service.id
        holder = self._named(name).holder(name)
        rival = holder if holder != id else displaced
        other = None if rival is None else self._at(rival).get(rival)
        if holder == id and (other is None or other.name != name):
            return
        self._at(id)._unregister(id, emit=False)
        if displaced is not None and other is not None:
            self._named(name).claim(name, displaced, id)  # give the name back to the one registered
        raise ServiceAlreadyExists.named(name, ServiceId(rival or id))

    def restore(self, service: ExtensionService, timeout: float) -> bool:
        """Re-register `service` as RUNNING with a full deadline if the registry lost it (and its name's claim)."""
        return self.restore_many([service], timeout)[0]

    def restore_many(self, services: Sequence[ExtensionService], timeout: float) -> list[bool]:
        """`restore` for many: their names claimed first, then the services; a call per partition for each.

        A service whose name another id holds is not restored (False), as one partition refuses it.
        """
        check_services(services)
        names = _by_partition([service.name for service in services], self.partitions)
        claimed = {p: self._claims[p].claim_free([(services[i].name, services[i].id) for i in positions])
                   for p, positions in names.items()}
        held = _in_order(names, claimed, len(services), False)
        kept = [service for service, ok in zip(services, held, strict=True) if ok]  # the names now theirs
        groups = _by_partition([service.id for service in kept], self.partitions)
        done = self._restore_parts({p: [kept[i] for i in positions] for p, positions in groups.items()}, timeout)
        restored = iter(_in_order(groups, done, len(kept), False))
        return [ok and bool(next(restored)) for ok in held]

    def _restore_parts(self, services: dict[int, list[ExtensionService]], timeout: float) -> dict[int, list[bool]]:
        """Each partition's `restore_many` of its `services` (a store may send them all together)."""
        return {p: self._parts[p].restore_many(part, timeout) for p, part in services.items()}

    def _unregister(self, id: str, *, emit: bool) -> tuple[RegistrationInfo, _Events]:
        info, events = self._at(id)._unregister(id, emit=emit)
        self._named(info.service.name).release(info.service.name, id)
        return info, events

    def get_by_name(self, name: str) -> ExtensionService | None:
        """A snapshot of the service called `name`, or None."""
        if not _is_text(name):
            return None
        holder = self._named(name).holder(name)
        service: ExtensionService | None = None if holder is None else self._at(holder).get(holder)
        return service if service is not None and service.name == name else None

    # -- one service: its partition answers ----------------------------------------------------

    def get(self, id: str) -> ExtensionService | None:
        """A snapshot of the service, or None."""
        return self._at(id).get(id)  # type: ignore[no-any-return]

    def get_registration(self, id: str) -> RegistrationInfo | None:
        """A snapshot of the registration record, or None."""
        return self._at(id).get_registration(id)  # type: ignore[no-any-return]

    def update_status(self, id: str, status: ServiceStatus, *, expected: ServiceStatus | None = None
                      ) -> ServiceStatus:
        """Set the status (only if it is `expected`, when given); returns the status found."""
        return self._at(id).update_status(id, status, expected=expected)  # type: ignore[no-any-return]

    def heartbeat(self, id: str) -> ServiceStatus:
        """Record a heartbeat now; a RECONNECTING or ERROR service becomes RUNNING. Returns the prior status."""
        return self._at(id).heartbeat(id)  # type: ignore[no-any-return]

    def beat(self, id: str, timeout: float) -> tuple[ServiceStatus | None, _Events]:
        """Record a heartbeat; a RECONNECTING or ERROR service becomes RUNNING. Returns the prior status."""
        return self._at(id).beat(id, timeout)  # type: ignore[no-any-return]

    def beat_many(self, ids: Sequence[str], timeout: float | None = None
                  ) -> list[tuple[ServiceStatus | None, _Events]]:
        """Heartbeats for many services, every partition's share at once; `beat`'s answer for each, in order."""
        for id in ids:
            if not isinstance(id, str):
                raise _not_found(id)
        groups = _by_partition(ids, self.partitions)
        replies = self._beat_parts({p: [ids[i] for i in positions] for p, positions in groups.items()}, timeout)
        return _in_order(groups, replies, len(ids), (None, []))

    def _beat_parts(self, ids: dict[int, list[str]], timeout: float | None
                    ) -> dict[int, list[tuple[ServiceStatus | None, _Events]]]:
        """Each partition's `beat_many` of its `ids` (a store may send them all together)."""
        return {p: self._parts[p].beat_many(part_ids, timeout) for p, part_ids in ids.items()}

    def activate(self, id: str, timeout: float) -> _Events:
        """STARTING -> RUNNING with a full deadline; the start counts as a heartbeat."""
        return self._at(id).activate(id, timeout)  # type: ignore[no-any-return]

    def expire(self, id: str, timeout: float, status: ServiceStatus) -> ServiceStatus | None:
        """If RUNNING and silent for `timeout` seconds, set `status` and return RUNNING; else None."""
        return self._at(id).expire(id, timeout, status)  # type: ignore[no-any-return]

    def silence(self, id: str) -> tuple[ServiceStatus, float | None] | None:
        """(status, seconds since the last heartbeat, or None), or None if unknown."""
        return self._at(id).silence(id)  # type: ignore[no-any-return]

    def timing(self, id: str) -> Timing | None:
        """Status, silence and the service's own heartbeat timeout; None if unknown."""
        return self._at(id).timing(id)  # type: ignore[no-any-return]

    def is_healthy(self, id: str) -> bool:
        """RUNNING and heard within its own heartbeat timeout; False if unknown."""
        return bool(self._at(id).is_healthy(id))

    def report_error(self, id: str, error: str, plan: Plan | None) -> tuple[ServiceStatus | None, _Events]:
        """`service_error`; unless RECONNECTING: ERROR, then `plan`. Returns the prior status."""
        return self._at(id).report_error(id, error, plan)  # type: ignore[no-any-return]

    def restart(self, id: str, plan: Plan) -> tuple[ServiceStatus | None, _Events]:
        """Restart on request (RECONNECTING, then `plan`); returns the prior status."""
        return self._at(id).restart(id, plan)  # type: ignore[no-any-return]

    def restarts(self, id: str) -> int:
        """Restarts within the restart window now."""
        return int(self._at(id).restarts(id))

    def phi(self, id: str) -> float:
        """The phi detector's suspicion level for the service now."""
        return float(self._at(id).phi(id))

    def begin_stop(self, id: str) -> tuple[ServiceStatus | None, _Events]:
        """STOPPING unless already stopping or stopped; returns the prior status."""
        return self._at(id).begin_stop(id)  # type: ignore[no-any-return]

    def attempt_done(self, id: str, owner: str, attempt: int, ok: bool, plan: Plan, *,
                     timeout: float | None = None) -> _Events | None:
        """Leader of the service's partition: a claimed attempt's outcome; None when fenced, [] when stale."""
        return self._at(id).attempt_done(id, owner, attempt, ok, plan, timeout=timeout)  # type: ignore[no-any-return]

    def own(self, id: str, owner: str, ttl: float, tick: float, *args: Any) -> Owned:
        """Take or renew ownership of `id` (in its partition); see `OwnerStore.own`."""
        return self._at(id).own(id, owner, ttl, tick, *args)  # type: ignore[no-any-return]

    def disown(self, id: str, owner: str) -> None:
        """Give ownership of `id` up if `owner` holds it."""
        self._at(id).disown(id, owner)

    def owner_of(self, id: str) -> str | None:
        """The live owner of `id`, or None."""
        return self._at(id).owner_of(id)  # type: ignore[no-any-return]

    def __contains__(self, id: object) -> bool:
        return id in self._at(id)

    # -- every partition ------------------------------------------------------------------------

    def list_all(self) -> _Services:
        """Snapshots of every service, partition by partition."""
        return [service for part in self._parts for service in part.list_all()]

    def list(self, filter: ServiceFilter | None = None) -> _Services:
        """Snapshots of the services matching `filter` (all of them without one)."""
        return [service for part in self._parts for service in part.list(filter)]

    def find_by_capability(self, name: str) -> _Services:
        """Snapshots of the services offering capability `name`."""
        return [service for part in self._parts for service in part.find_by_capability(name)]

    def stats(self) -> RegistryStats:
        """Counts per status, summed over the partitions."""
        parts = [part.stats() for part in self._parts]
        return RegistryStats(*(sum(getattr(s, f) for s in parts) for f in RegistryStats.__dataclass_fields__))

    def health_check(self) -> _Ids:
        """Mark every RUNNING service silent for its timeout RECONNECTING; return their ids."""
        return [sid for part in self._parts for sid in part.health_check()]

    def clear(self) -> None:
        """Forget every service, the leases, the names and the event logs of the namespace."""
        for part, claims in zip(self._parts, self._claims, strict=True):
            part.clear()
            claims.clear()

    def count(self) -> int:
        """How many services are registered."""
        return sum(part.count() for part in self._parts)

    # -- the leaders' operations: one lease per partition --------------------------------------

    def lease(self, owner: str, ttl: float, *, partition: int = 0, polite: bool = False) -> Lease:
        """Take or renew the lease of `partition` for `ttl` seconds (`polite`: leave a free one free)."""
        return self._parts[partition].lease(owner, ttl, polite=polite)  # type: ignore[no-any-return]

    def leader(self, *, partition: int = 0) -> str | None:
        """The owner token of the process leading `partition`, or None."""
        return self._parts[partition].leader()  # type: ignore[no-any-return]

    def leaders(self) -> _Holders:
        """The owner token leading each partition (None: nobody), in partition order."""
        return [part.leader() for part in self._parts]

    def release(self, owner: str, *, partition: int | None = None) -> None:
        """Give up the lease of `partition` (None: every partition) if `owner` holds it."""
        for part in self._parts if partition is None else [self._parts[partition]]:
            part.release(owner)

    def sweep(self, owner: str, timeout: float, grace: float, limit: int, *, onset: Onset,
              tick: float | None = None, partition: int = 0) -> Sweep | None:
        """`SharedRegistry.sweep` of `partition`; None if `owner` does not lead it."""
        return self._parts[partition].sweep(  # type: ignore[no-any-return]
            owner, timeout, grace, limit, tick=tick, onset=onset)

    # -- the event logs, read together -----------------------------------------------------------

    def last_event_id(self) -> str:
        """Where a reader "from now on" starts: every partition's newest entry id, joined by commas."""
        return ",".join(part.last_event_id() for part in self._parts)

    def read_events(self, after: str = "$", *, block: float | None = None, count: int = 100) -> _Rows:
        """Events of every partition's log after position `after`, merged by entry time, oldest first.

        Each row's id is its own entry id, then ``/`` and the position after it, so that it both
        tells the entry's time and is where the next read starts.
        """
        cursor = self._cursor(after)
        together = self._read_together(cursor, count, block)
        if together is not None:
            return self._merge(cursor, count, together)
        rows = self._merged(cursor, count)
        if rows or block is None:
            return rows
        waiters = self._log_waiters()
        if waiters is not None:  # every part at once, a thread each
            return self._merged(cursor, count) if waiters.wait(cursor, block) else []
        # Block on one part at a time, in turn, for a slice: an event of another part is seen at
        # its turn, within `block`. Slices are counted, not timed, so a frozen clock cannot stall it.
        span = min(max(_SLICE, block / self.partitions), _SLICE_MAX)
        for turn in range(max(1, math.ceil(block / span))):
            p = turn % self.partitions
            if self._parts[p].read_events(cursor[p], block=span, count=1):
                return self._merged(cursor, count)
        return []

    def _read_together(self, cursor: _Texts, count: int, block: float | None) -> _Logs | None:
        """Each part's entries after `cursor`, read in one call (waiting up to `block`); None: read part by part."""
        return None

    def _log_waiters(self) -> LogWaiters | None:
        """What waits on every part's log at once where one read cannot (`read_events`); None: one part at a time."""
        return None

    def _cursor(self, after: str) -> _Texts:
        if after == "$":
            return self.last_event_id().split(",")
        position = after.rpartition("/")[2].split(",")
        if len(position) != self.partitions:
            raise FieldValueError("after", "element", f"must be a position of this namespace's {self.partitions} "
                                  f"event logs (as read_events and last_event_id give), got {after!r}")
        return position

    def _merged(self, cursor: _Texts, count: int) -> _Rows:
        return self._merge(cursor, count, self._read_each(cursor, count))

    def _read_each(self, cursor: _Texts, count: int) -> _Logs:
        """Each part's entries after `cursor`, without waiting, in partition order."""
        return [part.read_events(cursor[p], count=count) for p, part in enumerate(self._parts)]

    def _merge(self, cursor: _Texts, count: int, parts: _Logs) -> _Rows:
        """The first `count` of every part's rows (`parts`, in partition order) by entry time, with positions."""
        found: list[tuple[tuple[int, int], int, str, LifecycleEvent]] = []
        for p, part in enumerate(parts):
            for entry, event in part:
                found.append((_key(entry), p, entry, event))
        found.sort(key=lambda row: (row[0], row[1]))
        position: _Texts = [*cursor]
        rows: _Rows = []
        for _, p, entry, event in found[:count]:
            position[p] = entry
            rows.append((f"{entry}/{','.join(position)}", event))
        return rows


def _is_text(value: object) -> bool:
    # Callers type names as str, but bad input must still answer "not found", not crash.
    return isinstance(value, str)


def _key(entry: str) -> tuple[int, int]:
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq or 0)
