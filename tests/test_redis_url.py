"""`RedisRegistry.from_url` refuses a URL it cannot use with a `FieldValueError` naming ``url``.

Checked by the same parser as the `REDIS_URL` setting and the status command, in `from_url`
itself: before anything connects, every problem in one message, never a password, and never
one of redis-py's own exceptions (a bare ``ValueError: Port out of range`` from `from_url`, a
``TypeError`` for an unknown option at the first call). Valid URLs still make a registry; one
of them on a real redis-server / valkey-server.
"""

from __future__ import annotations

import pytest
import redis_server as servers

from lifecycle import FieldTypeError, FieldValueError
from lifecycle.redis import RedisRegistry

PASSWORD = "s3cret-Pa55"


@pytest.mark.parametrize(("url", "says"), [
    ("redis://127.0.0.1:99999/0", "url port must be a whole number from 1 to 65535, not '99999'"),
    ("redis://127.0.0.1:port/0", "url port must be a whole number from 1 to 65535, not 'port'"),
    ("redis://127.0.0.1:6379/0?socket_timout=1",
     "url has an unknown option ?socket_timout=; did you mean ?socket_timeout=?"),
    ("redis://127.0.0.1:6379/0?socket_timeout=-1", "option ?socket_timeout= must be a number of seconds > 0"),
    ("http://127.0.0.1:6379/0", "url must start with redis://, rediss:// or unix://"),
    ("127.0.0.1:6379", "url must start with redis://, rediss:// or unix://"),
    ("redis://127.0.0.1:6379/abc", "url database must be a whole number >= 0 (e.g. /0), not '/abc'"),
    ("redis://127.0.0.1:6379/1?db=2", "url names the database twice"),
    ("redis:///0", "url names no host"),
    ("unix://", "url names no socket path"),
    ("redis://127.0.0.1:6379/0?ssl_ca_certs=/ca.pem", "TLS options need a rediss:// URL"),
    ("rediss://127.0.0.1:6379/0?ssl_cert_reqs=sometimes", "option ?ssl_cert_reqs= must be none, optional or required"),
])
def test_a_bad_url_is_a_field_value_error_naming_the_url(url: str, says: str) -> None:
    with pytest.raises(FieldValueError) as caught:
        RedisRegistry.from_url(url, namespace="bad-url")
    assert type(caught.value) is FieldValueError  # not redis-py's ValueError, nor one of its own
    assert caught.value.field == "url" and caught.value.code == "invalid"
    assert says in str(caught.value)


def test_every_problem_is_listed_and_no_password_is_repeated() -> None:
    url = f"redis://user:{PASSWORD}@127.0.0.1:99999/abc?socket_timout=1&password={PASSWORD}"
    with pytest.raises(FieldValueError) as caught:
        RedisRegistry.from_url(url, namespace="bad-url")
    message = str(caught.value)
    assert "?socket_timout=" in message and "'99999'" in message and "'/abc'" in message
    assert PASSWORD not in message and "user" not in message


@pytest.mark.parametrize("url", [
    f"redis://:{PASSWORD}@127.0.0.1:6379/0?nope={PASSWORD}",  # an unknown option's value
    f"rediss://:{PASSWORD}@127.0.0.1:99999/0?ssl_password={PASSWORD}&ssl_keyfile={PASSWORD}",
    f"redis://:pa/{PASSWORD}@127.0.0.1:6379/0",  # a '/' in the password: the host would be a piece of it
    f"unix://:{PASSWORD}@host/run/redis.sock",
])
def test_a_password_is_never_in_the_message(url: str) -> None:
    with pytest.raises(FieldValueError) as caught:
        RedisRegistry.from_url(url, namespace="bad-url")
    assert caught.value.field == "url" and PASSWORD not in str(caught.value) and PASSWORD not in repr(caught.value)


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0",
    "redis://127.0.0.1",
    f"redis://default:{PASSWORD}@[::1]:6380/3?socket_timeout=2.5&health_check_interval=0&client_name=web",
    "rediss://redis.internal:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false&ssl_ca_certs=/etc/ca.pem",
    "unix:///run/redis/redis.sock?db=1",
])
def test_a_valid_url_makes_a_registry_without_connecting(url: str) -> None:
    registry = RedisRegistry.from_url(url, namespace="good-url", socket_connect_timeout=0.5)
    assert PASSWORD not in repr(registry)
    registry.client.close()


def test_a_url_with_options_reaches_a_real_server(redis_server: servers.RedisServer, namespace: str) -> None:
    registry = RedisRegistry.from_url(redis_server.url + "?socket_timeout=2&health_check_interval=0",
                                      namespace=namespace)
    try:
        assert registry.count() == 0
    finally:
        registry.client.close()


def test_a_misspelt_client_option_is_named_before_anything_connects() -> None:
    with pytest.raises(FieldTypeError) as caught:
        RedisRegistry.from_url("redis://127.0.0.1:1/0", socket_timout=1.0)
    assert (caught.value.field, caught.value.code) == ("socket_timout", "unknown")
    assert "did you mean 'socket_timeout'" in str(caught.value)


@pytest.mark.parametrize("option", [{"socket_timeout": 1.0}, {"client_name": "web"}, {"ssl_cert_reqs": "none"},
                                    {"max_connections": 4}])
def test_options_of_the_client_and_its_connections_are_taken(option: dict[str, object]) -> None:
    registry = RedisRegistry.from_url("redis://127.0.0.1:1/0", **option)
    registry.client.close()
