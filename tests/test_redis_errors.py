"""Every Redis error classified: no public call lets a redis-py exception out.

`RedisRegistry` turns whatever redis-py raises into `RegistryUnavailable` (transient: the
engine retries, HTTP answers 503 with Retry-After; `reason` says why) or `RegistryRefused`
(the server refuses this client: a configuration to fix; HTTP answers 500). The table itself is
checked on exceptions built here, as each redis-py version and server spells them; then each
fault that can be set up on a real server (out of memory, an ACL user without EVALSHA or without
anything, a wrong password, no password, a missing database, a renamed command, a read-only
replica, a busy script, nothing listening, a server that never answers) is met through the
registry's calls, the manager's, the HTTP endpoints and the status command, on each server
binary that can be had.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis_server as servers

from lifecycle import (
    ExtensionService,
    LifecycleConfig,
    LifecycleError,
    LifecycleManager,
    RegistryRefused,
    RegistryUnavailable,
    ServiceStatus,
)
from lifecycle.__main__ import main
from lifecycle._redis_client import _classify
from lifecycle.fleet import Onset, Plan, StoreSettings
from lifecycle.phi import PhiSettings
from lifecycle.redis import RedisRegistry

E = redis.exceptions
PASSWORD = "pw-Zq8-never-printed"
USER = "member"
WAIT = 10.0


# -- the table, on exceptions as redis-py raises them ----------------------------------------------


def _error(cls: type[Exception], text: str, code: str | None = None) -> Exception:
    """An exception as redis-py's parser makes it: 6+ passes the reply's code as `status_code`, 5.x does not."""
    try:
        return cls(text, status_code=code)  # type: ignore[call-arg]
    except TypeError:  # redis-py < 6
        return cls(text)


def _cert_failure() -> Exception:
    try:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate")
        except ssl.SSLError as exc:
            raise E.ConnectionError("Error 1 connecting to 127.0.0.1:6380. SSL handshake failed.") from exc
    except E.ConnectionError as exc:
        return exc


CASES: list[tuple[str, Callable[[], BaseException], tuple[str, str]]] = [
    # transient: "unavailable"
    ("connection refused", lambda: E.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
     ("unavailable", "connection")),
    ("socket timeout", lambda: E.TimeoutError("Timeout reading from socket"), ("unavailable", "timeout")),
    ("LOADING", lambda: _error(E.BusyLoadingError, "Redis is loading the dataset in memory", "LOADING"),
     ("unavailable", "loading")),
    ("OOM", lambda: _error(E.OutOfMemoryError, "command not allowed when used memory > 'maxmemory'.", "OOM"),
     ("unavailable", "out_of_memory")),
    ("OOM in a pipeline", lambda: _error(
        E.OutOfMemoryError, "Command # 1 (EVALSHA abc 1 k v) of pipeline caused error: command not allowed "
        "when used memory > 'maxmemory'.", "OOM"), ("unavailable", "out_of_memory")),
    ("OOM inside a script, Redis 6", lambda: _error(
        E.ResponseError, "Error running script (call to f_abc): @user_script:3: @user_script: 3: -OOM command "
        "not allowed when used memory > 'maxmemory'. ", "ERR"), ("unavailable", "out_of_memory")),
    ("READONLY", lambda: _error(E.ReadOnlyError, "You can't write against a read only replica.", "READONLY"),
     ("unavailable", "read_only")),
    ("BUSY (no class)", lambda: _error(E.ResponseError, "BUSY Redis is busy running a script.", "BUSY"),
     ("unavailable", "busy")),
    ("BUSY, redis-py 5", lambda: E.ResponseError("BUSY Redis is busy running a script."), ("unavailable", "busy")),
    ("MASTERDOWN", lambda: _error(E.MasterDownError, "Link with MASTER is down", "MASTERDOWN"),
     ("unavailable", "master_down")),
    ("CLUSTERDOWN", lambda: _error(E.ClusterDownError, "The cluster is down", "CLUSTERDOWN"),
     ("unavailable", "cluster_down")),
    ("CLUSTERDOWN, redis-py 5", lambda: E.ResponseError("CLUSTERDOWN The cluster is down"),
     ("unavailable", "cluster_down")),
    ("TRYAGAIN", lambda: _error(E.TryAgainError, "Multiple keys request during rehashing of slot", "TRYAGAIN"),
     ("unavailable", "try_again")),
    ("MOVED", lambda: _error(E.MovedError, "3999 127.0.0.1:6381", "MOVED"), ("unavailable", "moved")),
    ("MOVED, redis-py 5", lambda: E.ResponseError("MOVED 3999 127.0.0.1:6381"), ("unavailable", "moved")),
    ("ASK", lambda: _error(E.AskError, "3999 127.0.0.1:6381", "ASK"), ("unavailable", "moved")),
    ("NOSCRIPT", lambda: _error(E.NoScriptError, "No matching script. Please use EVAL.", "NOSCRIPT"),
     ("unavailable", "no_script")),
    ("NOREPLICAS", lambda: E.ResponseError("NOREPLICAS Not enough good replicas to write."),
     ("unavailable", "no_replicas")),
    ("MISCONF", lambda: E.ResponseError("MISCONF Redis is configured to save RDB snapshots, but it's currently "
                                        "unable to persist to disk."), ("unavailable", "persistence")),
    ("UNBLOCKED", lambda: E.ResponseError("UNBLOCKED force unblock from blocking operation"),
     ("unavailable", "unblocked")),
    ("max clients", lambda: _error(getattr(E, "MaxClientsReachedError", E.ConnectionError),
                                   "max number of clients reached", "ERR"), ("unavailable", "max_clients")),
    ("client pool full", lambda: E.MaxConnectionsError("Too many connections"), ("unavailable", "max_connections")),
    ("cluster TTL exhausted", lambda: E.ClusterError("TTL exhausted."), ("unavailable", "cluster")),
    ("cluster unreachable", lambda: E.RedisClusterException("Redis Cluster cannot be connected."),
     ("unavailable", "cluster")),
    ("slot not covered", lambda: E.SlotNotCoveredError("Slot 12 not covered by the cluster."),
     ("unavailable", "cluster_down")),
    ("garbled reply", lambda: E.InvalidResponse("Protocol Error: b'?'"), ("unavailable", "protocol")),
    ("a Lua error", lambda: _error(E.ResponseError, "user_script:12: attempt to compare nil with number script: "
                                   "abc, on @user_script:12.", "ERR"), ("unavailable", "error")),
    ("any other RedisError", lambda: E.RedisError("something new"), ("unavailable", "error")),
    ("DataError", lambda: E.DataError("Invalid input of type: 'dict'"), ("unavailable", "error")),
    # the client refused: "refused"
    ("WRONGPASS", lambda: _error(E.AuthenticationError, "invalid username-password pair or user is disabled.",
                                 "WRONGPASS"), ("refused", "auth")),
    ("NOAUTH", lambda: _error(E.AuthenticationError, "Authentication required.", "NOAUTH"), ("refused", "auth")),
    ("invalid password", lambda: _error(E.AuthenticationError, "invalid password", "ERR"), ("refused", "auth")),
    ("NOPERM", lambda: _error(E.NoPermissionError, "this user has no permissions to run the 'evalsha' command",
                              "NOPERM"), ("refused", "permission")),
    ("NOPERM in a pipeline", lambda: _error(
        E.NoPermissionError, "Command # 1 (EVALSHA abc 0) of pipeline caused error: User u has no permissions "
        "to run the 'evalsha' command", "NOPERM"), ("refused", "permission")),
    ("unknown command", lambda: _error(E.ResponseError, "unknown command 'EVALSHA', with args beginning with: ",
                                       "ERR"), ("refused", "unknown_command")),
    ("unknown command, redis-py 5", lambda: E.ResponseError("unknown command `EVALSHA`, with args beginning with:"),
     ("refused", "unknown_command")),
    ("unknown subcommand", lambda: _error(E.ResponseError, "unknown subcommand 'LOAD'. Try SCRIPT HELP.", "ERR"),
     ("refused", "unknown_command")),
    ("DB index", lambda: _error(E.ResponseError, "DB index is out of range", "ERR"), ("refused", "database")),
    ("SELECT on a cluster", lambda: E.ResponseError("SELECT is not allowed in cluster mode"),
     ("refused", "database")),
    ("WRONGTYPE", lambda: E.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
     ("refused", "wrong_type")),
    ("CROSSSLOT", lambda: _error(E.ClusterCrossSlotError, "Keys in request don't hash to the same slot",
                                 "CROSSSLOT"), ("refused", "cross_slot")),
    ("TLS certificate", _cert_failure, ("refused", "tls")),
]


@pytest.mark.parametrize(("make", "expected"), [(make, expected) for _, make, expected in CASES],
                         ids=[name for name, _, _ in CASES])
def test_the_table_classifies_each_error(make, expected):
    assert _classify(make()) == expected


def test_an_error_becomes_a_lifecycle_error_with_the_original_chained_and_no_password():
    reg = RedisRegistry.from_url(f"redis://{USER}:{PASSWORD}@127.0.0.1:1/0", namespace="table")
    for _, make, (kind, reason) in CASES:
        original = make()
        error = reg._error(original)
        if reason == "moved":  # a plain client redirected: a cluster node, where it always will be (see below)
            kind, reason = "refused", "cluster_client"
        assert type(error) is (RegistryRefused if kind == "refused" else RegistryUnavailable)
        assert error.reason == reason and error.host == "127.0.0.1" and error.port == 1
        assert str(error).startswith("the registry at 127.0.0.1:1 ")
        assert PASSWORD not in str(error)
        # The pipeline's preamble repeats the command's arguments (service data): never quoted.
        assert "of pipeline caused error" not in str(error)
    with pytest.raises(RegistryUnavailable) as caught:
        try:
            raise E.RedisError("something new")
        except E.RedisError as exc:
            raise reg._error(exc) from exc
    assert isinstance(caught.value.__cause__, E.RedisError)


def test_the_errors_are_exported_at_top_level_and_carry_their_fields():
    import lifecycle

    assert lifecycle.RegistryRefused is RegistryRefused and "RegistryRefused" in lifecycle.__all__
    assert issubclass(RegistryRefused, LifecycleError) and not issubclass(RegistryRefused, RegistryUnavailable)
    refused = RegistryRefused("no", host="h", port=1, reason="auth")
    assert (refused.host, refused.port, refused.reason) == ("h", 1, "auth")
    assert RegistryUnavailable("down", host="h", port=1).reason == "connection"  # the default, as before


# -- real servers ------------------------------------------------------------------------------------


@pytest.fixture
def server(redis_binary: str, tmp_path: Path) -> Iterator[servers.RedisServer]:
    """A server of the test's own: the tests change its memory limit and users."""
    own = servers.RedisServer(redis_binary, tmp_path / "redis").start()
    yield own
    own.stop()


@pytest.fixture
def admin(server: servers.RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=5.0)
    yield client
    client.close()


@pytest.fixture
def member_url(server: servers.RedisServer, admin: redis.Redis, namespace: str) -> str:
    """A user with exactly the permissions docs/fleet.md asks for (the message of `permission` too)."""
    admin.execute_command("ACL", "SETUSER", USER, "on", f">{PASSWORD}", "+@scripting", "+@read", "+@write",
                          "+@connection", "+time", f"~lifecycle:{{{namespace}}}:*")
    return f"redis://{USER}:{PASSWORD}@127.0.0.1:{server.port}/0"


@pytest.fixture
def registries(namespace: str) -> Iterator[Callable[..., RedisRegistry]]:
    made: list[RedisRegistry] = []

    def make(url: str, **kwargs: Any) -> RedisRegistry:
        options = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0, **kwargs}
        made.append(RedisRegistry.from_url(url, namespace=namespace, **options))
        return made[-1]

    yield make
    for reg in made:
        reg.client.close()


@pytest.fixture
def managers() -> Iterator[Callable[..., LifecycleManager]]:
    made: list[LifecycleManager] = []

    def make(registry: RedisRegistry) -> LifecycleManager:
        made.append(LifecycleManager(registry, LifecycleConfig(heartbeat_timeout_secs=30.0), autostart=False))
        return made[-1]

    yield make
    for manager in made:
        with contextlib.suppress(LifecycleError):
            manager.shutdown()


@contextlib.contextmanager
def out_of_memory(admin: redis.Redis) -> Iterator[None]:
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")
    try:
        yield
    finally:
        admin.config_set("maxmemory", "0")


@contextlib.contextmanager
def without_eval(admin: redis.Redis) -> Iterator[None]:
    admin.execute_command("ACL", "SETUSER", USER, "-evalsha", "-eval")
    try:
        yield
    finally:
        admin.execute_command("ACL", "SETUSER", USER, "+evalsha", "+eval")


def raises(cls: type[LifecycleError], reason: str, call: Callable[[], object]) -> LifecycleError:
    """`call()` raises exactly `cls` with `reason`; returns it."""
    with pytest.raises(LifecycleError) as caught:
        call()
    error = caught.value
    assert type(error) is cls and error.reason == reason, f"{type(error).__name__} {error.reason}: {error}"
    shown = "".join(traceback.format_exception(error)) + repr(error)
    assert PASSWORD not in shown
    return error


def service(name: str = "svc") -> ExtensionService:
    return ExtensionService(name, "1")


def test_out_of_memory_is_unavailable_from_registry_and_manager_calls(server, admin, registries, managers):
    reg = registries(server.url)
    m = managers(reg)
    sid = m.start_service(service())
    with out_of_memory(admin):
        for call in (lambda: reg.register(service("other")), lambda: reg.heartbeat(sid),
                     lambda: reg.beat_many([sid, sid]), lambda: reg.lease("me", 1.0),
                     lambda: m.handle_heartbeat(sid), lambda: m.start_service(service("another")),
                     lambda: m.handle_error(sid, "boom")):
            error = raises(RegistryUnavailable, "out_of_memory", call)
            assert f"127.0.0.1:{server.port}" in str(error) and "maxmemory" in str(error)
            assert isinstance(error.__cause__, E.OutOfMemoryError)
        # Reads go on: a server out of memory refuses writes only.
        assert m.get_status(sid) is ServiceStatus.RUNNING and m.count() == 1 and reg.get(sid) is not None
    m.handle_heartbeat(sid)  # and all is well once memory is back


def test_an_acl_user_without_evalsha_is_refused_with_reason_permission(server, admin, member_url, registries,
                                                                        managers):
    reg = registries(member_url)
    m = managers(reg)
    sid = m.start_service(service())  # the documented permissions are enough
    m.handle_heartbeat(sid)
    with without_eval(admin):
        for call in (lambda: reg.heartbeat(sid), lambda: reg.beat_many([sid]), lambda: reg.list_all(),
                     lambda: m.handle_heartbeat(sid), lambda: m.get_status(sid), lambda: m.is_healthy(sid),
                     lambda: m.start_service(service("another")), lambda: m.stop_service(sid)):
            error = raises(RegistryRefused, "permission", call)
            assert "evalsha" in str(error).lower() and "+@scripting" in str(error)
            assert isinstance(error.__cause__, E.NoPermissionError)
        assert m.count() == 1  # HLEN is still allowed
    m.handle_heartbeat(sid)


# Every public method of RedisRegistry that asks the server, with arguments; test below checks the list is whole.
_REGISTRY_CALLS: dict[str, Callable[[RedisRegistry], object]] = {
    "register": lambda r: r.register(service()),
    "join": lambda r: r.join(service()),
    "restore": lambda r: r.restore(service(), 1.0),
    "restore_many": lambda r: r.restore_many([service("a"), service("b")], 1.0),
    "unregister": lambda r: r.unregister("x"),
    "finish_stop": lambda r: r.finish_stop("x"),
    "get": lambda r: r.get("x"),
    "get_by_name": lambda r: r.get_by_name("x"),
    "get_registration": lambda r: r.get_registration("x"),
    "update_status": lambda r: r.update_status("x", ServiceStatus.RUNNING),
    "heartbeat": lambda r: r.heartbeat("x"),
    "beat": lambda r: r.beat("x", 1.0),
    "beat_many": lambda r: r.beat_many(["x", "y"]),
    "activate": lambda r: r.activate("x", 1.0),
    "expire": lambda r: r.expire("x", 1.0, ServiceStatus.RECONNECTING),
    "silence": lambda r: r.silence("x"),
    "timing": lambda r: r.timing("x"),
    "is_healthy": lambda r: r.is_healthy("x"),
    "report_error": lambda r: r.report_error("x", "boom", None),
    "restart": lambda r: r.restart("x", Plan("retry")),
    "restarts": lambda r: r.restarts("x"),
    "phi": lambda r: r.phi("x"),
    "begin_stop": lambda r: r.begin_stop("x"),
    "list_all": lambda r: r.list_all(),
    "list": lambda r: r.list(),
    "find_by_capability": lambda r: r.find_by_capability("c"),
    "stats": lambda r: r.stats(),
    "health_check": lambda r: r.health_check(),
    "clear": lambda r: r.clear(),
    "count": lambda r: r.count(),
    "__len__": lambda r: len(r),
    "__contains__": lambda r: "x" in r,
    "lease": lambda r: r.lease("me", 1.0),
    "leader": lambda r: r.leader(),
    "release": lambda r: r.release("me"),
    "own": lambda r: r.own("x", "me", 1.0, 0.3),
    "disown": lambda r: r.disown("x", "me"),
    "owner_of": lambda r: r.owner_of("x"),
    "sweep": lambda r: r.sweep("me", 1.0, 0.0, 10, onset=Onset(True, 3, 1.0, 1.0)),
    "attempt_done": lambda r: r.attempt_done("x", "me", 1, True, Plan("retry")),
    "last_event_id": lambda r: r.last_event_id(),
    "read_events": lambda r: r.read_events("0"),
}
# No call to the server (`members`: a registry of one partition keeps no members' record).
_LOCAL = {"configure", "settings", "client", "from_url", "cluster", "partition_of", "members"}


def test_the_list_of_registry_calls_is_whole():
    public = {name for name, _ in inspect.getmembers(RedisRegistry) if not name.startswith("_")}
    assert public - _LOCAL == set(_REGISTRY_CALLS) - {"__len__", "__contains__"}


def test_every_registry_call_is_refused_with_a_lifecycle_error_for_a_user_allowed_nothing(server, admin,
                                                                                          registries):
    admin.execute_command("ACL", "SETUSER", "nobody", "on", f">{PASSWORD}", "+@connection", "~*")
    reg = registries(f"redis://nobody:{PASSWORD}@127.0.0.1:{server.port}/0")
    phi = PhiSettings(threshold=8.0, max_sample_size=100, min_std_deviation=0.1, acceptable_pause=0.0,
                      first_interval=1.0)
    reg.configure(StoreSettings(timeout=1.0, max_restarts=3, phi=phi))  # so that restarts() and phi() ask too
    for name, call in _REGISTRY_CALLS.items():
        try:
            call(reg)
        except RegistryRefused as exc:
            assert exc.reason == "permission", (name, exc)
        else:
            pytest.fail(f"{name} was not refused")


def test_a_wrong_password_or_none_is_refused_with_reason_auth(server, admin, member_url, registries, managers):
    wrong = registries(member_url.replace(PASSWORD, PASSWORD + "-wrong"))
    raises(RegistryRefused, "auth", wrong.count)
    raises(RegistryRefused, "auth", lambda: wrong.heartbeat("x"))
    m = managers(wrong)
    error = raises(RegistryRefused, "auth", lambda: m.start_service(service()))
    assert "password" in str(error) and error.port == server.port
    admin.config_set("requirepass", PASSWORD)  # the default user now needs one; this URL gives none
    try:
        raises(RegistryRefused, "auth", registries(f"redis://127.0.0.1:{server.port}/0").list_all)
    finally:
        redis.Redis(port=server.port, password=PASSWORD).config_set("requirepass", "")


def test_a_database_the_server_lacks_is_refused_with_reason_database(server, registries):
    reg = registries(f"redis://127.0.0.1:{server.port}/99")
    error = raises(RegistryRefused, "database", reg.count)
    assert "databases" in str(error)
    raises(RegistryRefused, "database", reg.list_all)


def test_a_renamed_scripting_command_is_refused_with_reason_unknown_command(redis_binary, tmp_path, registries):
    wrapper = tmp_path / "server-without-evalsha"  # the same binary, EVALSHA renamed away as some hosts do
    wrapper.write_text(f'#!/bin/sh\nexec "{redis_binary}" "$@" --rename-command EVALSHA ""\n')
    wrapper.chmod(0o755)
    own = servers.RedisServer(str(wrapper), tmp_path / "redis").start()
    try:
        reg = registries(own.url)
        assert reg.count() == 0
        error = raises(RegistryRefused, "unknown_command", lambda: reg.register(service()))
        assert "scripting" in str(error)
    finally:
        own.stop()


def test_a_read_only_replica_is_unavailable_with_reason_read_only(server, redis_binary, tmp_path, registries,
                                                                   managers):
    sid = registries(server.url).register(service("primary's"))  # copied by the full sync
    replica = servers.RedisServer(redis_binary, tmp_path / "replica").start()
    try:
        redis.Redis(port=server.port).config_set("repl-diskless-sync-delay", "0")
        follower = redis.Redis(port=replica.port, decode_responses=True)
        follower.replicaof("127.0.0.1", server.port)
        deadline = time.monotonic() + WAIT
        while follower.info("replication").get("master_link_status") != "up":  # not LOADING what it was sent
            assert time.monotonic() < deadline, "the replica never synchronised"
            time.sleep(0.02)  # polling a server's state: there is nothing to wait on
        follower.close()
        reg = registries(replica.url)
        for call in (lambda: reg.register(service()), lambda: reg.beat_many([sid]), lambda: reg.heartbeat(sid),
                     lambda: reg.lease("me", 1.0), lambda: managers(reg).start_service(service())):
            error = raises(RegistryUnavailable, "read_only", call)
            assert "primary" in str(error)
        assert reg.get(sid) is not None  # reads are served
    finally:
        replica.stop()


def test_a_busy_script_is_unavailable_with_reason_busy(server, admin, registries):
    reg = registries(server.url)
    admin.config_set("busy-reply-threshold" if "busy-reply-threshold" in admin.config_get("busy-*")
                     else "lua-time-limit", "50")
    entered = threading.Event()

    def spin() -> None:  # a script that only reads, so that SCRIPT KILL can end it
        client = redis.Redis(port=server.port, socket_timeout=WAIT)
        entered.set()
        with contextlib.suppress(E.ResponseError):  # "Script killed by user"
            client.eval("local e = tonumber(redis.call('TIME')[1]) + 5 "
                        "while tonumber(redis.call('TIME')[1]) < e do end return 1", 0)
        client.close()

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        assert entered.wait(WAIT)
        deadline = time.monotonic() + WAIT
        while True:  # until the script runs past the threshold
            try:
                reg.count()
            except RegistryUnavailable as exc:
                assert exc.reason == "busy", exc
                break
            assert time.monotonic() < deadline, "the server never answered BUSY"
        raises(RegistryUnavailable, "busy", lambda: reg.heartbeat("x"))
    finally:
        while spinner.is_alive():
            with contextlib.suppress(E.ResponseError):  # NOTBUSY: not started yet, or ended
                redis.Redis(port=server.port).script_kill()
            spinner.join(0.1)
    assert reg.count() == 0


def test_nothing_listening_or_no_answer_is_unavailable_with_reason_connection_or_timeout(registries):
    reg = registries(f"redis://:{PASSWORD}@127.0.0.1:{servers.free_port()}/0")
    error = raises(RegistryUnavailable, "connection", reg.count)
    assert str(error).endswith("cannot be reached (ConnectionError)")
    with socket.create_server(("127.0.0.1", 0)) as mute:  # accepts (the kernel's backlog) and never answers
        silent = registries(f"redis://127.0.0.1:{mute.getsockname()[1]}/0", socket_timeout=0.2)
        raises(RegistryUnavailable, "timeout", lambda: silent.read_events("0", block=0.05))


# -- HTTP ----------------------------------------------------------------------------------------------


def test_the_flask_endpoints_answer_500_when_refused_and_503_when_unavailable(server, admin, member_url,
                                                                             namespace):
    flask = pytest.importorskip("flask")
    from lifecycle.contrib.flask import Lifecycle

    app = flask.Flask("refusals")
    app.config.update(LIFECYCLE_AUTOSTART=False, LIFECYCLE_HEARTBEAT_INTERVAL_SECS=1,
                      LIFECYCLE_HEARTBEAT_TIMEOUT_SECS=30, LIFECYCLE_REDIS_URL=member_url,
                      LIFECYCLE_NAMESPACE=namespace)
    Lifecycle(app)
    manager: LifecycleManager = app.extensions["lifecycle"]
    try:
        sid = manager.start_service(service())
        client = app.test_client()
        assert client.post(f"/lifecycle/services/{sid}/heartbeat").status_code == 204
        with out_of_memory(admin):
            reply = client.post(f"/lifecycle/services/{sid}/heartbeat")
            assert reply.status_code == 503 and reply.headers["Retry-After"] == "1"
            assert reply.get_json()["error"] == "registry_unavailable"
            assert reply.get_json()["reason"] == "out_of_memory"
        with without_eval(admin):
            for reply in (client.post(f"/lifecycle/services/{sid}/heartbeat"), client.get("/lifecycle/services"),
                          client.get("/lifecycle/healthz"), client.get(f"/lifecycle/services/{sid}")):
                assert reply.status_code == 500 and reply.mimetype == "application/json"
                body = reply.get_json()
                assert body["error"] == "registry_refused" and body["reason"] == "permission", body
                assert f"127.0.0.1:{server.port}" in body["message"] and PASSWORD not in body["message"]
                assert "Retry-After" not in reply.headers
        assert client.post(f"/lifecycle/services/{sid}/heartbeat").status_code == 204
    finally:
        manager.shutdown()


# -- the status command ------------------------------------------------------------------------------


def test_the_status_command_prints_one_line_and_exits_non_zero(server, admin, member_url, namespace, capsys):
    wrong = member_url.replace(PASSWORD, PASSWORD + "-wrong")
    for url, reason in ((wrong, "(auth)"), (f"redis://127.0.0.1:{server.port}/99", "(database)")):
        assert main(["status", "--redis", url, "--namespace", namespace, "--timeout", "2"]) == 1
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("error: the registry at ")
        assert reason in err and PASSWORD not in err
    with without_eval(admin):
        assert main(["status", "--redis", member_url, "--namespace", namespace, "--timeout", "2"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "(permission)" in err and PASSWORD not in err
    RedisRegistry(admin, namespace=namespace).register(ExtensionService("kept", "1"))  # else: exit 3, "holds nothing"
    with out_of_memory(admin):  # reads go on
        assert main(["status", "--redis", member_url, "--namespace", namespace, "--timeout", "2"]) == 0
        assert "kept" in capsys.readouterr().out
    # The real command line: no traceback.
    done = subprocess.run([sys.executable, "-m", "lifecycle", "status", "--redis", wrong, "--namespace", namespace,
                           "--timeout", "2"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and PASSWORD not in done.stderr


# -- TLS: a self-signed certificate made here ------------------------------------------------------------


@pytest.fixture
def tls_server(request, redis_binary: str, tmp_path: Path) -> Iterator[tuple[servers.RedisServer, int, Path]]:
    """(server, its TLS port, the certificate): a server with a plain port and a TLS one, self-signed."""
    servers.only_on_first_binary(request, "the TLS handshake is the client's and the server's TLS library's")
    if not shutil.which("openssl"):
        pytest.skip("no openssl here to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    tls_port = servers.free_port()
    own = servers.RedisServer(redis_binary, tmp_path / "redis", password=PASSWORD, extra=[
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-auth-clients", "no"])
    try:
        own.start()
    except RuntimeError:
        pytest.skip(f"{redis_binary} does not start with TLS (built without it?)")
    yield own, tls_port, cert
    own.stop()


def test_tls_refusals_are_refused_with_reason_tls_and_a_plain_client_on_the_tls_port_is_unavailable(
        tls_server, registries, managers, namespace, capsys):
    _, tls_port, cert = tls_server
    trusted = registries(f"rediss://:{PASSWORD}@127.0.0.1:{tls_port}/0", ssl_ca_certs=str(cert))
    assert trusted.count() == 0  # the certificate is fine once trusted
    unverified = registries(f"rediss://:{PASSWORD}@127.0.0.1:{tls_port}/0")  # self-signed, no CA given
    for call in (unverified.count, lambda: unverified.heartbeat("x"), lambda: managers(unverified).start_service(
            service())):
        error = raises(RegistryRefused, "tls", call)
        assert "ssl_ca_certs" in str(error) and error.port == tls_port
    # A plain client on the TLS port: the server resets the connection, as a server going down does, so
    # it cannot be told from an outage: unavailable, retried, logged once.
    plain = registries(f"redis://:{PASSWORD}@127.0.0.1:{tls_port}/0")
    raises(RegistryUnavailable, "connection", plain.count)
    url = f"rediss://:{PASSWORD}@127.0.0.1:{tls_port}/0"
    assert main(["status", "--redis", url, "--namespace", namespace, "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(tls)" in err and PASSWORD not in err


def test_the_django_endpoints_answer_500_json_when_refused_and_503_when_unavailable(server, admin, member_url,
                                                                                    namespace):
    pytest.importorskip("django")
    import django_setup  # noqa: F401  (configures Django once per process)
    from django.test import Client, override_settings

    import lifecycle.contrib.django as integration

    integration._reset()
    settings = {"AUTOSTART": False, "HEARTBEAT_INTERVAL_SECS": 1, "HEARTBEAT_TIMEOUT_SECS": 30,
                "REDIS_URL": member_url, "NAMESPACE": namespace}
    with override_settings(LIFECYCLE=settings):
        manager = integration.get_manager()
        try:
            sid = manager.start_service(service())
            client = Client()
            assert client.post(f"/lifecycle/services/{sid}/heartbeat").status_code == 204
            with out_of_memory(admin):
                reply = client.post(f"/lifecycle/services/{sid}/heartbeat")
                assert reply.status_code == 503 and reply["Retry-After"] == "1"
                assert reply.json()["error"] == "registry_unavailable" and reply.json()["reason"] == "out_of_memory"
            with without_eval(admin):
                for reply in (client.post(f"/lifecycle/services/{sid}/heartbeat"), client.get("/lifecycle/services"),
                              client.get("/lifecycle/healthz"), client.get(f"/lifecycle/services/{sid}")):
                    assert reply.status_code == 500 and reply["Content-Type"] == "application/json"
                    body = reply.json()
                    assert body["error"] == "registry_refused" and body["reason"] == "permission", body
                    assert PASSWORD not in reply.content.decode() and not reply.has_header("Retry-After")
            assert client.post(f"/lifecycle/services/{sid}/heartbeat").status_code == 204
        finally:
            integration._reset()
