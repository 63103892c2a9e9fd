"""How `RedisRegistry` talks to its server: its scripts and plain commands, and redis-py's errors classified.

`ScriptClient` registers every script of `lifecycle._redis_scripts` once, runs each with the keys
it declares and the ARGV head every script expects (from the registry's options and, once
configured, its `StoreSettings`), gives each state-changing call a key of its own (the op-id
guard: a call redis-py re-sends after a lost reply gets the first reply), and turns whatever
redis-py raises into `RegistryUnavailable` or `RegistryRefused` by one table (`_classify`).
"""

from __future__ import annotations

# Loaded now, before any fork: the first connection encodes its host with this codec, and a codec
# first imported by a thread of a gunicorn --preload master while it forks fails in the worker
# ("LookupError: unknown encoding: idna"), a failure the codec registry then keeps for good.
import contextlib
import difflib
import encodings.idna  # noqa: F401
import functools
import inspect
import logging
import os
import re
import ssl
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeVar

import redis as _redis
from redis.backoff import ExponentialBackoff as _Backoff
from redis.cluster import RedisCluster
from redis.connection import parse_url
from redis.retry import Retry as _Retry

from . import _redis_scripts as scripts
from ._partitions import mismatch
from ._redis_codec import _us
from .errors import FieldTypeError, RegistryRefused, RegistryUnavailable
from .fleet import StoreSettings

_T = TypeVar("_T")
_parse_url: Any = parse_url  # redis-py leaves it untyped
Client = _redis.Redis | RedisCluster
"""The redis-py clients a registry talks through: one server (or a proxy), or a Redis Cluster."""

log = logging.getLogger("lifecycle")

# -- redis-py's errors, classified ---------------------------------------------------------------

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


# TLS failures that are the configuration's, not an outage's: the other side speaks no TLS (a
# rediss:// URL on a plain port), or refused the certificate (a CA it does not know, a client
# certificate it wants). An EOF or reset in the handshake may be a restart: left transient.
_TLS_MISMATCH = frozenset({"WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL",
                           "HTTP_REQUEST", "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE",
                           "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "TLSV13_ALERT_CERTIFICATE_REQUIRED",
                           "TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL"})


def _tls_refused(exc: BaseException) -> bool:
    """A TLS handshake failed for its configuration (redis-py raises a ConnectionError, the ssl error chained)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        if isinstance(seen, ssl.SSLError) and getattr(seen, "reason", None) in _TLS_MISMATCH:
            return True
        seen = seen.__cause__ or seen.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "WRONG_VERSION_NUMBER" in str(exc)


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
    "tls": "the TLS handshake failed for its configuration (the server's certificate not accepted, a client "
           "certificate missing, or TLS on one side only): check rediss:// against the server's TLS port, "
           "ssl_ca_certs (or ssl_cert_reqs), ssl_certfile/ssl_keyfile and the server's certificate",
    "cluster_client": "the server is a node of a Redis Cluster and another node serves the namespace's slot: "
                      "use RedisRegistry.from_url without cluster=False (it finds the cluster) or a "
                      "redis.cluster.RedisCluster client",
    "cluster_database": "a Redis Cluster has only database 0: end the URL with /0 (or no database at all)",
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


SCRIPTS = ("REGISTER", "RESTORE", "UNREGISTER", "HEARTBEAT", "ACTIVATE", "SET_STATUS", "REPORT_ERROR", "BEGIN_STOP",
           "EXPIRE", "LEASE", "RELEASE", "SWEEP", "ATTEMPT_DONE", "GET", "SILENCE", "TIMING", "LIST",
           "STATS", "HEALTH_CHECK", "CLEAR", "RESTART", "RESTARTS", "REVIVE", "PHI_READ", "BEAT_MANY", "HEARTBEAT_PHI",
           "BEAT_MANY_PHI", "RESTORE_MANY")
"""The scripts a registry runs (each registered once; redis-py loads it again after a SCRIPT FLUSH)."""


BATCH = 256
"""At most this many heartbeats per BEAT_MANY call (about 1 ms of the server's time on loopback)."""


class ScriptClient:
    """One registry's calls to its server under `lifecycle:{<namespace>}:`; every error a lifecycle error.

    `keys` maps each key name of `lifecycle._redis_scripts.KEYS` to the key itself. Until
    `configure`, a call's `timeout` (else `timeout` given here) is the scripts' default heartbeat
    timeout; once configured, the settings' timeout is, and restart intensity and phi are sent
    as set. Every key carries the one hash tag ``{<namespace>}``, so each script's keys lie in
    one Redis Cluster slot.
    """

    def __init__(self, client: Client, namespace: str, *, events_maxlen: int, log_heartbeats: bool,
                 timeout: float) -> None:
        self.client: Client = client
        self.namespace = namespace
        prefix = f"lifecycle:{{{namespace}}}:"
        self.keys = {name: prefix + name for name in scripts.KEYS}
        self._op_prefix = prefix + "op:"
        self.where: tuple[str, Any] = _where(client)
        self._detect: Detect | None = None
        self._scripts = {name: client.register_script(scripts.source(name)) for name in SCRIPTS}
        self._declared = {name: [self.keys[key] for key in scripts.keys_for(name)] for name in SCRIPTS}
        self._options = [str(events_maxlen), "1" if log_heartbeats else "0"]
        self.settings: StoreSettings | None = None
        #: The heartbeat scripts, one and many, of the detector the settings ask for (chosen at `configure`).
        self.beats = ("HEARTBEAT", "BEAT_MANY")
        self._tail = ["", _us(60.0), "", "", "", "", ""]  # ARGV 4..10: no restart intensity, no phi
        self._head = self._make_head(timeout)
        #: The namespace's partition count, recorded under ``partitions`` on the first call (see `_recorded`);
        #: a part of a partitioned namespace has the namespace's own client as `parent`, which checks for it.
        self.keys["partitions"] = prefix + "partitions"
        self.partitions = 1
        self.parent: ScriptClient | None = None
        self._ready = False
        #: On a Redis Cluster, the namespace's slot's master's own client, while it answers (see `run_hot`).
        self._master: _redis.Redis | None = None

    def detect(self, detect: Detect) -> None:
        """Choose the client on the first call that reaches the server: `self.client` until then (see `Detect`)."""
        self._detect = detect

    def use_url(self, url: str, options: dict[str, Any], plain: _redis.Redis, cluster: bool | None, db: int) -> None:
        """For `RedisRegistry.from_url`: refuse a cluster URL it cannot serve, or detect a cluster on first use."""
        if cluster and (db or url.startswith("unix:")):
            self.client.close()
            host, port = self.where
            what = _FIX["cluster_database"] if db else "a Redis Cluster is reached over TCP: use a redis:// URL"
            raise RegistryRefused(f"the registry at {host}:{port} cannot be used as a cluster: {what}", host=host,
                                  port=port if isinstance(port, int) else None, reason="database" if db else "url")
        if not url.startswith("unix:"):
            self.detect(Detect(url, options, plain, cluster, self.keys["status"]))

    @property
    def cluster(self) -> bool | None:
        """True on a Redis Cluster, False on one server, None while not yet known (no call reached it)."""
        if self._detect is not None:
            return None
        return isinstance(self.client, RedisCluster)

    @property
    def recorded(self) -> bool:
        """True once this client checked the namespace's recorded partition count (writing it if missing)."""
        return self._ready

    def recheck_record(self, lost: bool) -> None:
        """If `lost` (the server lost its data: the record went too), check, and so write, the count again next call."""
        if lost:
            self._ready = False

    def _client(self, write: bool = False) -> Client:
        if self._ready:
            return self.client
        if self.parent is not None:  # a part: the namespace's record first, and the client chosen for it
            self.client = self.parent._client(write)
            self._ready = self.parent._ready
            return self.client
        detect = self._detect
        if detect is not None:
            try:
                client = detect.client()
            except _REDIS_ERRORS as exc:
                raise self.error(exc) from exc
            self.client, self._detect = client, None
        self._ready = _recorded(self, self.client, write)
        return self.client

    def eval(self, source: str, keys: list[str], args: list[str]) -> Any:
        """A small script of the caller's that writes (run by EVAL: no cache to lose), its errors classified."""
        client = self._client(True)
        try:
            return client.eval(source, len(keys), *keys, *args)
        except _REDIS_ERRORS as exc:
            raise self.error(exc) from exc

    def configure(self, settings: StoreSettings) -> None:
        """Send `settings` with every later call (ARGV 2 and 4..10, see `lifecycle._redis_scripts`)."""
        phi = settings.phi
        self._tail = [
            "" if settings.max_restarts is None else str(settings.max_restarts), _us(settings.restart_window),
            *(("", "", "", "", "") if phi is None else (
                repr(phi.score), str(phi.max_sample_size), _us(phi.min_std_deviation), _us(phi.acceptable_pause),
                _us(phi.first_interval))),
        ]
        self.settings = settings
        self._head = self._make_head(settings.timeout)
        self.beats = ("HEARTBEAT_PHI", "BEAT_MANY_PHI") if phi is not None else ("HEARTBEAT", "BEAT_MANY")

    def _make_head(self, timeout: float) -> list[str]:
        maxlen, log_beats = self._options
        return [maxlen, _us(timeout), log_beats, *self._tail]

    def _argv(self, name: str, args: Sequence[object], timeout: float | None) -> list[str]:
        # Configured, the settings' timeout is every call's default; else the call's, else the registry's.
        head = self._head if timeout is None or self.settings is not None else self._make_head(timeout)
        if name in scripts.SHORT:
            head = head[:scripts.SHORT_HEAD]
        return head + [str(a) for a in args]

    def _keys(self, name: str) -> list[str]:
        if name not in scripts.ONCE:
            return self._declared[name]
        # A key of the call's own, made once per call however often redis-py re-sends it.
        return [*self._declared[name], self._op_prefix + uuid.uuid4().hex]

    def run(self, name: str, *args: object, timeout: float | None = None) -> list[Any]:
        """Run script `name` with its keys, the head and `args`; its reply as a list."""
        argv = self._argv(name, args, timeout)
        client = self.client if self._ready else self._client(name not in _READS)
        script, keys = self._scripts[name], self._keys(name)
        try:
            try:
                result = client.evalsha(script.sha, len(keys), *keys, *argv)
            except _E.NoScriptError:  # the server lost its scripts (restarted, SCRIPT FLUSH): nothing ran
                client.script_load(script.script)
                result = client.evalsha(script.sha, len(keys), *keys, *argv)
        except _REDIS_ERRORS as exc:
            raise self.error(exc) from exc
        return list(result)

    def run_hot(self, name: str, *args: object, timeout: float | None = None) -> list[Any]:
        """`run` for a call that may be sent twice (the heartbeat): on a Redis Cluster, straight to the slot's master.

        The cluster client works out each call's slot from its keys and its command's policies, which
        cost a one-at-a-time heartbeat more than the server's work. The namespace has one slot, so
        its master's own client is kept (`_master`) and used while it answers; a redirect (the slot
        moved, the master was demoted) or a failure drops it, and the call goes through the cluster
        client as any other, which follows the cluster and says what is wrong. The call may then
        run twice: only for scripts where that is harmless.
        """
        master = self._master
        if master is None:
            result = self.run(name, *args, timeout=timeout)
            client = self.client
            if isinstance(client, RedisCluster) and self._ready:
                with contextlib.suppress(*_REDIS_ERRORS):  # no master known now: the next call asks again
                    node = client.get_node_from_key(self.keys["status"])  # type: ignore[no-untyped-call]
                    self._master = client.get_redis_connection(node)
            return result
        keys = self._declared[name]
        try:
            return list(master.evalsha(self._scripts[name].sha, len(keys), *keys, *self._argv(name, args, timeout)))
        except _REDIS_ERRORS:
            self._master = None
            return self.run(name, *args, timeout=timeout)

    def pipelined(self, name: str, ids: Sequence[str], timeout: float | None) -> list[Any]:
        """Script `name` once per id (its only argument) in one pipelined round trip (not a transaction)."""
        argv = self._argv(name, (), timeout)
        return self._evalsha_all(name, [[*argv, id] for id in ids])

    def batched(self, name: str, ids: Sequence[str], timeout: float | None, width: int = 1) -> list[Any]:
        """Script `name` with up to `BATCH` items (`width` arguments each) per call, pipelined; the replies' items.

        One call per batch pays the script's fixed cost (the prelude, the head's arguments, the
        round trip) once for many items; a batch holds the server for about `BATCH` times one item's work.
        """
        return [item for reply in run_together([self.job(name, ids, timeout, width)])[0] for item in reply]

    def job(self, name: str, items: Sequence[str], timeout: float | None, width: int = 1) -> Job:
        """Script `name` over `items` (`width` arguments each), up to `BATCH` per call: for `run_together`."""
        argv, step = self._argv(name, (), timeout), BATCH * width
        return Job(self, name, [[*argv, *items[i:i + step]] for i in range(0, len(items), step)])

    def _evalsha_all(self, name: str, argvs: list[list[str]]) -> list[Any]:
        """EVALSHA of script `name` once per ARGV list, in one round trip (see `run_together`)."""
        return run_together([Job(self, name, argvs)])[0]

    def block_within(self, block: float) -> float:
        """`block` seconds, or less: a blocking read must end before the socket times out.

        A read the socket timeout cuts drops its connection (redis-py then reconnects it and, on a
        cluster, refreshes its slot map): a reader blocked a second at a time with a one-second
        socket timeout did so about once a second.
        """
        timeout: float | None = self.client.get_connection_kwargs().get("socket_timeout")
        if not timeout:
            return block
        return min(block, max(timeout / 2, timeout - 0.25))

    def command(self, call: Callable[[Client], _T]) -> _T:
        """A plain command (a read outside the scripts): `call(client)`, its errors classified."""
        client = self._client()
        try:
            return call(client)
        except _REDIS_ERRORS as exc:
            raise self.error(exc) from exc

    def error(self, exc: BaseException) -> RegistryUnavailable | RegistryRefused:
        """The lifecycle error for an error redis-py raised (classified by `_classify`), to raise from it."""
        kind, reason = _classify(exc)
        if reason == "moved" and not isinstance(self.client, RedisCluster):
            kind, reason = _REFUSED, "cluster_client"  # MOVED to a plain client: it always will be
        host, port = self.where
        at = f"the registry at {host}:{port}"
        port_ = port if isinstance(port, int) else None
        if isinstance(exc, (_E.ConnectionError, _E.TimeoutError)) and not isinstance(exc, _E.AuthenticationError):
            said = type(exc).__name__  # a connection error's text may quote the URL: only its type is repeated
        elif isinstance(exc, (_E.ResponseError, _E.AuthenticationError)):
            said = f"the server said: {_reply(exc)[:_QUOTE_MAX]}"  # a server's reply (never holds the password)
        else:  # raised by redis-py itself
            said = f"{type(exc).__name__}: {str(exc)[:_QUOTE_MAX]}"
        if kind == _REFUSED:
            fix = _FIX.get(_fix_key(reason, exc), "the server refused this client").format(namespace=self.namespace)
            return RegistryRefused(f"{at} refused this client ({reason}): {fix} ({said})", host=host, port=port_,
                                   reason=reason)
        why = _WHY.get(reason, _WHY["error"])
        return RegistryUnavailable(f"{at} {why} ({said})", host=host, port=port_, reason=reason)


def _recorded(calls: ScriptClient, client: Client, write: bool) -> bool:
    """Check the namespace's recorded partition count, recording ours if none is and we `write`; True once read.

    A read never records (a status command leaves an empty namespace empty): until a count is
    recorded, each call looks again.

    With one partition the check never changes what a call answers: an error reading the record
    is left to the call itself to meet (so a refused client sees the refusal it always saw, and
    is not asked again), except an unreachable server, which the call would meet just the same.
    """
    key, mine = calls.keys["partitions"], str(calls.partitions)
    try:
        found = client.get(key)
        if found is None and not write:
            return False
        if found is None:
            client.set(key, mine, nx=True)
            found = client.get(key)
    except _REDIS_ERRORS as exc:
        error = calls.error(exc)
        if calls.partitions > 1 or (isinstance(error, RegistryUnavailable) and error.reason in _UNREACHABLE):
            raise error from exc
        return isinstance(error, RegistryRefused)
    if found is None:  # deleted between our SET and GET (a FLUSHALL): look again on the next call
        return False
    found = found.decode() if isinstance(found, bytes) else str(found)
    if found != mine:
        host, port = calls.where
        raise mismatch(found, calls.partitions, f"the registry at {host}:{port}", calls.namespace,
                       host=host, port=port if isinstance(port, int) else None)
    return True


_UNREACHABLE = ("connection", "timeout")
class Job(NamedTuple):
    """Calls of one script for one part of a namespace: its `ScriptClient`, the script's name, an ARGV list per call."""

    calls: ScriptClient
    name: str
    argvs: list[list[str]]


def run_together(jobs: Sequence[Job]) -> list[list[Any]]:
    """Every job's EVALSHAs in one pipelined round trip; each job's replies, in order.

    The jobs' clients are one (the parts of one namespace share theirs), so a cluster client sends
    each node its share at once: parts on three masters cost one round trip, not three in turn.
    Plain EVALSHAs, not redis-py's `Script` (whose pipeline asks SCRIPT EXISTS first: a second
    round trip). A server that lacks a script (restarted, SCRIPT FLUSH) has it loaded and the
    whole pipeline goes once more: on one server none of it had run; on a cluster the calls of the
    nodes that had the script run twice, which the scripts sent this way allow (a beat is
    idempotent; a second restore answers 'present').
    """
    first = jobs[0].calls
    client = first._client(any(job.name not in _READS for job in jobs))
    try:
        try:
            return _send(client, jobs)
        except _E.NoScriptError:
            for source in {job.calls._scripts[job.name].script for job in jobs}:
                client.script_load(source)
            return _send(client, jobs)
    except _REDIS_ERRORS as exc:
        raise first.error(exc) from exc


def _send(client: Client, jobs: Sequence[Job]) -> list[list[Any]]:
    calls = [(job.calls._scripts[job.name].sha, job.calls._declared[job.name], argv)
             for job in jobs for argv in job.argvs]
    if len(calls) == 1:
        sha, keys, argv = calls[0]
        return [[client.evalsha(sha, len(keys), *keys, *argv)]]
    with client.pipeline(transaction=False) as pipe:
        for sha, keys, argv in calls:
            pipe.evalsha(sha, len(keys), *keys, *argv)
        replies = list(pipe.execute())
    out: list[list[Any]] = []
    at = 0
    for job in jobs:
        out.append(replies[at:at + len(job.argvs)])
        at += len(job.argvs)
    return out


_READS = frozenset({"GET", "SILENCE", "TIMING", "LIST", "STATS", "RESTARTS", "PHI_READ", "CLEAR", "OWNER_OF"})
"""The scripts that only read (or delete): they never record the partition count."""


def _fix_key(reason: str, exc: BaseException) -> str:
    """Which advice of `_FIX` fits: a database other than 0 on a cluster has its own."""
    if reason == "database" and "cluster mode" in str(exc):
        return "cluster_database"
    return reason


def _where(client: Client) -> tuple[str, Any]:
    """(host, port) of the server a client was pointed at (a cluster: the node it was given), for messages."""
    if isinstance(client, RedisCluster):
        nodes = list(client.nodes_manager.startup_nodes.values()) or list(client.nodes_manager.nodes_cache.values())
        return (str(nodes[0].host), nodes[0].port) if nodes else ("?", None)
    kwargs = client.connection_pool.connection_kwargs
    return str(kwargs.get("host", kwargs.get("path", "?"))), kwargs.get("port")


# Guards the swap of a Detect's lock for a process's own. Only a process's first call after a fork
# takes it, for an instant: a parent (a gunicorn master) never holds it when it forks.
_renewing = threading.Lock()


class Detect:
    """A registry's client, chosen on the first call that reaches the server: a cluster, or the server alone.

    `cluster` None asks the server (``INFO cluster``; a user not allowed INFO is asked for one
    of the namespace's keys instead, where only a node that does not own its slot shows it is a
    cluster); True builds a `RedisCluster` from `url` (its constructor reads the slot map at
    once, so it too waits for a server to answer). `plain` is the client of one server, kept
    when the server is not a cluster. Nothing is decided while no server answers: each call
    raises as it would on the plain client, and the next one asks again.
    """

    def __init__(self, url: str, options: dict[str, Any], plain: _redis.Redis, cluster: bool | None,
                 probe_key: str) -> None:
        self.url = url
        self.options = options
        self.plain = plain
        self.cluster = cluster
        self.probe_key = probe_key
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._chosen: Client | None = None

    def client(self) -> Client:
        """The client to use from now on; redis-py's errors when no server answers (or it refuses)."""
        with self._own_lock():  # one choice, one cluster client, however many threads ask at once
            if self._chosen is None:
                self._chosen = self._choose()
            return self._chosen

    def _own_lock(self) -> threading.Lock:
        """This process's lock: a forked child's copy may be held for good by a parent's thread that was choosing.

        Checked at each call rather than renewed by an at-fork hook: hooks run in the order they
        were registered, and a manager's (registered first) restarts threads that may call here
        before a later hook would have run.
        """
        pid = os.getpid()
        if self._pid != pid:
            with _renewing:
                if self._pid != pid:
                    self._lock, self._pid = threading.Lock(), pid
        return self._lock

    def _choose(self) -> Client:
        if self.cluster is None and not self._is_cluster():
            return self.plain
        options = dict(self.options)
        options.pop("db", None)
        client = RedisCluster.from_url(self.url, **options)
        self.plain.close()
        log.info("lifecycle: the registry at %s:%s is a Redis Cluster of %d nodes", *_where(client),
                 len(client.nodes_manager.nodes_cache))
        return client

    def _is_cluster(self) -> bool:
        try:
            return bool(self.plain.info("cluster").get("cluster_enabled"))
        except _E.NoPermissionError:
            pass
        try:  # an ACL user without INFO: a node that does not own the key's slot answers MOVED
            self.plain.exists(self.probe_key)
        except _E.ResponseError as exc:
            if str(exc).startswith("MOVED") or type(exc).__name__ == "MovedError":  # redis-py 5.x: no MovedError
                return True
            raise
        log.info("lifecycle: this user may not run INFO, and the server serves the namespace's keys: taken for "
                 "one server, not a cluster (pass cluster=True if it is one)")
        return False


def open_url(url: str, cluster: bool | None, redis_kwargs: dict[str, Any]) -> tuple[_redis.Redis, int, dict[str, Any]]:
    """A plain client for `url` with our timeouts and retry (overridable), its database, and the options used.

    Timeouts and retries are set explicitly (redis-py's defaults changed across versions): 5 s
    to connect and per call, one retry of a broken connection, a health check of idle
    connections. redis-py connects on the first call, not here: its errors come from the calls.
    """
    options: dict[str, Any] = {
        "socket_timeout": 5.0, "socket_connect_timeout": 5.0, "health_check_interval": 15,
        "retry": _Retry(_Backoff(cap=0.5, base=0.05), 1), "decode_responses": True,
    }
    for name in redis_kwargs:
        if name not in _client_options():
            near = difflib.get_close_matches(name, _client_options(), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise FieldTypeError(name, "unknown", f"is not an option of redis-py's client or its connections{hint}")
    options.update(redis_kwargs)
    try:
        client = _redis.Redis.from_url(url, **options)
        db = int(_parse_url(url).get("db", options.get("db", 0))) if cluster is not False else 0
    except _REDIS_ERRORS as exc:
        kind, reason = _classify(exc)
        error = RegistryRefused if kind == _REFUSED else RegistryUnavailable
        raise error(f"the registry URL cannot be used ({reason}: {type(exc).__name__})", reason=reason) from None
    return client, db, options


@functools.cache
def _client_options() -> frozenset[str]:
    """The keyword options redis-py's clients and connections take, from their signatures.

    A misspelt option would otherwise reach a connection's constructor at the first call, as a
    bare TypeError from redis-py.
    """
    classes = (_redis.Redis, _redis.connection.AbstractConnection, _redis.connection.Connection,
               _redis.connection.SSLConnection, _redis.connection.UnixDomainSocketConnection,
               _redis.connection.ConnectionPool, RedisCluster)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(name for cls in classes for name, param in inspect.signature(cls.__init__).parameters.items()
                     if param.kind in kinds and name != "self")
