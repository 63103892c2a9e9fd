"""Configuration on day one: every bad key in one error, the Redis URL checked at init, one startup line.

Real Flask and Django; the fleet-mode startup line against a real password-protected server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django_setup  # noqa: F401  (configures Django before the imports below)
import pytest
import redis_server as servers
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from flask import Flask

import lifecycle.contrib.django as integration
from lifecycle import ExtensionService, LifecycleError, RegistryRefused, ServiceStatus
from lifecycle.contrib import ConfigurationError
from lifecycle.contrib._process import _at_exit
from lifecycle.contrib._settings import describe_registry, parse_settings, redis_url_problems
from lifecycle.contrib.django import get_manager
from lifecycle.contrib.flask import Lifecycle

PASSWORD = "hunter2-Zq9"
MANUAL = {"LIFECYCLE_AUTOSTART": False}


def flask_spell(key: str) -> str:
    return f"LIFECYCLE_{key}"


def flask_app(**config: Any) -> Flask:
    app = Flask("day-one")
    app.config.update(MANUAL)
    app.config.update(config)
    return app


def flask_error(**config: Any) -> ConfigurationError:
    app = flask_app(**config)
    with pytest.raises(ConfigurationError) as caught:
        Lifecycle(app)
    assert "lifecycle" not in app.extensions and "lifecycle" not in app.blueprints
    return caught.value


@pytest.fixture(autouse=True)
def fresh_django_manager() -> Iterator[None]:
    integration._reset()
    yield
    integration._reset()


@pytest.fixture
def lifecycle_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="lifecycle")
    return caplog


def startup_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "lifecycle" and r.getMessage().startswith("lifecycle: registry: ")]


# -- Flask: one error, every bad key -------------------------------------------------------------


def test_flask_names_both_keys_of_the_issue_in_one_error() -> None:
    error = flask_error(LIFECYCLE_HEARTBEAT_TIMEOUT=30, LIFECYCLE_REDIS_URI="redis://127.0.0.1:6379/0")
    assert [key for key, _ in error.problems] == ["LIFECYCLE_HEARTBEAT_TIMEOUT", "LIFECYCLE_REDIS_URI"]
    assert error.key == "LIFECYCLE_HEARTBEAT_TIMEOUT" and error.setting == "HEARTBEAT_TIMEOUT"
    assert error.code == "unknown"
    text = str(error)
    assert text.startswith("2 problems in the lifecycle settings:\n")
    assert "LIFECYCLE_HEARTBEAT_TIMEOUT: unknown setting; did you mean LIFECYCLE_HEARTBEAT_TIMEOUT_SECS?" in text
    assert "LIFECYCLE_REDIS_URI: unknown setting; did you mean LIFECYCLE_REDIS_URL?" in text
    assert [e.setting for e in error.errors] == ["HEARTBEAT_TIMEOUT", "REDIS_URI"]
    assert [e.setting for e in error.others] == ["REDIS_URI"]
    assert isinstance(error, ValueError) and isinstance(error, LifecycleError)


def test_flask_lists_unknown_keys_bad_values_type_errors_and_its_own_keys_together() -> None:
    threads_before = len(_at_exit)
    error = flask_error(
        LIFECYCLE_JITER=0.1,  # unknown, close to JITTER
        LIFECYCLE_JITTER=5,  # out of range
        LIFECYCLE_SHUTDOWN_TIMEOUT="5",  # wrong type
        LIFECYCLE_AUTOSTART="yes",  # wrong type
        LIFECYCLE_ENDPOINTS="on",  # a Flask-only key, wrong type
        LIFECYCLE_URL_PREFIX="lifecycle",  # a Flask-only key, bad value
        LIFECYCLE_REDIS_URL="redis://127.0.0.1:99999/abc",  # two problems in one URL
    )
    keys = [key for key, _ in error.problems]
    assert sorted(set(keys)) == sorted(flask_spell(k) for k in (
        "JITER", "JITTER", "SHUTDOWN_TIMEOUT", "AUTOSTART", "ENDPOINTS", "URL_PREFIX", "REDIS_URL"))
    assert keys.count("LIFECYCLE_REDIS_URL") == 2
    assert error.key == keys[0]
    problems = dict((key, message) for key, message in error.problems if key != "LIFECYCLE_REDIS_URL")
    assert problems["LIFECYCLE_JITER"].endswith("did you mean LIFECYCLE_JITTER?")
    assert "must be an int or float" in problems["LIFECYCLE_SHUTDOWN_TIMEOUT"]
    assert problems["LIFECYCLE_ENDPOINTS"] == "must be a bool, not str"
    assert "must be a path below the root" in problems["LIFECYCLE_URL_PREFIX"]
    for key, message in error.problems:  # every line of the text names its setting
        assert f"\n  {key}: {message}" in str(error)
    assert len(_at_exit) == threads_before  # no manager was built


def test_one_bad_key_reads_as_before() -> None:
    error = flask_error(LIFECYCLE_JITTER=5)
    assert error.problems == [("LIFECYCLE_JITTER", error.message)]
    assert str(error) == f"LIFECYCLE_JITTER: {error.message}" and error.errors == [error] and error.others == []


# -- the Redis URL, checked at init ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:99999/0", "port must be a whole number from 1 to 65535, not '99999'"),
        ("redis://127.0.0.1:0/0", "port must be a whole number from 1 to 65535, not '0'"),
        ("redis://127.0.0.1:port/0", "port must be a whole number from 1 to 65535, not 'port'"),
        ("redis://127.0.0.1:6379/abc", "database must be a whole number >= 0 (e.g. /0), not '/abc'"),
        ("redis://127.0.0.1:6379/-1", "database must be a whole number >= 0"),
        ("redis://127.0.0.1:6379/0?db=1", "names the database twice"),
        ("redis://127.0.0.1/?db=x", "option ?db= must be a whole number >= 0, not 'x'"),
        ("http://127.0.0.1:6379/0", "must start with redis://, rediss:// or unix://"),
        ("127.0.0.1:6379", "must start with redis://, rediss:// or unix://"),
        ("redis:///0", "names no host"),
        ("redis://[::1/0", "has a host that is not valid"),
        ("unix://", "names no socket path"),
        ("unix://localhost/run/redis.sock", "takes the socket path after three slashes"),
        ("redis://127.0.0.1/0?socket_timout=3",
         "has an unknown option ?socket_timout=; did you mean ?socket_timeout=?"),
        ("redis://127.0.0.1/0?socket_timeout=-1", "option ?socket_timeout= must be a number of seconds > 0, not '-1'"),
        ("redis://127.0.0.1/0?socket_keepalive=maybe", "option ?socket_keepalive= must be true or false"),
        ("redis://127.0.0.1/0?protocol=4", "option ?protocol= must be 2 or 3"),
        ("redis://127.0.0.1/0?decode_responses=false", "has an unknown option ?decode_responses=; known options:"),
        ("redis://127.0.0.1/0?ssl_ca_certs=/ca.pem", "TLS options need a rediss:// URL"),
        ("rediss://127.0.0.1/0?ssl_cert_reqs=sometimes", "option ?ssl_cert_reqs= must be none, optional or required"),
    ],
)
def test_a_bad_redis_url_is_refused_at_init_naming_the_setting(url: str, expected: str) -> None:
    error = flask_error(LIFECYCLE_REDIS_URL=url, LIFECYCLE_NAMESPACE="day-one")
    assert error.key == "LIFECYCLE_REDIS_URL" and error.setting == "REDIS_URL"
    assert any(key == "LIFECYCLE_REDIS_URL" and expected in message for key, message in error.problems), error


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@127.0.0.1:99999/abc",
        f"redis://user:{PASSWORD}@127.0.0.1:6379/0?password={PASSWORD}&ssl_password={PASSWORD}",  # TLS only
        f"rediss://user:{PASSWORD}@127.0.0.1:6379/0?ssl_password={PASSWORD}x&nope={PASSWORD}",
        f"redis://:{PASSWORD[:4]}/{PASSWORD[4:]}@127.0.0.1:6379/0",  # an unencoded "/" in the password
        f"redis://:{PASSWORD[:4]}#{PASSWORD[4:]}@127.0.0.1:6379/0",
        f"http://:{PASSWORD}@127.0.0.1:6379/0",
        f"unix://:{PASSWORD}@host/run/redis.sock",
    ],
)
def test_no_redis_url_problem_repeats_the_password(url: str) -> None:
    assert redis_url_problems(url)
    error = flask_error(LIFECYCLE_REDIS_URL=url, LIFECYCLE_NAMESPACE="day-one")
    for piece in (PASSWORD, PASSWORD[:4], PASSWORD[4:]):
        assert piece not in str(error) and piece not in repr(error)
        assert all(piece not in message for _, message in error.problems)


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("redis://127.0.0.1:6379", "Redis at 127.0.0.1:6379, database 0"),
        (f"redis://:{PASSWORD}@redis.internal:6380/2", "Redis at redis.internal:6380, database 2"),
        (f"redis://app:{PASSWORD}@[::1]:7000/?db=5&socket_timeout=2.5", "Redis at [::1]:7000, database 5"),
        ("rediss://redis.internal/3?ssl_cert_reqs=none&ssl_check_hostname=false",
         "Redis (TLS) at redis.internal:6379, database 3"),
        ("unix:///run/redis/redis.sock?db=1", "Redis at unix socket /run/redis/redis.sock, database 1"),
    ],
)
def test_good_redis_urls_are_accepted_and_described_without_the_password(url: str, where: str) -> None:
    settings = parse_settings({"REDIS_URL": url, "NAMESPACE": "shop"}, flask_spell)
    assert describe_registry(settings) == f"{where}, namespace 'shop' (fleet mode)"


# -- Django: the same checks, in the system checks and in get_manager() ------------------------------


def test_django_checks_report_each_redis_url_problem_with_its_setting() -> None:
    bad = {"REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:99999/abc?socket_timout=1", "NAMESPACE": "day-one",
           "JITER": 1}
    with override_settings(LIFECYCLE=bad):
        messages = [m for m in run_checks(tags=["lifecycle"]) if m.id.startswith("lifecycle.E")]
    found = sorted((m.id, m.msg) for m in messages)
    assert found == [
        ("lifecycle.E002", "LIFECYCLE['JITER'] is not a lifecycle setting."),
        ("lifecycle.E003", "LIFECYCLE['REDIS_URL']: database must be a whole number >= 0 (e.g. /0), not '/abc'"),
        ("lifecycle.E003", "LIFECYCLE['REDIS_URL']: has an unknown option ?socket_timout=; "
                           "did you mean ?socket_timeout=?"),
        ("lifecycle.E003", "LIFECYCLE['REDIS_URL']: port must be a whole number from 1 to 65535, not '99999'"),
    ]
    assert all(PASSWORD not in f"{m.msg} {m.hint}" for m in messages)


def test_django_get_manager_lists_every_problem_in_one_error() -> None:
    bad = {"HEARTBEAT_TIMEOUT": 30, "REDIS_URI": "redis://127.0.0.1:6379/0", "AUTOSTART": False}
    with override_settings(LIFECYCLE=bad), pytest.raises(ImproperlyConfigured) as caught:
        get_manager()
    text = str(caught.value)
    assert "LIFECYCLE['HEARTBEAT_TIMEOUT']: unknown setting" in text
    assert "LIFECYCLE['REDIS_URI']: unknown setting; did you mean LIFECYCLE['REDIS_URL']?" in text
    cause = caught.value.__cause__
    assert isinstance(cause, ConfigurationError) and len(cause.problems) == 2


# -- one line at startup saying which registry -----------------------------------------------------


def test_flask_logs_the_in_memory_registry_once_per_manager(lifecycle_log: pytest.LogCaptureFixture) -> None:
    first, second = flask_app(), flask_app()
    Lifecycle(first)
    assert [r.getMessage() for r in startup_lines(lifecycle_log)] == [
        "lifecycle: registry: in-memory (this process only)"]
    assert startup_lines(lifecycle_log)[0].levelno == logging.INFO
    first.extensions["lifecycle"].shutdown(1)
    Lifecycle(second)
    second.extensions["lifecycle"].shutdown(1)
    assert len(startup_lines(lifecycle_log)) == 2


def test_a_bad_config_logs_no_startup_line(lifecycle_log: pytest.LogCaptureFixture) -> None:
    flask_error(LIFECYCLE_JITTER=5)
    assert startup_lines(lifecycle_log) == []


def test_django_logs_the_in_memory_registry_once(lifecycle_log: pytest.LogCaptureFixture) -> None:
    with override_settings(LIFECYCLE={"AUTOSTART": False}):
        manager = get_manager()
        assert get_manager() is manager
    assert [r.getMessage() for r in startup_lines(lifecycle_log)] == [
        "lifecycle: registry: in-memory (this process only)"]


@pytest.fixture
def password_server(redis_binary: str, tmp_path: Path) -> Iterator[servers.RedisServer]:
    server = servers.RedisServer(redis_binary, tmp_path / "redis", password=PASSWORD).start()
    yield server
    server.stop()


def test_fleet_mode_startup_line_names_host_port_database_and_namespace_never_the_password(
        password_server: servers.RedisServer, namespace: str, lifecycle_log: pytest.LogCaptureFixture) -> None:
    url = password_server.url.rstrip("/").rpartition("/")[0] + "/3"  # database 3
    assert PASSWORD in url
    app = flask_app(LIFECYCLE_REDIS_URL=url, LIFECYCLE_NAMESPACE=namespace)
    manager = Lifecycle(app).get_manager(app)
    try:  # the registry works, with the password
        assert manager.get_status(manager.start_service(ExtensionService("ext", "1"))) is ServiceStatus.RUNNING
    finally:
        manager.shutdown(2)
    with override_settings(LIFECYCLE={"REDIS_URL": url, "NAMESPACE": namespace, "AUTOSTART": False}):
        try:
            assert get_manager().is_healthy("no-such-service") is False  # a call that reaches the server
        finally:
            integration._reset()  # shut down while the server still runs
    expected = (f"lifecycle: registry: Redis at 127.0.0.1:{password_server.port}, database 3, "
                f"namespace {namespace!r} (fleet mode)")
    assert [r.getMessage() for r in startup_lines(lifecycle_log)] == [expected, expected]
    for record in lifecycle_log.records:
        assert PASSWORD not in record.getMessage() and PASSWORD not in (record.exc_text or "")


# -- a database the server lacks: only the server can tell, at the first call --------------------------


def test_a_database_the_server_lacks_boots_and_is_refused_at_the_first_call_in_flask_and_django(
        redis_server: servers.RedisServer, namespace: str, lifecycle_log: pytest.LogCaptureFixture) -> None:
    """`/99` is a well-formed URL (the count of databases is the server's setting): the app boots, then
    every call is a `RegistryRefused('database')` saying what to fix, never a redis-py error."""
    url = redis_server.url.rstrip("/").rpartition("/")[0] + "/99"
    app = flask_app(LIFECYCLE_REDIS_URL=url, LIFECYCLE_NAMESPACE=namespace)
    manager = Lifecycle(app).get_manager(app)
    try:
        reply = app.test_client().get("/lifecycle/healthz")
    finally:
        manager.shutdown(2)
    assert reply.status_code == 500 and reply.get_json()["error"] == "registry_refused", reply.get_json()
    assert reply.get_json()["reason"] == "database" and "'databases' setting" in reply.get_json()["message"]
    with override_settings(LIFECYCLE={"REDIS_URL": url, "NAMESPACE": namespace, "AUTOSTART": False}):
        try:
            with pytest.raises(RegistryRefused) as caught:
                get_manager().start_service(ExtensionService("ext", "1"))
        finally:
            integration._reset()
    assert caught.value.reason == "database" and caught.value.port == redis_server.port
    assert "Redis at 127.0.0.1" in startup_lines(lifecycle_log)[0].getMessage()
