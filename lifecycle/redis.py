"""`RedisRegistry`: one registry shared by every manager on the same Redis (or Valkey) and namespace.

Install with ``pip install 'service-lifecycle[redis]'``. All state lives in a few hashes and
sorted sets under ``lifecycle:{<namespace>}:*`` (one hash tag: one Redis Cluster slot); every
read-modify-write is one server-side script (`lifecycle._redis_scripts`), and every time is the
server's. See docs/fleet.md for the key layout, failover and outages.

`RedisRegistry` is the registry's meaning (arguments, what each reply says); how it reaches the
server (scripts, keys, ARGV, the error table) is `lifecycle._redis_client`, the wire format of
services, replies and the event log is `lifecycle._redis_codec`.
"""

from __future__ import annotations

import builtins
import logging
import math
import uuid
from typing import Any

try:
    import redis as _redis
    from redis.cluster import RedisCluster
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "lifecycle.redis needs redis-py: pip install 'service-lifecycle[redis]'"
    ) from exc

from . import _redis_scripts as _scripts
from . import _validate
from ._partitions import check_partitions
from ._redis_bulk import ManyAtOnce
from ._redis_client import Client, ScriptClient, open_url
from ._redis_codec import (
    _US,
    _beaten,
    _decode,
    _encode,
    _entry_id,
    _events,
    _onset_args,
    _own_timeout,
    _plan_args,
    _prior,
    _rows,
    _rows_after,
    _sweep,
    _text,
    _us,
)
from ._redis_url import check_redis_url
from .errors import FieldTypeError, RegistryRefused, RegistryUnavailable, ServiceAlreadyExists
from .events import LifecycleEvent
from .fleet import Lease, Onset, Plan, SharedRegistry, StoreSettings, Sweep, Timing
from .model import ExtensionService, RegistrationInfo, ServiceFilter, ServiceId, ServiceStatus, _status
from .phi import phi_of
from .registry import Owned, RegistryStats, _not_found

__all__ = ["RedisRegistry"]

log = logging.getLogger("lifecycle")

_Events = list[LifecycleEvent]
_Services = list[ExtensionService]
_Rows = list[tuple[str, LifecycleEvent]]
_Ids = list[ServiceId]


class RedisRegistry(ManyAtOnce, SharedRegistry):
    """A `SharedRegistry` on Redis or Valkey: safe to share between threads, processes and hosts.

    `namespace` separates fleets on one server. `lease_ttl_secs` bounds how long the fleet goes
    without an acting leader after the leader dies (takeover within it plus one lease check, a
    third of it). `events_maxlen` bounds the fleet event log
    (a stream; 0 turns it off); heartbeats are logged only with `log_heartbeats=True`, since
    they would multiply the writes. Registry calls raise `RegistryUnavailable` when the server
    cannot be reached or refuses for a while (`reason` says why), `RegistryRefused` when it
    refuses this client (credentials, ACL, missing commands, database: a configuration to
    fix); never a redis-py exception.

    `client` is a `redis.Redis` (one server, or a proxy) or a `redis.cluster.RedisCluster`: every
    key of a partition carries one hash tag (one cluster slot). `partitions` > 1 spreads the
    namespace over that many (see `lifecycle._redis_parts`); the count is recorded in the server.
    """

    def __new__(cls, client: Client, *, partitions: int = 1, **options: Any) -> RedisRegistry:
        from ._redis_parts import PartitionedRedis  # the namespace over several hash tags: a subclass of this one
        return object.__new__(PartitionedRedis if cls is RedisRegistry and partitions != 1 else cls)

    def __init__(
        self,
        client: Client,
        *,
        namespace: str = "lifecycle",
        partitions: int = 1,
        heartbeat_timeout_secs: float = 60.0,
        events_maxlen: int = 10_000,
        log_heartbeats: bool = False,
        lease_ttl_secs: float = 5.0,
    ) -> None:
        if not isinstance(client, (_redis.Redis, RedisCluster)):
            raise TypeError("client must be a redis.Redis or a redis.cluster.RedisCluster, not "
                            f"{type(client).__name__}")
        self.namespace = _validate.text(namespace, "namespace")
        if "{" in namespace or "}" in namespace:
            raise ValueError("namespace must not contain braces (it becomes the keys' hash tag)")
        self.partitions = check_partitions(partitions)
        self.heartbeat_timeout_secs = _validate.number(heartbeat_timeout_secs, "heartbeat_timeout_secs",
                                                       positive=True)
        self.events_maxlen = _validate.integer(events_maxlen, "events_maxlen", minimum=0)
        self.log_heartbeats = _validate.flag(log_heartbeats, "log_heartbeats")
        self.lease_ttl_secs = _validate.number(lease_ttl_secs, "lease_ttl_secs", positive=True)
        self._calls = ScriptClient(client, namespace, events_maxlen=self.events_maxlen,
                                   log_heartbeats=self.log_heartbeats, timeout=self.heartbeat_timeout_secs)
        self.keys = self._calls.keys
        self._run = self._calls.run  # the scripts, with their keys and ARGV head (the calls' one hot path)
        self._command = self._calls.command  # plain commands

    def configure(self, settings: StoreSettings) -> None:
        """Keep `settings` and send them with every later call (the engine calls this once, when built).

        From then on `settings.timeout` is the default heartbeat timeout of every operation (the
        `timeout` arguments are ignored) and restart intensity and the phi detector are on as set.
        Every process of a fleet should be configured alike: each script decides with the
        settings of the process that called it.
        """
        if not isinstance(settings, StoreSettings):
            raise TypeError(f"settings must be a StoreSettings, not {type(settings).__name__}")
        self._calls.configure(settings)

    @property
    def settings(self) -> StoreSettings | None:
        """What `configure` was given, or None."""
        return self._calls.settings

    @classmethod
    def from_url(cls, url: str, *, namespace: str = "lifecycle", partitions: int = 1, cluster: bool | None = None,
                 heartbeat_timeout_secs: float = 60.0, events_maxlen: int = 10_000, log_heartbeats: bool = False,
                 lease_ttl_secs: float = 5.0, **redis_kwargs: Any) -> RedisRegistry:
        """A registry on the server at `url` (``redis://``, ``rediss://``, ``unix://``, with password or not).

        The URL of any node of a Redis Cluster works: with `cluster` None the first call that
        reaches the server asks whether it is one (``INFO cluster``) and, if so, goes on with a
        `RedisCluster`, which follows the slot to whichever node serves it; True or False says
        so instead of asking. A cluster has database 0 only.

        Timeouts and retries are set explicitly (5 s to connect and per call, one retry, a health
        check of idle connections; `redis_kwargs` overrides them). A URL it cannot use raises
        `FieldValueError` (field ``url``) naming every problem, before anything connects.
        """
        check_redis_url(url)
        partitions = check_partitions(partitions)
        if cluster is not None and not isinstance(cluster, bool):
            raise FieldTypeError("cluster", "type", f"must be True, False or None (ask the server), not "
                                 f"{type(cluster).__name__}")
        client, db, options = open_url(url, cluster, redis_kwargs)
        registry = cls(client, namespace=namespace, partitions=partitions,
                       heartbeat_timeout_secs=heartbeat_timeout_secs, events_maxlen=events_maxlen,
                       log_heartbeats=log_heartbeats, lease_ttl_secs=lease_ttl_secs)
        if cluster is not False:
            registry._calls.use_url(url, options, client, cluster, db)
        return registry

    def __repr__(self) -> str:
        host, port = self._calls.where
        return f"<RedisRegistry {host}:{port} namespace={self.namespace!r}>"

    @property
    def client(self) -> Client:
        """The redis-py client (for the fleet event log and diagnostics): a `RedisCluster` on a cluster.

        A registry made by `from_url` knows whether the server is a cluster once a call has
        reached it; until then this is the plain client of the URL's server.
        """
        return self._calls.client

    @property
    def cluster(self) -> bool | None:
        """True on a Redis Cluster, False on one server; None until a call of `from_url`'s registry reached it."""
        return self._calls.cluster

    def _error(self, exc: BaseException) -> RegistryUnavailable | RegistryRefused:
        """The lifecycle error for an error redis-py raised (see `ScriptClient.error`), to raise from it."""
        return self._calls.error(exc)

    # -- Registry ------------------------------------------------------------------------------

    def register(self, service: ExtensionService) -> ServiceId:
        """Store `service`; a second service with its name or id is refused."""
        return self._register(service, join=False)[0]

    def join(self, service: ExtensionService) -> tuple[ServiceId, bool]:
        """Register, or join the one already registered with this id (or this name and version)."""
        return self._register(service, join=True)

    def _register(self, service: ExtensionService, *, join: bool) -> tuple[ServiceId, bool]:
        if not isinstance(service, ExtensionService):
            raise TypeError(f"service must be an ExtensionService, not {type(service).__name__}")
        code, sid = self._run("REGISTER", service.id, service.name, service.version, _encode(service),
                              service.status.value, "1" if join else "0", _own_timeout(service))
        code, sid = _text(code), ServiceId(_text(sid))
        if code == "name_taken":
            raise ServiceAlreadyExists.named(service.name, sid)
        if code == "id_taken":
            raise ServiceAlreadyExists.with_id(sid)
        return sid, code == "joined"

    def restore(self, service: ExtensionService, timeout: float) -> bool:
        """Re-register `service` as RUNNING with a full deadline if the server lost it."""
        result = self._run("RESTORE", service.id, _encode(service), service.name, _own_timeout(service),
                           timeout=timeout)
        return _text(result[0]) == "restored"

    def unregister(self, id: str) -> RegistrationInfo:
        """Remove the service and return its last registration record."""
        return self._unregister(id, emit=False)[0]

    def finish_stop(self, id: str) -> _Events:
        """STOPPED, unregister, `service_stopped`."""
        return self._unregister(id, emit=True)[1]

    def _unregister(self, id: str, *, emit: bool) -> tuple[RegistrationInfo, _Events]:
        if not isinstance(id, str):
            raise _not_found(id)
        result = self._run("UNREGISTER", id, "1" if emit else "0")
        if _text(result[0]) == "missing":
            raise _not_found(id)
        return _decode(result[1]), _events(result[2])

    def get(self, id: str) -> ExtensionService | None:
        """A snapshot of the service, or None."""
        info = self.get_registration(id)
        return None if info is None else info.service

    def get_by_name(self, name: str) -> ExtensionService | None:
        """A snapshot of the service called `name`, or None."""
        if not _is_text(name):
            return None
        sid = self._command(lambda client: client.hget(self.keys["names"], name))
        return None if sid is None else self.get(_text(sid))

    def get_registration(self, id: str) -> RegistrationInfo | None:
        """A snapshot of the registration record, or None."""
        if not _is_text(id):
            return None
        result = self._run("GET", id)
        return None if _text(result[0]) == "missing" else _decode(result[1])

    def update_status(self, id: str, status: ServiceStatus, *, expected: ServiceStatus | None = None
                      ) -> ServiceStatus:
        """Set the status (only if it is `expected`, when given); returns the status found."""
        status = _status(status)
        if not isinstance(id, str):
            raise _not_found(id)
        result = self._run("SET_STATUS", id, status.value, "" if expected is None else _status(expected).value)
        prior = _prior(result[0])
        if prior is None:
            raise _not_found(id)
        return prior

    def heartbeat(self, id: str) -> ServiceStatus:
        """Record a heartbeat now (not for a STOPPING or STOPPED service); returns the prior status.

        Unlike the in-memory registry, a RECONNECTING or ERROR service is also made RUNNING
        again, atomically with the beat (fleet mode's revival).
        """
        return self.beat(id, self.heartbeat_timeout_secs)[0] or _raise(_not_found(id))

    def beat(self, id: str, timeout: float) -> tuple[ServiceStatus | None, _Events]:
        """Record a heartbeat; a RECONNECTING or ERROR service becomes RUNNING. Returns the prior status."""
        if not isinstance(id, str):
            raise _not_found(id)
        result = self._calls.run_hot(self._calls.beats[0], id, timeout=timeout)  # a beat sent twice is one beat
        if _text(result[0]) == "revive":
            # Rare: the hot script leaves a revival (with every key declared) to REVIVE, which checks again.
            result = self._run("REVIVE", id, timeout=timeout)
        return _beaten(result)

    def activate(self, id: str, timeout: float) -> _Events:
        """STARTING -> RUNNING with a full deadline; the start counts as a heartbeat."""
        result = self._run("ACTIVATE", id, timeout=timeout)
        return _events(result[1]) if len(result) > 1 else []

    def expire(self, id: str, timeout: float, status: ServiceStatus) -> ServiceStatus | None:
        """If RUNNING and silent for `timeout` seconds, set `status` and return RUNNING; else None."""
        result = self._run("EXPIRE", id, _status(status).value, _us(timeout))
        return ServiceStatus.RUNNING if _text(result[0]) == "expired" else None

    def silence(self, id: str) -> tuple[ServiceStatus, float | None] | None:
        """(status, seconds since the last heartbeat on the server's clock, or None), or None if unknown."""
        if not _is_text(id):
            return None
        code, *rest = self._run("SILENCE", id)
        if _text(code) == "missing":
            return None
        silent = int(_text(rest[0]))
        return ServiceStatus(_text(code)), (None if silent < 0 else silent / _US)

    def timing(self, id: str) -> Timing | None:
        """Status, seconds since the last heartbeat (None: never) and the service's heartbeat timeout; None if unknown.

        The timeout is the service's own (`TransportConfig.heartbeat_timeout_secs`), else the
        default: the configured one, else the registry's `heartbeat_timeout_secs`.
        """
        if not _is_text(id):
            return None
        code, *rest = self._run("TIMING", id)
        if _text(code) == "missing":
            return None
        silent = int(_text(rest[0]))
        return Timing(ServiceStatus(_text(code)), None if silent < 0 else silent / _US, int(_text(rest[1])) / _US)

    def is_healthy(self, id: str) -> bool:
        """RUNNING and heard within its own heartbeat timeout (see `timing`); False if unknown."""
        timing = self.timing(id)
        return timing is not None and timing.healthy

    def report_error(self, id: str, error: str, plan: Plan | None) -> tuple[ServiceStatus | None, _Events]:
        """`service_error`; unless RECONNECTING: ERROR, then `plan`. Returns the prior status."""
        args = _plan_args(plan) if plan is not None else ("", 0, 0, 0)
        result = self._run("REPORT_ERROR", id, error, *args)
        return _prior(result[0]), (_events(result[1]) if len(result) > 1 else [])

    def restart(self, id: str, plan: Plan) -> tuple[ServiceStatus | None, _Events]:
        """Restart on request: from RUNNING, RECONNECTING or ERROR (flapping too), RECONNECTING and then `plan`.

        The restart window starts afresh and the service is no longer flapping; a claimed
        attempt is void. Any other status (or a missing service) is returned and nothing changes.
        """
        if not isinstance(id, str):
            raise _not_found(id)
        if not isinstance(plan, Plan):
            raise TypeError(f"plan must be a Plan, not {type(plan).__name__}")
        result = self._run("RESTART", id, *_plan_args(plan))
        return _prior(result[0]), (_events(result[1]) if len(result) > 1 else [])

    def restarts(self, id: str) -> int:
        """Restarts (reconnect cycles begun) within the restart window now; 0 without `max_restarts` or unknown id."""
        if self.settings is None or self.settings.max_restarts is None or not _is_text(id):
            return 0
        return int(self._run("RESTARTS", id)[1])

    def phi(self, id: str) -> float:
        """The phi detector's suspicion level for the service now (as `History.phi`); 0.0 without phi or history."""
        settings = None if self.settings is None else self.settings.phi
        if settings is None or not _is_text(id):
            return 0.0
        result = self._run("PHI_READ", id)
        if _text(result[0]) != "ok":
            return 0.0
        silent, total, squares, n = (float(_text(x)) for x in result[1:5])
        mean = total / n
        std = math.sqrt(max(0.0, squares / n - mean * mean)) / _US
        return phi_of(silent / _US, mean / _US + settings.acceptable_pause, max(std, settings.min_std_deviation))

    def begin_stop(self, id: str) -> tuple[ServiceStatus | None, _Events]:
        """STOPPING unless already stopping or stopped; returns the prior status."""
        result = self._run("BEGIN_STOP", id)
        return _prior(result[0]), (_events(result[1]) if len(result) > 1 else [])

    def list_all(self) -> _Services:
        """Snapshots of every service."""
        return self._list("")

    def list(self, filter: ServiceFilter | None = None) -> _Services:
        """Snapshots of the services matching `filter` (all of them without one); status is matched on the server."""
        if filter is None:
            return self.list_all()
        if not isinstance(filter, ServiceFilter):
            raise TypeError(f"filter must be a ServiceFilter, not {type(filter).__name__}")
        services = self._list("" if filter.status is None else filter.status.value)
        return [s for s in services if filter.matches(s)]

    def _list(self, status: str) -> _Services:
        return [_decode(row).service for row in self._run("LIST", status)[1]]

    def find_by_capability(self, name: str) -> _Services:
        """Snapshots of the services offering capability `name`."""
        return self.list(ServiceFilter(capability=name))

    def stats(self) -> RegistryStats:
        """Counts per status."""
        return _stats(self._run("STATS")[1])

    def partition_of(self, id: str) -> int:
        """The partition holding service `id`: 0, the namespace being one partition (see `PartitionedRedis`)."""
        return 0

    def health_check(self) -> _Ids:
        """Mark every RUNNING service silent for `heartbeat_timeout_secs` RECONNECTING; return their ids."""
        result = self._run("HEALTH_CHECK", ServiceStatus.RECONNECTING.value)
        return [ServiceId(_text(i)) for i in result[1]]

    def clear(self) -> None:
        """Forget every service, the lease and the event log of this namespace."""
        self._run("CLEAR")

    def count(self) -> int:
        """How many services are registered."""
        return int(self._command(lambda client: client.hlen(self.keys["status"])))

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, str):
            return False
        return bool(self._command(lambda client: client.hexists(self.keys["status"], id)))

    # -- the leader's operations ---------------------------------------------------------------

    def lease(self, owner: str, ttl: float, *, polite: bool = False) -> Lease:
        """Take or renew the leader lease for `ttl` seconds (`polite`: leave a free one free, see `SharedRegistry`)."""
        new = uuid.uuid4().hex  # the generation marker, if the server has none (its data was lost, or never was)
        code, generation = self._run("LEASE", owner, max(1, round(ttl * 1000)) if ttl > 0 else 0, new, int(polite))
        self._calls.recheck_record(_text(generation) == new)  # ours: the count's record went too
        return Lease(_text(code) == "leader", _text(generation), _text(code) == "free")

    def leader(self) -> str | None:
        """The owner token (host:pid:random) of the process holding the lease, or None."""
        holder = self._command(lambda client: client.get(self.keys["lease"]))
        return None if holder is None else _text(holder)

    def release(self, owner: str) -> None:
        """Give the lease up if `owner` holds it."""
        self._run("RELEASE", owner)

    def sweep(self, owner: str, timeout: float, grace: float, limit: int, *, onset: Onset,
              tick: float | None = None) -> Sweep | None:
        """Time out what is due now and claim due attempts (see `SharedRegistry.sweep`); None if `owner` is fenced.

        A claimed attempt is parked for its service's `transport.timeout_secs` plus `tick` (the
        leader's tick interval; default `lease_ttl_secs`): the leader reports its outcome well
        before then. If the outcome is lost (the server restarted mid-attempt), the parked
        attempt is due again then and the next sweep hands the same attempt out again.
        """
        tick = self.lease_ttl_secs if tick is None else _validate.duration(tick, "tick", positive=False)
        result = self._run("SWEEP", owner, _us(grace), limit, _us(tick), *_onset_args(onset), timeout=timeout)
        if _text(result[0]) == "fenced":
            return None
        return _sweep(result)

    def attempt_done(self, id: str, owner: str, attempt: int, ok: bool, plan: Plan, *,
                     timeout: float | None = None) -> _Events | None:
        """A claimed attempt's outcome, a success due again in `timeout` s; None when fenced, [] when stale."""
        result = self._run("ATTEMPT_DONE", id, owner, attempt, "1" if ok else "0", *_plan_args(plan),
                           timeout=timeout)
        code = _text(result[0])
        if code == "fenced":
            return None
        return _events(result[1]) if code == "ok" else []

    def last_event_id(self) -> str:
        """The id of the fleet log's newest entry ("0-0" when empty): where a reader "from now on" starts."""
        newest: Any = self._command(lambda client: client.xrevrange(self.keys["events"], count=1))
        return _text(newest[0][0]) if newest else "0-0"

    def read_events(self, after: str = "$", *, block: float | None = None, count: int = 100
                    ) -> _Rows:
        """Events of the fleet log after stream id `after` ("$": only new ones), oldest first.

        A `block` the connection's socket timeout would cut is made shorter (see `ScriptClient.block_within`).
        """
        key = self.keys["events"]
        if block is None and after != "$":
            start = _entry_id(after)
            return _rows_after(self._command(lambda client: client.xrange(key, start, "+", count + 1)), start, count)
        wait = None if block is None else max(1, round(self._calls.block_within(block) * 1000))
        return _rows(self._command(lambda client: client.xread({key: after}, count=count, block=wait)))

    # -- ownership of process-bound services (see lifecycle.engine.owner) ---------------------------

    def _owner_script(self, name: str, *args: object) -> builtins.list[Any]:
        calls = self._calls
        if name not in calls._scripts:  # registered on first use, beside the registry's own scripts
            calls._scripts[name] = calls.client.register_script(_scripts.source(name))
            calls._declared[name] = [calls.keys[key] for key in _scripts.keys_for(name)]
        return self._run(name, *args)

    def own(self, id: str, owner: str, ttl: float, tick: float, child: str | None = None) -> Owned:
        """Take or renew ownership of `id` for `ttl` s; as owner, claim the due attempt (parked timeout + `tick`)."""
        code, epoch, fresh, status, attempt, before = self._owner_script(
            "OWN", id, owner, max(1, round(ttl * 1000)), _us(tick), "-" if child is None else child)
        return Owned(_text(code), int(epoch), _text(fresh) == "1", _text(status), int(attempt), _text(before))

    def disown(self, id: str, owner: str) -> None:
        """Give ownership of `id` up if `owner` holds it."""
        self._owner_script("DISOWN", id, owner)

    def owner_of(self, id: str) -> str | None:
        """The live owner of `id` (its token), or None."""
        holder = _text(self._owner_script("OWNER_OF", id)[0])
        return holder or None


def _stats(flat: builtins.list[Any]) -> RegistryStats:
    """The STATS script's reply (status, count, status, count...) as counts per status."""
    counts = {_text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
    return RegistryStats(
        total=sum(counts.values()), starting=counts.get("starting", 0), running=counts.get("running", 0),
        stopping=counts.get("stopping", 0), stopped=counts.get("stopped", 0), errors=counts.get("error", 0),
        reconnecting=counts.get("reconnecting", 0),
    )


def _is_text(value: object) -> bool:
    # Callers type ids as str, but bad input must still answer "not found", not crash.
    return isinstance(value, str)


def _raise(exc: Exception) -> ServiceStatus:
    raise exc
