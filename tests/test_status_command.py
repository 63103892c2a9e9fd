"""`python -m lifecycle status` in fleet mode, against real servers: a namespace that holds nothing
says so, lists the namespaces the server does hold and exits 3; `--url` with `--redis` is a usage
error (exit 2); a registry that cannot be read is one line on stderr and exit 1, never a traceback.

Each test that lists namespaces has a server of its own (`fresh_redis_server`), so the list is
exactly what the test put there; the others use the session's server and a namespace of their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis_server as servers

from lifecycle import ExtensionService
from lifecycle.__main__ import EXIT_EMPTY_NAMESPACE, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, main
from lifecycle.contrib import _status
from lifecycle.redis import RedisRegistry

ROOT = Path(__file__).resolve().parents[1]


def status(url: str, namespace: str, *more: str) -> list[str]:
    return ["status", "--redis", url, "--namespace", namespace, "--timeout", "2", *more]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command line, in a process of its own."""
    return subprocess.run([sys.executable, "-m", "lifecycle", *args], capture_output=True, text=True, timeout=60,
                          check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture
def admin(fresh_redis_server: servers.RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(fresh_redis_server.url, decode_responses=True, socket_timeout=5.0)
    yield client
    client.close()


def fill(client: redis.Redis, namespace: str, services: int) -> RedisRegistry:
    registry = RedisRegistry(client, namespace=namespace)
    for i in range(services):
        registry.register(ExtensionService(f"svc-{i}", "1.0"))
    return registry


# -- a namespace that holds nothing ----------------------------------------------------------------


def test_a_mistyped_namespace_lists_the_namespaces_found_with_their_counts_and_exits_3(
        fresh_redis_server, admin, capsys):
    fill(admin, "production", 3)
    fill(admin, "staging", 1)
    fill(admin, "idle", 0).lease("someone", 30.0)  # a namespace with a leader and no service
    admin.set("unrelated", "x")
    admin.set("lifecycle-lookalike:{nope}:svc", "x")

    assert main(status(fresh_redis_server.url, "prodution")) == EXIT_EMPTY_NAMESPACE
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == ("error: namespace 'prodution' holds nothing on this server "
                        "(no service, no leader, no event log)")
    assert lines[1] == "lifecycle namespaces on this server:"
    assert [line.split() for line in lines[2:5]] == [
        ["idle", "0", "services"], ["production", "3", "services"], ["staging", "1", "service"]]
    assert lines[5:] == ["pass one of them with --namespace"]

    # The namespace the list points at is read as usual.
    assert main(status(fresh_redis_server.url, "production")) == EXIT_OK
    out, err = capsys.readouterr()
    assert err == "" and out.count("svc-") == 3 and out.rstrip().endswith("leader: none (no process holds the lease)")


def test_a_partitioned_namespace_is_listed_once_by_its_name_with_every_partitions_services(
        fresh_redis_server, admin, capsys):
    """A partitioned namespace's keys carry one tag per partition (``sharded/p1``): the list names the namespace."""
    sharded = RedisRegistry(admin, namespace="sharded", partitions=3)
    for i in range(5):
        sharded.register(ExtensionService(f"svc-{i}", "1.0"))
    fill(admin, "plain", 1)
    fill(admin, "team/p1", 2)  # a one-partition namespace that only looks like a partition's tag

    assert main(status(fresh_redis_server.url, "shraded")) == EXIT_EMPTY_NAMESPACE
    lines = capsys.readouterr().err.splitlines()
    assert [line.split() for line in lines[2:-1]] == [
        ["plain", "1", "service"], ["sharded", "5", "services"], ["team/p1", "2", "services"]]
    assert main(status(fresh_redis_server.url, "sharded")) == EXIT_OK
    assert capsys.readouterr().out.count("svc-") == 5


def test_an_empty_server_says_there_is_no_namespace_at_all_and_exits_3(fresh_redis_server, admin, capsys):
    admin.set("unrelated", "x")
    assert main(status(fresh_redis_server.url, "lifecycle")) == EXIT_EMPTY_NAMESPACE
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "error: namespace 'lifecycle' holds nothing on this server (no service, no leader, no event log)",
        "no lifecycle namespace on this server: has no process used it yet?",
    ]


def test_json_prints_an_empty_list_and_still_exits_3(fresh_redis_server, admin, capsys):
    fill(admin, "production", 1)
    assert main(status(fresh_redis_server.url, "other", "--json")) == EXIT_EMPTY_NAMESPACE
    out, err = capsys.readouterr()
    assert out == "[]\n" and "production" in err and "1 service" in err


def test_a_namespace_with_no_service_left_is_not_empty(redis_server, namespace, capsys):
    """Once used, a namespace keeps keys (its event log, its leader): no service is then a fact, exit 0."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        registry = RedisRegistry(client, namespace=namespace)
        registry.lease("leader-1", 30.0)
        assert main(status(redis_server.url, namespace)) == EXIT_OK
        out = capsys.readouterr().out
        assert out.splitlines() == ["No lifecycle services.", "leader: leader-1"]
        registry.release("leader-1")
        registry.unregister(registry.register(ExtensionService("gone", "1.0")))
        assert main(status(redis_server.url, namespace)) == EXIT_OK
        assert capsys.readouterr().out.startswith("No lifecycle services.\n")
    finally:
        client.close()


def test_the_search_is_bounded_and_says_when_it_stopped_early(fresh_redis_server, admin, capsys, monkeypatch):
    fill(admin, "a", 2)
    fill(admin, "b", 1)
    with admin.pipeline(transaction=False) as pipe:
        for i in range(20):
            pipe.mset({f"filler:{i}:{j}": "x" for j in range(500)})
        pipe.execute()
    monkeypatch.setattr(_status, "SCAN_CALLS", 1)  # one SCAN of ~1000 of 10,000+ keys
    monkeypatch.setattr(_status, "COUNTED", 1)
    assert main(status(fresh_redis_server.url, "c")) == EXIT_EMPTY_NAMESPACE
    err = capsys.readouterr().err
    assert "(the search stopped early: there may be more)" in err or "there may be some" in err
    monkeypatch.setattr(_status, "SCAN_CALLS", 1000)
    assert main(status(fresh_redis_server.url, "c")) == EXIT_EMPTY_NAMESPACE
    lines = capsys.readouterr().err.splitlines()
    assert lines[1] == "lifecycle namespaces on this server:"
    assert [line.split(None, 1) for line in lines[2:4]] == [["a", "2 services"], ["b", "services not counted"]]


def test_the_real_command_line_exits_3_without_a_traceback(fresh_redis_server, admin):
    fill(admin, "production", 2)
    done = run(*status(fresh_redis_server.url, "prod"))
    assert done.returncode == EXIT_EMPTY_NAMESPACE and done.stdout == ""
    assert "Traceback" not in done.stderr
    assert "error: namespace 'prod' holds nothing" in done.stderr and "production  2 services" in done.stderr


# -- usage errors and a registry that cannot be read -----------------------------------------------


def test_url_with_redis_is_a_usage_error(redis_server, namespace, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["status", "--url", "http://127.0.0.1:1/lifecycle", *status(redis_server.url, namespace)[1:]])
    assert exited.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "argument --redis: not allowed with argument --url" in err and "Traceback" not in err
    done = run("status", "--redis", redis_server.url, "--url", "http://127.0.0.1:1/lifecycle")
    assert done.returncode == EXIT_USAGE and done.stdout == ""
    assert "not allowed with argument --redis" in done.stderr and "Traceback" not in done.stderr


def test_neither_url_nor_redis_is_a_usage_error_too(capsys):
    assert main(["status"]) == EXIT_USAGE
    assert "--url is required" in capsys.readouterr().err


def test_the_help_names_every_exit_code():
    done = run("status", "--help")
    assert done.returncode == 0
    assert "[--url URL | --redis URL]" in " ".join(done.stdout.split())
    codes = done.stdout.split("exit codes:", 1)[1]
    for code in (EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, EXIT_EMPTY_NAMESPACE):
        assert f"\n  {code}  " in codes
    assert "holds nothing" in codes


def test_an_unreachable_registry_is_one_line_and_exit_1(capsys):
    url = f"redis://:secret-pw@127.0.0.1:{servers.free_port()}/0"  # nothing listens there
    assert main(status(url, "lifecycle")) == EXIT_UNAVAILABLE
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("error: ")
    assert "127.0.0.1:" in err and "secret-pw" not in err
    done = run(*status(url, "lifecycle"))
    assert done.returncode == EXIT_UNAVAILABLE and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and "secret-pw" not in done.stderr


def test_a_bad_namespace_or_url_is_one_line_and_exit_1(redis_server, capsys):
    for args in (status(redis_server.url, "a{b}"), status("http://127.0.0.1:1/", "lifecycle"),
                 status(f"redis://127.0.0.1:{redis_server.port}/99", "lifecycle")):
        assert main(args) == EXIT_UNAVAILABLE, args
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("error: "), (args, err)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:99999/0", "port must be a whole number from 1 to 65535, not '99999'"),
        ("redis://127.0.0.1:{port}/abc", "database must be a whole number >= 0 (e.g. /0), not '/abc'"),
        ("redis://127.0.0.1:{port}/0?socket_timout=1",
         "has an unknown option ?socket_timout=; did you mean ?socket_timeout=?"),
        ("redis://:secret-pw@127.0.0.1:{port}/0?db=x", "option ?db= must be a whole number >= 0, not 'x'"),
        ("redis:///0", "names no host"),
    ],
)
def test_a_bad_redis_url_is_checked_as_the_setting_is_before_anything_connects(redis_server, capsys, url, expected):
    """Each problem named after --redis on one line, exit 1: never redis-py's own error, a traceback or the password
    (an unknown option reached redis-py's connection as a TypeError; '/abc' was tried and 'cannot be reached')."""
    args = status(url.format(port=redis_server.port), "lifecycle")
    assert main(args) == EXIT_UNAVAILABLE
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"error: --redis: {expected}") and err.count("\n") == 1, err
    done = run(*args)
    assert done.returncode == EXIT_UNAVAILABLE and done.stdout == "" and done.stderr == err
    assert "secret-pw" not in err


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://user:secret-pw@127.0.0.1:1/lifecycle",
         "error: --url must not hold credentials (pass --token): 'http://user:***@127.0.0.1:1/lifecycle'"),
        ("http://user:secret-pw@[::1/lifecycle",
         "error: --url is not a valid URL (Invalid IPv6 URL): 'http://user:***@[::1/lifecycle'"),
        ("http://:secret-pw@/lifecycle", "error: --url names no host: 'http://:***@/lifecycle'"),
        ("http://127.0.0.1:99999/lifecycle", "error: --url is not a valid URL (Port out of range 0-65535)"),
        ("http://127.0.0.1:port/lifecycle", "error: --url is not a valid URL (Port could not be cast"),
        ("http://a b/lifecycle", "error: cannot reach http://a b/lifecycle/services: URL can't contain control"),
    ],
)
def test_a_bad_url_is_one_line_and_exit_1_never_a_traceback_or_the_password(url, expected):
    """The real command line: each of these raised a traceback (http.client.InvalidURL, ValueError), or
    repeated the password ("nonnumeric port: 'secret-pw@'", "cannot reach http://user:secret-pw@...")."""
    done = run("status", "--url", url, "--timeout", "2")
    assert done.returncode == EXIT_UNAVAILABLE and done.stdout == "", done.stderr
    assert done.stderr.startswith(expected) and done.stderr.count("\n") == 1, done.stderr
    assert "secret-pw" not in done.stderr and "Traceback" not in done.stderr


def test_the_leader_is_named_by_host_and_pid_as_the_status_page_names_it(redis_server, namespace, capsys):
    """The lease holder's owner token (host:pid:random) is printed as its host and pid, the random part left out."""
    from lifecycle.engine.lease import owner_token

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        registry = RedisRegistry(client, namespace=namespace)
        token = owner_token()
        registry.lease(token, 30.0)
        assert main(status(redis_server.url, namespace)) == EXIT_OK
        host, pid, secret = token.split(":")
        out = capsys.readouterr().out
        assert out.splitlines()[-1] == f"leader: {host} pid {pid}" and secret not in out
        assert _status.parse_leader(token) == {"host": host, "pid": os.getpid()}
        assert _status.parse_leader(None) is None and _status.parse_leader("a:b") == {"host": "a:b", "pid": None}
        registry.release(token)
    finally:
        client.close()


def test_a_partitioned_namespace_names_every_partitions_leader(redis_server, namespace, capsys):
    """One lease per partition: the command names each partition's holder, "none" where nobody holds it."""
    from lifecycle.engine.lease import owner_token

    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        registry = RedisRegistry(client, namespace=namespace, partitions=3)
        first, second = owner_token(), "web-9:4243:abcdef"
        registry.lease(first, 30.0, partition=0)  # type: ignore[call-arg]
        registry.lease(second, 30.0, partition=1)  # type: ignore[call-arg]
        assert main(status(redis_server.url, namespace)) == EXIT_OK
        host, pid, secret = first.split(":")
        out = capsys.readouterr().out
        assert out.splitlines() == ["No lifecycle services.",
                                    f"leaders: p0 {host} pid {pid}, p1 web-9 pid 4243, p2 none"]
        assert secret not in out
        registry.release(first)
        registry.release(second)
        assert main(status(redis_server.url, namespace)) == EXIT_OK  # nobody leads, the namespace still exists
        assert capsys.readouterr().out.splitlines()[-1] == "leaders: p0 none, p1 none, p2 none"
    finally:
        client.close()
