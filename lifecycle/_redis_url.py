"""Redis URLs: every problem of one found before anything connects, never repeating a credential.

Used by `RedisRegistry.from_url` (a `FieldValueError` naming ``url``), by the framework
settings (`REDIS_URL`) and by the status command (``--redis``), so all three refuse the same
URLs with the same words.
"""

from __future__ import annotations

import difflib
import math
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import _validate
from ._text import quote, shorten
from .errors import FieldValueError

__all__ = ["REDIS_PORTS", "RedisLocation", "check_redis_url", "redis_location", "redis_url_problems"]

REDIS_PORTS = (1, 65535)

_BOOL_WORDS = ("0", "1", "true", "false", "yes", "no", "on", "off", "t", "f", "y", "n")


def _digits(text: str) -> bool:
    """True for a plain whole number: ASCII digits only (`isdigit` alone takes "²", which `int` refuses)."""
    return text.isascii() and text.isdigit()


def _count(minimum: int) -> Callable[[str], str | None]:
    def check(text: str) -> str | None:
        if _digits(text) and int(text) >= minimum:
            return None
        return f"must be a whole number >= {minimum}"
    return check


def _seconds(text: str) -> str | None:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    return None if math.isfinite(value) and value > 0 else "must be a number of seconds > 0"


def _flag(text: str) -> str | None:
    return None if text.lower() in _BOOL_WORDS else "must be true or false"


def _protocol(text: str) -> str | None:
    return None if text in ("2", "3") else "must be 2 or 3 (the RESP version)"


def _any(text: str) -> str | None:
    return None


_QUERY_OPTIONS: dict[str, Callable[[str], str | None]] = {
    "db": _count(0), "socket_timeout": _seconds, "socket_connect_timeout": _seconds,
    "socket_read_size": _count(1), "socket_keepalive": _flag, "retry_on_timeout": _flag, "retry_on_error": _any,
    "max_connections": _count(1), "health_check_interval": _count(0), "timeout": _seconds, "protocol": _protocol,
    "client_name": _any, "username": _any, "password": _any,
}
"""The query options of a ``redis://`` or ``unix://`` URL (redis-py's, but the ones lifecycle sets itself)."""

_TLS_OPTIONS: dict[str, Callable[[str], str | None]] = {
    "ssl_check_hostname": _flag, "ssl_validate_ocsp": _flag, "ssl_validate_ocsp_stapled": _flag,
    "ssl_min_version": _count(0), "ssl_include_verify_flags": _any, "ssl_exclude_verify_flags": _any,
    "ssl_cert_reqs": lambda text: None if text in ("none", "optional", "required") else
    "must be none, optional or required",
    "ssl_ca_certs": _any, "ssl_ca_path": _any, "ssl_ca_data": _any, "ssl_certfile": _any, "ssl_keyfile": _any,
    "ssl_password": _any, "ssl_ciphers": _any,
}
"""The options of a ``rediss://`` URL only (TLS)."""

_SHOWN_OPTIONS = ("db", "socket_timeout", "socket_connect_timeout", "socket_read_size", "socket_keepalive",
                  "retry_on_timeout", "max_connections", "health_check_interval", "timeout", "protocol",
                  "ssl_check_hostname", "ssl_validate_ocsp", "ssl_validate_ocsp_stapled", "ssl_min_version",
                  "ssl_cert_reqs")
"""Options whose value an error may repeat: never a user name, password, path or key."""


@dataclass(frozen=True)
class RedisLocation:
    """Where a Redis URL points, without its credentials: what the startup line and the errors show."""

    scheme: str
    host: str = ""
    port: int = 6379
    path: str = ""  # the socket of a unix:// URL
    db: int = 0

    def __str__(self) -> str:
        where = f"unix socket {self.path}" if self.scheme == "unix" else f"{_host(self.host)}:{self.port}"
        tls = " (TLS)" if self.scheme == "rediss" else ""
        return f"Redis{tls} at {where}, database {self.db}"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def redis_url_problems(url: str) -> list[tuple[str, str]]:
    """Every problem of a Redis URL, as (message, code); the messages never repeat a credential.

    Checked: the scheme (redis, rediss, unix), a host (a socket path for unix), the port
    (1..65535), the database (a path such as ``/0``, or ``?db=``: a whole number >= 0) and
    the query options (known to redis-py, each value of the right kind).
    """
    return _parse_redis_url(url)[1]


def redis_location(url: str) -> RedisLocation | None:
    """Where a valid Redis URL points; None when `redis_url_problems` finds any problem."""
    location, problems = _parse_redis_url(url)
    return None if problems else location


def _parse_redis_url(url: str) -> tuple[RedisLocation | None, list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    scheme_text, sep, rest = url.partition("://")
    scheme = scheme_text.lower()
    if not sep or scheme not in ("redis", "rediss", "unix"):
        return None, [("must start with redis://, rediss:// or unix:// (e.g. redis://localhost:6379/0)", "invalid")]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in rest[len(authority):]:
        # The user information ended early: a "/", "?" or "#" in the password. Nothing of the
        # URL is repeated, since any part of it may be a piece of the password.
        return None, [("has an '@' after the host: a password holding '/', '?' or '#' must be percent-encoded "
                       "(e.g. '/' as %2F)", "invalid")]
    try:
        parts = urllib.parse.urlsplit(url)
        hostname = parts.hostname or ""
    except ValueError:
        return None, [("has a host that is not valid (an IPv6 address goes in brackets, e.g. redis://[::1]:6379/0)",
                       "invalid")]
    query = urllib.parse.parse_qs(parts.query)
    options = dict(_QUERY_OPTIONS, **(_TLS_OPTIONS if scheme == "rediss" else {}))
    for name, given in query.items():
        check = options.get(name)
        if check is None:
            problems.append((_unknown_option(name, options), "choice"))  # "unknown" is for setting names
            continue
        error = check(given[-1])
        if error is not None:
            shown = f", not {quote(given[-1])}" if name in _SHOWN_OPTIONS else ""
            problems.append((f"option ?{name}= {error}{shown}", "invalid"))
    db = 0
    if "db" in query and _count(0)(query["db"][-1]) is None:
        db = int(query["db"][-1])
    location: RedisLocation | None = None
    if scheme == "unix":
        if hostname:
            problems.append(("takes the socket path after three slashes (unix:///run/redis.sock), not a host",
                             "invalid"))
        elif not parts.path.strip("/"):
            problems.append(("names no socket path (e.g. unix:///run/redis/redis.sock)", "invalid"))
        else:
            location = RedisLocation(scheme, path=urllib.parse.unquote(parts.path), db=db)
    else:
        port = _port(authority, problems)
        if not hostname:
            problems.append((f"names no host (e.g. {scheme}://localhost:6379/0)", "invalid"))
        path = parts.path
        if path not in ("", "/"):
            number = path[1:].rstrip("/")
            if not _digits(number):
                problems.append((f"database must be a whole number >= 0 (e.g. /0), not {quote(path)}", "invalid"))
            elif "db" in query:
                problems.append(("names the database twice (in the path and as ?db=)", "conflict"))
            else:
                db = int(number)
        location = RedisLocation(scheme, host=hostname, port=port if port is not None else 6379, db=db)
    return (location if not problems else None), problems


def _port(authority: str, problems: list[tuple[str, str]]) -> int | None:
    hostport = authority.rpartition("@")[2]
    after = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
    text = after.partition(":")[2]
    if not text:
        return None
    low, high = REDIS_PORTS
    if _digits(text) and low <= int(text) <= high:
        return int(text)
    problems.append((f"port must be a whole number from {low} to {high}, not {quote(text)}", "invalid"))
    return None


def _unknown_option(name: str, options: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.75)
    if close:
        hint = f"did you mean ?{close[0]}=?"
    elif name in _TLS_OPTIONS:
        hint = "TLS options need a rediss:// URL"
    else:
        hint = f"known options: {', '.join(sorted(options))}"
    return f"has an unknown option ?{shorten(name)}=; {hint}"


def check_redis_url(url: object) -> str:
    """`url` if it is a usable Redis URL, else a `FieldValueError` (field ``url``, code ``invalid``): every problem."""
    text = _validate.text(url, "url")
    problems = redis_url_problems(text)
    if problems:
        raise FieldValueError("url", "invalid", "; ".join(message for message, _ in problems))
    return text
