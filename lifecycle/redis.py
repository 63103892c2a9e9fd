"""`RedisRegistry`: one registry shared by every manager on the same Redis (or Valkey) and namespace.

Install with ``pip install 'service-lifecycle[redis]'``. All state lives in a few hashes and
sorted sets under ``lifecycle:{<namespace>}:*`` (one hash tag: one Redis Cluster slot); every
read-modify-write is one server-side script (`lifecycle._redis_scripts`), and every time is the
server's. See docs/fleet.md for the key layout, failover and outages.
"""

from __future__ import annotations

import json
import logging
import math
import re
import ssl
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

try:
    import redis as _redis
    from redis.backoff import ExponentialBackoff as _Backoff
    from redis.retry import Retry as _Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "lifecycle.redis needs redis-py: pip install 'service-lifecycle[redis]'"
    ) from exc

from . import _redis_scripts as scripts
from . import _validate
from .errors import RegistryRefused, RegistryUnavailable, ServiceAlreadyExists
from .events import (
    Error,
    HeartbeatTimeout,
    LifecycleEvent,
    Reconnected,
    ReconnectFailed,
    Reconnecting,
    ServiceFlapping,
    Started,
    StatusChanged,
    Stopped,
)
from .fleet import Detail, Lease, Plan, StoreSettings, Sweep, Timing
from .model import (
    Capability,
    ExtensionService,
    RegistrationInfo,
    ServiceFilter,
    ServiceId,
    ServiceStatus,
    TransportConfig,
    _status,
)
from .phi import phi_of
from .registry import RegistryStats, _not_found

__all__ = ["RedisRegistry"]

log = logging.getLogger("lifecycle")

_US = 1_000_000
_Events = list[LifecycleEvent]
_Services = list[ExtensionService]
_Rows = list[tuple[str, LifecycleEvent]]
_Ids = list[ServiceId]
_Plans = list[tuple[str, Plan]]

# -- redis-py's errors, classified -------------------------------------------------------------------

_E = _redis.exceptions
# Every error a redis-py call may raise. RedisClusterException is not a RedisError.
_REDIS_ERRORS: tuple[type[Exception], ...] = (_E.RedisError, _E.RedisClusterException)
_UNAVAILABLE, _REFUSED = "unavailable", "refused"
_Class = tuple[str, str]  # (kind, reason)

# The one table: redis-py exception class, first match wins (subclasses before their parents;
# classes a redis-py version lacks are left out) ...
_BY_CLASS: tuple[tuple[type[BaseException], _Class], ...] = tuple((cls, verdict) for cls, verdict in (
    (getattr(_E, "AuthenticationError", None), (_REFUSED, "auth")),  # WRONGPASS, NOAUTH, "invalid password"
    (getattr(_E, "AuthorizationError", None), (_REFUSED, "auth")),
    (getattr(_E, "AuthenticationWrongNumberOfArgsError", None), (_REFUSED, "auth")),
    (getattr(_E, "NoPermissionError", None), (_REFUSED, "permission")),  # NOPERM (ACL)
    (getattr(_E, "ClusterCrossSlotError", None), (_REFUSED, "cross_slot")),  # CROSSSLOT
    (getattr(_E, "CrossSlotTransactionError", None), (_REFUSED, "cross_slot")),
    (getattr(_E, "BusyLoadingError", None), (_UNAVAILABLE, "loading")),  # LOADING
    (getattr(_E, "MaxClientsReachedError", None), (_UNAVAILABLE, "max_clients")),
    (getattr(_E, "MaxConnectionsError", None), (_UNAVAILABLE, "max_connections")),
    (_E.TimeoutError, (_UNAVAILABLE, "timeout")),
    (_E.ConnectionError, (_UNAVAILABLE, "connection")),  # a TLS certificate refused: see _classify
    (getattr(_E, "OutOfMemoryError", None), (_UNAVAILABLE, "out_of_memory")),  # OOM
    (getattr(_E, "ReadOnlyError", None), (_UNAVAILABLE, "read_only")),  # READONLY
    (getattr(_E, "NoScriptError", None), (_UNAVAILABLE, "no_script")),  # NOSCRIPT after redis-py's reload
    (getattr(_E, "MasterDownError", None), (_UNAVAILABLE, "master_down")),  # MASTERDOWN
    (getattr(_E, "ClusterDownError", None), (_UNAVAILABLE, "cluster_down")),  # CLUSTERDOWN
    (getattr(_E, "MovedError", None), (_UNAVAILABLE, "moved")),  # MOVED
    (getattr(_E, "AskError", None), (_UNAVAILABLE, "moved")),  # ASK
    (getattr(_E, "TryAgainError", None), (_UNAVAILABLE, "try_again")),  # TRYAGAIN
    (getattr(_E, "SlotNotCoveredError", None), (_UNAVAILABLE, "cluster_down")),
    (getattr(_E, "ClusterError", None), (_UNAVAILABLE, "cluster")),  # "TTL exhausted."
    (_E.RedisClusterException, (_UNAVAILABLE, "cluster")),
    (_E.InvalidResponse, (_UNAVAILABLE, "protocol")),
) if isinstance(cls, type))

# ... else the server's error code (the reply's first word: redis-py 5.x leaves codes it has no
# class for in the message, 6+ also keeps it in `status_code`) ...
_BY_CODE: dict[str, _Class] = {
    "WRONGPASS": (_REFUSED, "auth"), "NOAUTH": (_REFUSED, "auth"), "NOPERM": (_REFUSED, "permission"),
    "WRONGTYPE": (_REFUSED, "wrong_type"), "CROSSSLOT": (_REFUSED, "cross_slot"),
    "OOM": (_UNAVAILABLE, "out_of_memory"), "READONLY": (_UNAVAILABLE, "read_only"),
    "LOADING": (_UNAVAILABLE, "loading"), "BUSY": (_UNAVAILABLE, "busy"),
    "MASTERDOWN": (_UNAVAILABLE, "master_down"), "CLUSTERDOWN": (_UNAVAILABLE, "cluster_down"),
    "TRYAGAIN": (_UNAVAILABLE, "try_again"), "MOVED": (_UNAVAILABLE, "moved"), "ASK": (_UNAVAILABLE, "moved"),
    "NOREPLICAS": (_UNAVAILABLE, "no_replicas"), "MISCONF": (_UNAVAILABLE, "persistence"),
    "UNBLOCKED": (_UNAVAILABLE, "unblocked"), "NOSCRIPT": (_UNAVAILABLE, "no_script"),
}

# ... else, for a plain ERR, words of the message; anything else is ("unavailable", "error").
_BY_MESSAGE: tuple[tuple[str, _Class], ...] = (
    ("unknown command", (_REFUSED, "unknown_command")),
    ("unknown subcommand", (_REFUSED, "unknown_command")),
    ("db index is out of range", (_REFUSED, "database")),
    ("invalid db index", (_REFUSED, "database")),
    ("select is not allowed in cluster mode", (_REFUSED, "database")),
    ("invalid password", (_REFUSED, "auth")),
    ("max number of clients reached", (_UNAVAILABLE, "max_clients")),
)

_CODE = re.compile(r"[A-Z][A-Z0-9_]{1,63}\Z")
# Redis < 7 wraps an error met inside a script: "Error running script (...): ...: -OOM command not allowed..."
_IN_SCRIPT = re.compile(r"-([A-Z][A-Z0-9_]{1,63}) ")
_PIPELINE = re.compile(r"^Command # \d+ \(.*?\) of pipeline caused error: ", re.DOTALL)


def _code(exc: BaseException, text: str) -> str:
    """The server's error code ("OOM", "BUSY", ...), "ERR", or "" (not a server's reply)."""
    code = getattr(exc, "status_code", None)
    if isinstance(code, str) and code != "ERR":
        return code
    if not isinstance(exc, _E.ResponseError):
        return code or ""
    first = text.split(" ", 1)[0]
    if _CODE.match(first) and first != "ERR":
        return first
    if "Error running script" in text or "user_script" in text:
        found = _IN_SCRIPT.search(text)
        if found is not None:
            return found.group(1)
    return "ERR" if code == "ERR" or first == "ERR" else ""


def _reply(exc: BaseException) -> str:
    """The server's words, without redis-py's pipeline preamble (which repeats the command's arguments)."""
    return _PIPELINE.sub("", str(exc))


def _classify(exc: BaseException) -> _Class:
    """(kind, reason) of an error redis-py raised: kind "unavailable" (transient: retry) or "refused" (fix the
    configuration). By the server's error code first, then by class, then by the words of a plain ERR."""
    text = _reply(exc)
    if isinstance(exc, _E.ConnectionError) and not isinstance(exc, _E.AuthenticationError) and _tls_refused(exc):
        return _REFUSED, "tls"
    code = _code(exc, text)
    verdict = _BY_CODE.get(code)
    if verdict is not None:
        return verdict
    for cls, verdict in _BY_CLASS:
        if isinstance(exc, cls):
            return verdict
    lowered = text.lower()
    for words, verdict in _BY_MESSAGE:
        if words in lowered:
            return verdict
    return _UNAVAILABLE, "error"


def _tls_refused(exc: BaseException) -> bool:
    """A certificate the client did not accept (redis-py reports it as a ConnectionError, the ssl error chained)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


_FIX = {
    "auth": "the server refused this client's credentials: check the user name and password (the URL's "
            "redis://user:password@host part, or username=/password=)",
    "permission": "the ACL user may not run a command lifecycle needs, or not on its keys: grant it "
                  "+@scripting +@read +@write +@connection +time on ~lifecycle:{{{namespace}}}:* (or use "
                  "another user)",
    "unknown_command": "the server (or a proxy in front of it) lacks or renamed a command lifecycle needs: Lua "
                       "scripting (EVALSHA, SCRIPT LOAD) and streams (XADD, XREAD) of Redis 5.0+ or Valkey",
    "database": "the server has no such database: use a database number below its 'databases' setting in the "
                "URL's path (/0 on Redis Cluster)",
    "wrong_type": "a key under lifecycle:{{{namespace}}}: holds another type: another program uses this "
                  "namespace; choose another namespace or delete those keys",
    "cross_slot": "a key outside the namespace's hash slot: a lifecycle bug, please report it",
    "tls": "the server's TLS certificate was not accepted: check ssl_ca_certs (or ssl_cert_reqs) and the "
           "server's certificate",
}
_WHY = {
    "connection": "cannot be reached", "timeout": "did not answer in time",
    "out_of_memory": "is out of memory (maxmemory reached, noeviction): raise maxmemory or free memory",
    "read_only": "is a read-only replica: point lifecycle at the primary (during a failover this passes)",
    "loading": "is loading its data", "busy": "is busy running a script",
    "master_down": "is a replica that lost its primary", "cluster_down": "reports the cluster down",
    "try_again": "is migrating the namespace's slot", "moved": "no longer serves the namespace's slot",
    "no_replicas": "has fewer replicas than min-replicas-to-write",
    "persistence": "cannot write to disk (MISCONF) and refuses writes",
    "unblocked": "interrupted a blocking read", "no_script": "lost its script cache again",
    "max_clients": "has reached maxclients", "max_connections": "has no free connection in this client's pool",
    "protocol": "sent a reply that could not be read", "cluster": "could not serve the call (cluster)",
    "error": "answered with an unexpected error",
}
_QUOTE_MAX = 200


def _us(seconds: float) -> str:
    return str(round(seconds * _US))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _encode(service: ExtensionService) -> str:
    """The service's description as JSON (status and times live in their own keys)."""
    transport = service.transport
    try:
        return json.dumps({
            "id": str(service.id), "name": service.name, "version": service.version,
            "description": service.description, "metadata": service.metadata,
            "capabilities": [{"name": c.name, "version": c.version, "config": c.config} for c in service.capabilities],
            "transport": {
                "transport_type": transport.transport_type.value, "address": transport.address,
                "port": transport.port, "command": transport.command, "args": transport.args,
                "env": transport.env, "cwd": transport.cwd, "timeout_secs": transport.timeout_secs,
                "auto_reconnect": transport.auto_reconnect, "max_retries": transport.max_retries,
                "heartbeat_interval_secs": transport.heartbeat_interval_secs,
                "heartbeat_timeout_secs": transport.heartbeat_timeout_secs,
                "ping_interval_secs": transport.ping_interval_secs,
                "max_reconnect_attempts": transport.max_reconnect_attempts,
            },
        }, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"service {service.name!r}: metadata and capability config must be JSON data ({exc})") from None


def _decode(row: Sequence[Any]) -> RegistrationInfo:
    """A registration record from `info()` in the scripts: json, registered, updated, status, silent, attempt, now."""
    data = json.loads(_text(row[0]))
    silent = int(_text(row[4]))
    now = int(_text(row[6]))
    service = ExtensionService(
        data["name"], data["version"], description=data["description"], metadata=data["metadata"],
        capabilities=[Capability(c["name"], c["version"], c["config"]) for c in data["capabilities"]],
        transport=TransportConfig(**data["transport"]), id=ServiceId(data["id"]),
        status=ServiceStatus(_text(row[3])),
        # The server says how long ago; our monotonic clock says when that was.
        last_heartbeat=None if silent < 0 else time.monotonic() - silent / _US,
        retry_count=int(_text(row[5])),
    )
    # Registration times are the server's, taken back to UTC datetimes through its own "now".
    wall = datetime.now(UTC).timestamp()

    def when(us: Any) -> datetime:
        return datetime.fromtimestamp(wall - (now - int(_text(us))) / _US, UTC)

    return RegistrationInfo(service, when(row[1]), when(row[2]))


def _event(fields: Sequence[Any], at: float | None = None) -> LifecycleEvent | None:
    """A `LifecycleEvent` from a logged field list (None for a kind this version does not know)."""
    f = {_text(fields[i]): _text(fields[i + 1]) for i in range(0, len(fields) - 1, 2)}
    sid = ServiceId(f["id"])
    at = time.monotonic() if at is None else at
    kind = f["type"]
    if kind == "status_changed":
        return StatusChanged(sid, at, ServiceStatus(f["old"]), ServiceStatus(f["new"]))
    if kind == "reconnecting":
        return Reconnecting(sid, at, int(f["attempt"]), int(f["max_attempts"]), int(f["delay"]) / _US)
    if kind == "reconnect_failed":
        return ReconnectFailed(sid, at, int(f["attempts"]))
    if kind == "service_error":
        return Error(sid, at, f["error"])
    if kind == "service_flapping":
        return ServiceFlapping(sid, at, int(f["restarts"]), int(f["window"]) / _US)
    simple: dict[str, Callable[[ServiceId, float], LifecycleEvent]] = {
        "service_started": Started, "service_stopped": Stopped, "heartbeat_timeout": HeartbeatTimeout,
        "reconnected": Reconnected,
    }
    make = simple.get(kind)
    if make is None:
        from .events import Heartbeat  # only logged with log_heartbeats=True
        return Heartbeat(sid, at) if kind == "heartbeat_received" else None
    return make(sid, at)


def _events(raw: Sequence[Any]) -> _Events:
    now = time.monotonic()
    return [e for e in (_event(fields, now) for fields in raw) if e is not None]


def _prior(code: Any) -> ServiceStatus | None:
    text = _text(code)
    return None if text == "missing" else ServiceStatus(text)


class RedisRegistry:
    """A `SharedRegistry` on Redis or Valkey: safe to share between threads, processes and hosts.

    `namespace` separates fleets on one server. `lease_ttl_secs` bounds how long the fleet goes
    without an acting leader after the leader dies (takeover within it plus one lease check, a
    third of it). `events_maxlen` bounds the fleet event log
    (a stream; 0 turns it off); heartbeats are logged only with `log_heartbeats=True`, since
    they would multiply the writes. Registry calls raise `RegistryUnavailable` when the server
    cannot be reached or refuses for a while (`reason` says why), `RegistryRefused` when it
    refuses this client (credentials, ACL, missing commands, database: a configuration to
    fix); never a redis-py exception.
    """

    def __init__(
        self,
        client: _redis.Redis,
        *,
        namespace: str = "lifecycle",
        heartbeat_timeout_secs: float = 60.0,
        events_maxlen: int = 10_000,
        log_heartbeats: bool = False,
        lease_ttl_secs: float = 5.0,
    ) -> None:
        if not isinstance(client, _redis.Redis):
            raise TypeError(f"client must be a redis.Redis, not {type(client).__name__}")
        self.namespace = _validate.text(namespace, "namespace")
        if "{" in namespace or "}" in namespace:
            raise ValueError("namespace must not contain braces (it becomes the keys' hash tag)")
        self.heartbeat_timeout_secs = _validate.number(heartbeat_timeout_secs, "heartbeat_timeout_secs",
                                                       positive=True)
        self.events_maxlen = _validate.integer(events_maxlen, "events_maxlen", minimum=0)
        self.log_heartbeats = _validate.flag(log_heartbeats, "log_heartbeats")
        self.lease_ttl_secs = _validate.number(lease_ttl_secs, "lease_ttl_secs", positive=True)
        self._client = client
        prefix = f"lifecycle:{{{namespace}}}:"
        self.keys = {name: prefix + name for name in scripts.KEYS}
        self._op_prefix = prefix + "op:"
        kwargs = client.connection_pool.connection_kwargs
        self._where = (str(kwargs.get("host", kwargs.get("path", "?"))), kwargs.get("port"))
        self._scripts = {
            name: client.register_script(scripts.source(name))
            for name in ("REGISTER", "RESTORE", "UNREGISTER", "HEARTBEAT", "ACTIVATE", "SET_STATUS", "REPORT_ERROR",
                         "BEGIN_STOP", "EXPIRE", "EXPIRE_MANY", "LEASE", "RELEASE", "SWEEP", "ATTEMPT_DONE",
                         "GET", "SILENCE", "TIMING", "LIST", "STATS", "HEALTH_CHECK", "CLEAR", "RESTART",
                         "RESTARTS", "REVIVE", "PHI_READ")
        }
        self._declared = {name: [self.keys[key] for key in scripts.keys_for(name)] for name in self._scripts}
        self._settings: StoreSettings | None = None
        self._tail = ["", _us(60.0), "", "", "", "", ""]  # ARGV 4..10: no restart intensity, no phi
        self._head = self._make_head(self.heartbeat_timeout_secs)

    def configure(self, settings: StoreSettings) -> None:
        """Keep `settings` and send them with every later call (the engine calls this once, when built).

        From then on `settings.timeout` is the default heartbeat timeout of every operation (the
        `timeout` arguments are ignored) and restart intensity and the phi detector are on as set.
        Every process of a fleet should be configured alike: each script decides with the
        settings of the process that called it.
        """
        if not isinstance(settings, StoreSettings):
            raise TypeError(f"settings must be a StoreSettings, not {type(settings).__name__}")
        phi = settings.phi
        self._tail = [
            "" if settings.max_restarts is None else str(settings.max_restarts), _us(settings.restart_window),
            *(("", "", "", "", "") if phi is None else (
                repr(phi.score), str(phi.max_sample_size), _us(phi.min_std_deviation), _us(phi.acceptable_pause),
                _us(phi.first_interval))),
        ]
        self._settings = settings
        self._head = self._make_head(settings.timeout)

    @property
    def settings(self) -> StoreSettings | None:
        """What `configure` was given, or None."""
        return self._settings

    def _make_head(self, timeout: float) -> list[str]:
        return [str(self.events_maxlen), _us(timeout), "1" if self.log_heartbeats else "0", *self._tail]

    @classmethod
    def from_url(cls, url: str, *, namespace: str = "lifecycle", heartbeat_timeout_secs: float = 60.0,
                 events_maxlen: int = 10_000, log_heartbeats: bool = False, lease_ttl_secs: float = 5.0,
                 **redis_kwargs: Any) -> RedisRegistry:
        """A registry on the server at `url` (``redis://``, ``rediss://``, ``unix://``, with password or not).

        Timeouts and retries are set explicitly (redis-py's defaults changed across versions):
        5 s to connect and per call, one retry of a broken connection, a health check of idle
        connections. Any of them can be overridden through `redis_kwargs`.
        """
        _validate.text(url, "url")
        options: dict[str, Any] = {
            "socket_timeout": 5.0, "socket_connect_timeout": 5.0, "health_check_interval": 15,
            "retry": _Retry(_Backoff(cap=0.5, base=0.05), 1), "decode_responses": True,
        }
        options.update(redis_kwargs)
        try:  # redis-py connects on the first call, not here: its errors come from the calls (see `_error`)
            client = _redis.Redis.from_url(url, **options)
        except _REDIS_ERRORS as exc:
            kind, reason = _classify(exc)
            error = RegistryRefused if kind == _REFUSED else RegistryUnavailable
            raise error(f"the registry URL cannot be used ({reason}: {type(exc).__name__})", reason=reason) from None
        return cls(client, namespace=namespace, heartbeat_timeout_secs=heartbeat_timeout_secs,
                   events_maxlen=events_maxlen, log_heartbeats=log_heartbeats, lease_ttl_secs=lease_ttl_secs)

    def __repr__(self) -> str:
        host, port = self._where
        return f"<RedisRegistry {host}:{port} namespace={self.namespace!r}>"

    @property
    def client(self) -> _redis.Redis:
        """The redis-py client (for the fleet event log and diagnostics)."""
        return self._client

    # -- plumbing ------------------------------------------------------------------------------

    def _argv(self, name: str, args: Sequence[object], timeout: float | None) -> list[str]:
        # Configured, the settings' timeout is every call's default; else the call's, else the registry's.
        head = self._head if timeout is None or self._settings is not None else self._make_head(timeout)
        return head + [str(a) for a in args]

    def _keys(self, name: str) -> list[str]:
        if name not in scripts.ONCE:
            return self._declared[name]
        # A key of the call's own, made once per call however often redis-py re-sends it.
        return [*self._declared[name], self._op_prefix + uuid.uuid4().hex]

    def _run(self, name: str, *args: object, timeout: float | None = None) -> list[Any]:
        argv = self._argv(name, args, timeout)
        try:
            result = self._scripts[name](keys=self._keys(name), args=argv)
        except _REDIS_ERRORS as exc:
            raise self._error(exc) from exc
        return list(result)

    def _error(self, exc: BaseException) -> RegistryUnavailable | RegistryRefused:
        """The lifecycle error for an error redis-py raised (classified by `_classify`), to raise from it."""
        kind, reason = _classify(exc)
        host, port = self._where
        at = f"the registry at {host}:{port}"
        port_ = port if isinstance(port, int) else None
        if isinstance(exc, (_E.ConnectionError, _E.TimeoutError)) and not isinstance(exc, _E.AuthenticationError):
            said = type(exc).__name__  # a connection error's text may quote the URL: only its type is repeated
        elif isinstance(exc, (_E.ResponseError, _E.AuthenticationError)):
            said = f"the server said: {_reply(exc)[:_QUOTE_MAX]}"  # a server's reply (never holds the password)
        else:  # raised by redis-py itself
            said = f"{type(exc).__name__}: {str(exc)[:_QUOTE_MAX]}"
        if kind == _REFUSED:
            fix = _FIX.get(reason, "the server refused this client").format(namespace=self.namespace)
            return RegistryRefused(f"{at} refused this client ({reason}): {fix} ({said})", host=host, port=port_,
                                   reason=reason)
        why = _WHY.get(reason, _WHY["error"])
        return RegistryUnavailable(f"{at} {why} ({said})", host=host, port=port_, reason=reason)

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
        try:
            sid = self._client.hget(self.keys["names"], name)
        except _REDIS_ERRORS as exc:
            raise self._error(exc) from exc
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
        result = self._run("HEARTBEAT", id, timeout=timeout)
        if _text(result[0]) == "revive":
            # Rare: the hot script leaves a revival (with every key declared) to REVIVE, which checks again.
            result = self._run("REVIVE", id, timeout=timeout)
        return _beaten(result)

    def beat_many(self, ids: Sequence[str], timeout: float | None = None
                  ) -> list[tuple[ServiceStatus | None, _Events]]:
        """Heartbeats for many services in one pipelined round trip; `beat`'s answer for each, in order.

        Each beat is its own atomic script, as with `beat`; the batch is not a transaction. A
        service not registered answers (None, []). For a process that relays many services'
        heartbeats (a gateway, a sidecar): the manager's own calls take one service at a time.
        """
        for id in ids:
            if not isinstance(id, str):
                raise _not_found(id)
        replies = self._pipelined("HEARTBEAT", ids, timeout)
        revive = [i for i, reply in enumerate(replies) if _text(reply[0]) == "revive"]
        if revive:  # a second round trip for the services to bring back, if any
            for i, reply in zip(revive, self._pipelined("REVIVE", [ids[i] for i in revive], timeout), strict=True):
                replies[i] = reply
        return [_beaten(reply) for reply in replies]

    def _pipelined(self, name: str, ids: Sequence[str], timeout: float | None) -> list[Any]:
        script = self._scripts[name]
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for id in ids:
                    script(keys=self._declared[name], args=self._argv(name, (id,), timeout), client=pipe)
                return list(pipe.execute())
        except _REDIS_ERRORS as exc:
            raise self._error(exc) from exc

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
        if self._settings is None or self._settings.max_restarts is None or not _is_text(id):
            return 0
        return int(self._run("RESTARTS", id)[1])

    def phi(self, id: str) -> float:
        """The phi detector's suspicion level for the service now (as `History.phi`); 0.0 without phi or history."""
        settings = None if self._settings is None else self._settings.phi
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
        flat = self._run("STATS")[1]
        counts = {_text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        return RegistryStats(
            total=sum(counts.values()), starting=counts.get("starting", 0), running=counts.get("running", 0),
            stopping=counts.get("stopping", 0), stopped=counts.get("stopped", 0), errors=counts.get("error", 0),
            reconnecting=counts.get("reconnecting", 0),
        )

    def health_check(self) -> _Ids:
        """Mark every RUNNING service silent for `heartbeat_timeout_secs` RECONNECTING; return their ids."""
        result = self._run("HEALTH_CHECK", ServiceStatus.RECONNECTING.value)
        return [ServiceId(_text(i)) for i in result[1]]

    def clear(self) -> None:
        """Forget every service, the lease and the event log of this namespace."""
        self._run("CLEAR")

    def count(self) -> int:
        """How many services are registered."""
        try:
            return int(self._client.hlen(self.keys["status"]))
        except _REDIS_ERRORS as exc:
            raise self._error(exc) from exc

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, id: object) -> bool:
        if not isinstance(id, str):
            return False
        try:
            return bool(self._client.hexists(self.keys["status"], id))
        except _REDIS_ERRORS as exc:
            raise self._error(exc) from exc

    # -- the leader's operations ---------------------------------------------------------------

    def lease(self, owner: str, ttl: float) -> Lease:
        """Take or renew the leader lease for `ttl` seconds."""
        code, generation = self._run("LEASE", owner, max(1, round(ttl * 1000)), uuid.uuid4().hex)
        return Lease(_text(code) == "leader", _text(generation))

    def leader(self) -> str | None:
        """The owner token (host:pid:random) of the process holding the lease, or None."""
        try:
            holder = self._client.get(self.keys["lease"])
        except _REDIS_ERRORS as exc:
            raise self._error(exc) from exc
        return None if holder is None else _text(holder)

    def release(self, owner: str) -> None:
        """Give the lease up if `owner` holds it."""
        self._run("RELEASE", owner)

    def sweep(self, owner: str, timeout: float, grace: float, limit: int, *, tick: float | None = None
              ) -> Sweep | None:
        """What is due now (claiming due attempts), or None if `owner` no longer holds the lease.

        A claimed attempt is parked for its service's `transport.timeout_secs` plus `tick` (the
        leader's tick interval; default `lease_ttl_secs`): the leader reports its outcome well
        before then. If the outcome is lost (the server restarted mid-attempt), the parked
        attempt is due again then and the next sweep hands the same attempt out again.
        """
        tick = self.lease_ttl_secs if tick is None else _validate.duration(tick, "tick", positive=False)
        result = self._run("SWEEP", owner, _us(grace), limit, _us(tick), timeout=timeout)
        if _text(result[0]) == "fenced":
            return None
        _, due, claimed, next_us, rebased = result
        nxt = int(_text(next_us))
        return Sweep(
            due=[ServiceId(_text(row[0])) for row in due],
            details={ServiceId(_text(i)): Detail(_text(name), _text(auto) == "1", _int_or_none(m))
                     for i, name, auto, m in due},
            attempts=[(ServiceId(_text(i)), int(_text(k))) for i, k in claimed],
            next_in=None if nxt < 0 else nxt / _US,
            rebased=int(rebased),
        )

    def expire_many(self, owner: str, timeout: float, plans: _Plans) -> _Events | None:
        """Leader: each service still RUNNING and silent for `timeout` times out and gets its plan, in one script.

        None when `owner` no longer holds the lease, else the events of those it timed out.
        """
        if not plans:
            return []
        flat = [x for sid, plan in plans for x in (sid, *_plan_args(plan))]
        result = self._run("EXPIRE_MANY", owner, len(plans), *flat, timeout=timeout)
        return None if _text(result[0]) == "fenced" else _events(result[1])

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
        try:
            newest: Any = self._client.xrevrange(self.keys["events"], count=1)
        except _REDIS_ERRORS as exc:
            raise self._error(exc) from exc
        return _text(newest[0][0]) if newest else "0-0"

    def read_events(self, after: str = "$", *, block: float | None = None, count: int = 100
                    ) -> _Rows:
        """Events of the fleet log after stream id `after` ("$": only new ones), oldest first."""
        try:
            reply: Any = self._client.xread({self.keys["events"]: after}, count=count,
                                       block=None if block is None else max(1, round(block * 1000)))
        except _REDIS_ERRORS as exc:
            raise self._error(exc) from exc
        out: _Rows = []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                flat = [x for pair in fields.items() for x in pair] if isinstance(fields, dict) else fields
                event = _event(flat)
                if event is not None:
                    out.append((_text(entry_id), event))
        return out


def _beaten(reply: Sequence[Any]) -> tuple[ServiceStatus | None, _Events]:
    """A HEARTBEAT or REVIVE reply: the prior status, and the events of a revival."""
    return _prior(reply[0]), (_events(reply[1]) if len(reply) > 1 and reply[1] else [])


def _own_timeout(service: ExtensionService) -> str:
    """The service's own heartbeat timeout in microseconds, '' when it has none."""
    own = service.transport.heartbeat_timeout_secs
    return "" if own is None else _us(own)


def _int_or_none(value: Any) -> int | None:
    text = _text(value)
    return None if text == "" else int(text)


def _plan_args(plan: Plan) -> tuple[str, int, str, int]:
    return plan.mode, plan.attempt, _us(plan.delay), plan.max_attempts


def _is_text(value: object) -> bool:
    # Callers type ids as str, but bad input must still answer "not found", not crash.
    return isinstance(value, str)


def _raise(exc: Exception) -> ServiceStatus:
    raise exc
