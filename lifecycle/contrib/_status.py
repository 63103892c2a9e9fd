"""The service status table the command lines print, and fetching it from a running server.

With the in-memory registry each process has its own view, and a command's own process serves
nothing: so every status command asks a running server's `GET <prefix>/services` endpoint
(`--url`), and says so when it is not given. Standard library only.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from .._text import mask_credentials, quote, shorten

__all__ = ["URL_REQUIRED", "FleetStatus", "StatusUnavailable", "describe_empty", "describe_leader", "describe_leaders",
           "fetch_fleet", "fetch_services", "leader_fields", "parse_leader", "render_table"]

URL_REQUIRED = (
    "--url is required: this command's own process serves nothing, so its manager would show nothing "
    "real; pass the running server's endpoints, e.g. --url http://127.0.0.1:8000/lifecycle"
)

_COLUMNS = (
    ("id", "ID"),
    ("name", "NAME"),
    ("version", "VERSION"),
    ("status", "STATUS"),
    ("seconds_since_heartbeat", "SINCE HEARTBEAT (s)"),
)


class StatusUnavailable(Exception):
    """The server could not be asked, or did not answer with a service list; the message says why."""


def fetch_services(base: str, token: str | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
    """GET <base>/services; every failure is a `StatusUnavailable` naming the URL, its credentials masked."""
    _check_url(base)
    url = base.rstrip("/") + "/services"
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)
    url = mask_credentials(url)  # how every message below names it
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            advice = "pass --token" if exc.code == 401 else "check --token"
            raise StatusUnavailable(f"{url} refused the request with {exc.code} {exc.reason}; {advice}") from None
        raise StatusUnavailable(f"{url} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # InvalidURL: a space in the host
        reason = getattr(exc, "reason", exc)
        raise StatusUnavailable(f"cannot reach {url}: {mask_credentials(str(reason))}") from None
    try:
        services = json.loads(payload)
    except ValueError:
        raise StatusUnavailable(f"{url} did not answer with JSON; is it the lifecycle endpoints' URL?") from None
    if not isinstance(services, list) or not all(isinstance(s, dict) for s in services):
        raise StatusUnavailable(f"{url} did not answer with a list of services; is it the lifecycle endpoints' URL?")
    return services


def _check_url(base: str) -> None:
    """Refuse a `--url` that cannot be asked, before anything connects; the message never repeats a password."""
    try:
        parts = urllib.parse.urlsplit(base)
        parts.port  # noqa: B018  (raises for a port out of range or not a number)
    except ValueError as exc:  # an unclosed "[" of an IPv6 host, a bad port
        reason = shorten(mask_credentials(str(exc)))
        raise StatusUnavailable(f"--url is not a valid URL ({reason}): {quote(base)}") from None
    if parts.scheme not in ("http", "https"):
        raise StatusUnavailable(f"--url must be an http:// or https:// URL, not {quote(base)}")
    if not parts.hostname:
        raise StatusUnavailable(f"--url names no host: {quote(base)}")
    if parts.username is not None or parts.password is not None:
        raise StatusUnavailable(f"--url must not hold credentials (pass --token): {quote(base)}")


@dataclass(frozen=True)
class FleetStatus:
    """What `fetch_fleet` read: the namespace's services and leader, and, when it holds nothing, what else is there.

    `empty` is True when no key of the namespace exists (no service, no leader, no event log):
    most likely a mistyped ``--namespace``. Only then is the server searched for the other
    namespaces: `others` maps each one found to its service count (None when not counted),
    `complete` says whether the bounded search saw every key, `search_error` why it could not
    search (the server refused SCAN), if it could not. `leaders` holds each partition's lease
    holder, in partition order, when the namespace has more than one partition (None otherwise).
    """

    services: list[dict[str, Any]]
    leader: str | None
    leaders: list[str | None] | None = None
    empty: bool = False
    others: dict[str, int | None] = field(default_factory=dict)
    complete: bool = True
    search_error: str | None = None


SCAN_CALLS = 100
"""How many SCAN calls (``COUNT 1000`` each: about 100,000 keys) the search for other namespaces may make."""

SCAN_SECONDS = 2.0
"""How long the search for other namespaces may take, at most."""

COUNTED = 100
"""Namespaces beyond this many are listed without their service counts."""

_NAMESPACED = re.compile(r"^lifecycle:\{([^{}]*)\}:")
_PARTITION = re.compile(r"^(.*)/p\d+(?:\.\d+)?$")  # a partition's tag: <namespace>/p<k>, maybe suffixed (.<j>)


def fetch_fleet(redis_url: str, namespace: str, timeout: float = 10.0) -> FleetStatus:
    """The services of a fleet's shared registry, read straight from Redis, and the leader's owner token.

    When the namespace holds nothing at all, a bounded SCAN (`SCAN_CALLS` calls, `SCAN_SECONDS`)
    lists the lifecycle namespaces the server does hold, with their service counts.
    """
    from .._partitions import Partitioned
    from .._redis_url import redis_url_problems
    from ..errors import LifecycleError, PartitionsRefused
    from ..redis import RedisRegistry
    from ._http import describe_service

    problems = redis_url_problems(redis_url)  # checked as the REDIS_URL setting is, before anything connects
    if problems:
        raise StatusUnavailable("--redis: " + "; ".join(message for message, _ in problems))
    partitions = 1
    while True:
        try:
            registry = RedisRegistry.from_url(redis_url, namespace=namespace, partitions=partitions,
                                              socket_timeout=timeout, socket_connect_timeout=timeout)
            services = registry.list_all()
            leaders = registry.leaders() if isinstance(registry, Partitioned) else None
            leader = registry.leader() if leaders is None else leaders[0]
            break
        except PartitionsRefused as exc:  # a partitioned namespace: read it with its own count
            if exc.recorded < 1 or exc.recorded == partitions:
                raise StatusUnavailable(str(exc)) from None
            partitions = exc.recorded
        except (LifecycleError, ValueError) as exc:
            raise StatusUnavailable(str(exc)) from None
    now = time.monotonic()
    described = [describe_service(service, now) for service in services]
    if services or any(token is not None for token in leaders or [leader]):
        return FleetStatus(described, leader, leaders)
    client = registry.client
    try:
        if client.exists(*registry.keys.values()):
            return FleetStatus(described, leader, leaders)
    except Exception:  # a diagnostic only: the registry itself answered
        return FleetStatus(described, leader, leaders)
    status_key = registry.keys["status"].removeprefix(f"lifecycle:{{{namespace}}}:")
    return _search(client, described, status_key)


def _search(client: Any, described: list[dict[str, Any]], status_key: str) -> FleetStatus:
    """The other lifecycle namespaces on the server, from a bounded SCAN, and their service counts."""
    found: set[str] = set()
    cursor, calls, deadline = 0, 0, time.monotonic() + SCAN_SECONDS
    try:
        while True:
            cursor, keys = client.scan(cursor, match="lifecycle:{*}:*", count=1000)
            calls += 1
            for key in keys:
                match = _NAMESPACED.match(key if isinstance(key, str) else key.decode("utf-8", "replace"))
                if match:
                    found.add(match.group(1))
            if int(cursor) == 0 or calls >= SCAN_CALLS or time.monotonic() >= deadline:
                break
        tags = _namespaces(found)
        names = sorted(tags)
        counts: dict[str, int | None] = dict.fromkeys(names)
        with client.pipeline(transaction=False) as pipe:
            for name in names[:COUNTED]:
                for tag in tags[name]:
                    pipe.hlen(f"lifecycle:{{{tag}}}:{status_key}")
            replies = iter(pipe.execute())
            for name in names[:COUNTED]:
                counts[name] = sum(int(next(replies)) for _ in tags[name])
    except Exception as exc:  # a diagnostic only: say why, still exit non-zero
        if not found:
            return FleetStatus(described, None, empty=True, complete=False,
                               search_error=f"{type(exc).__name__}: {shorten(str(exc))}")
        return FleetStatus(described, None, empty=True, others=dict.fromkeys(sorted(_namespaces(found))),
                           complete=False)
    return FleetStatus(described, None, empty=True, others=counts, complete=int(cursor) == 0)


def _namespaces(tags: set[str]) -> dict[str, list[str]]:
    """Each namespace found and its hash tags: a partitioned one's partitions (``ns/p1``) listed under ``ns``.

    A tag is a partition's only when its namespace's own tag was seen too (it holds the recorded
    count), so a namespace that merely looks like one (``team/p1``) is listed as it is.
    """
    namespaces: dict[str, list[str]] = {}
    for tag in sorted(tags):
        part = _PARTITION.match(tag)
        namespaces.setdefault(part.group(1) if part and part.group(1) in tags else tag, []).append(tag)
    return namespaces


def describe_empty(namespace: str, fleet: FleetStatus) -> str:
    """The lines the status command prints when `namespace` holds nothing: the namespaces found instead."""
    lines = [f"namespace {quote(namespace)} holds nothing on this server (no service, no leader, no event log)"]
    if fleet.search_error is not None:
        lines.append(f"could not look for other lifecycle namespaces: {fleet.search_error}")
    elif not fleet.others:
        more = "" if fleet.complete else " among the keys searched (the search stopped early: there may be some)"
        lines.append(f"no lifecycle namespace on this server{more}: has no process used it yet?")
    else:
        more = "" if fleet.complete else " (the search stopped early: there may be more)"
        lines.append(f"lifecycle namespaces on this server{more}:")
        width = max(len(name) for name in fleet.others)
        for name, count in fleet.others.items():
            counted = "services not counted" if count is None else f"{count} service{'' if count == 1 else 's'}"
            lines.append(f"  {name.ljust(width)}  {counted}")
        lines.append("pass one of them with --namespace")
    return "\n".join(lines)


def parse_leader(token: str | None) -> dict[str, Any] | None:
    """The lease holder's ``{"host", "pid"}`` from its owner token ("host:pid:random"); None when nobody leads.

    A token of another form (a test's own) is kept whole as the host, with ``pid`` None.
    """
    if token is None:
        return None
    host, _, rest = token.partition(":")
    pid, sep, _ = rest.partition(":")
    if not sep or not pid.isdigit():
        return {"host": token, "pid": None}
    return {"host": host, "pid": int(pid)}


def describe_leader(token: str | None) -> str:
    """One line naming the lease holder by host and pid, for the status command."""
    leader = parse_leader(token)
    if leader is None:
        return "none (no process holds the lease)"
    if leader["pid"] is None:
        return str(leader["host"])
    return f"{leader['host']} pid {leader['pid']}"


def describe_leaders(tokens: list[str | None]) -> str:
    """One line naming each partition's lease holder, in partition order: "p0 web-1 pid 42, p1 none"."""
    return ", ".join(f"p{p} {'none' if token is None else describe_leader(token)}" for p, token in enumerate(tokens))


def leader_fields(manager: Any) -> dict[str, Any]:
    """The status JSON's ``host`` (of the process answering) and ``leader``, and ``leaders`` when partitioned.

    In fleet mode ``leader`` is the lease holder read from the registry (``{"host", "pid"}``, or
    None when nobody holds the lease), so every worker names the same one; in memory it is None.
    A namespace of several partitions has a lease per partition: ``leaders`` lists each one's
    holder in partition order (None where nobody holds it) and ``leader`` is partition 0's.
    """
    if not manager.fleet:
        return {"host": socket.gethostname(), "leader": None}
    registry = manager.registry
    if registry.partitions == 1:
        return {"host": socket.gethostname(), "leader": parse_leader(registry.leader())}
    leaders = [parse_leader(token) for token in registry.leaders()]
    return {"host": socket.gethostname(), "leader": leaders[0], "leaders": leaders}


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


_OPTIONAL_COLUMNS = (
    ("restarts", "RESTARTS"),  # with max_restarts: restarts within the window
    ("phi", "PHI"),  # with the phi detector: the suspicion level now
)


def render_table(services: list[dict[str, Any]]) -> str:
    """Fixed-width columns sized to their content, one row per service.

    RESTARTS and PHI are shown when the server reports them (restart intensity, the phi detector).
    """
    if not services:
        return "No lifecycle services."
    columns = [*_COLUMNS, *(column for column in _OPTIONAL_COLUMNS if any(column[0] in s for s in services))]
    rows = [[title for _, title in columns]]
    rows += [[_cell(service.get(key)) for key, _ in columns] for service in services]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)
