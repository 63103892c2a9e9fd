"""`RedisRegistry`'s wire format: a service as stored, the scripts' replies, the fleet event log's entries.

Pure functions, no server: what `lifecycle.redis` sends (times in integer microseconds as text, a
service's description as JSON, a `Plan` as four arguments) and what it makes of the replies
(registration records, prior statuses, events, a sweep). The layout is in `lifecycle._redis_scripts`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

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
from .fleet import Detail, Onset, Plan, Sweep
from .model import Capability, ExtensionService, RegistrationInfo, ServiceId, ServiceStatus, TransportConfig
from .registry import Released

_US = 1_000_000
_Events = list[LifecycleEvent]
_Rows = list[tuple[str, LifecycleEvent]]


def _us(seconds: float) -> str:
    return str(round(seconds * _US))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# The transport fields a record keeps, each only when it differs from `TransportConfig`'s default.
_TRANSPORT_FIELDS = ("transport_type", "address", "port", "command", "args", "env", "cwd", "timeout_secs",
                     "auto_reconnect", "max_retries", "heartbeat_interval_secs", "heartbeat_timeout_secs",
                     "ping_interval_secs", "max_reconnect_attempts")
_DEFAULT_TRANSPORT = TransportConfig()


def _encode(service: ExtensionService) -> str:
    """The service's description as compact JSON: name, version, and only what differs from the defaults.

    A million services are a million of these, so the id (the hash field already) and every default
    value are left out: a plain service is about 40 bytes, not 420. The scripts read the transport's
    `auto_reconnect`, `timeout_secs` and `max_reconnect_attempts` with the same defaults.
    """
    transport = service.transport
    data: dict[str, Any] = {"name": service.name, "version": service.version}
    if service.description:
        data["description"] = service.description
    if service.metadata:
        data["metadata"] = service.metadata
    if service.capabilities:
        data["capabilities"] = [{"name": c.name, "version": c.version, "config": c.config}
                                for c in service.capabilities]
    changed = {name: getattr(transport, name) for name in _TRANSPORT_FIELDS
               if getattr(transport, name) != getattr(_DEFAULT_TRANSPORT, name)}
    if "transport_type" in changed:
        changed["transport_type"] = transport.transport_type.value
    if changed:
        data["transport"] = changed
    try:
        return json.dumps(data, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"service {service.name!r}: metadata and capability config must be JSON data ({exc})") from None


def _decode(row: Sequence[Any]) -> RegistrationInfo:
    """A registration record from `info()` in the scripts: json, registered, updated, status, silent, attempt, now, id.

    The JSON carries its registration time as "r"; a record written before the compact form (its
    id and every field in the JSON, the time in the "reg" hash) reads the same.
    """
    data = json.loads(_text(row[0]))
    silent = int(_text(row[4]))
    now = int(_text(row[6]))
    service = ExtensionService(
        data["name"], data["version"], description=data.get("description", ""), metadata=data.get("metadata", {}),
        capabilities=[Capability(c["name"], c["version"], c["config"]) for c in data.get("capabilities", ())],
        transport=TransportConfig(**data.get("transport", {})), id=ServiceId(data.get("id") or _text(row[7])),
        status=ServiceStatus(_text(row[3])),
        # The server says how long ago; our monotonic clock says when that was.
        last_heartbeat=None if silent < 0 else time.monotonic() - silent / _US,
        retry_count=int(_text(row[5])),
    )
    # Registration times are the server's, taken back to UTC datetimes through its own "now".
    wall = datetime.now(UTC).timestamp()

    def when(us: Any) -> datetime:
        return datetime.fromtimestamp(wall - (now - int(_text(us))) / _US, UTC)

    return RegistrationInfo(service, when(data.get("r", row[1])), when(row[2]))


_STATUS = {status.value: status for status in ServiceStatus}
_SIMPLE: dict[str, Callable[[ServiceId, float], LifecycleEvent]] = {
    "service_started": Started, "service_stopped": Stopped, "heartbeat_timeout": HeartbeatTimeout,
    "reconnected": Reconnected, "ownership_released": Released,
}


def _status_of(value: Any) -> ServiceStatus:
    text = _text(value)
    return _STATUS.get(text) or ServiceStatus(text)


def _event(fields: Sequence[Any] | dict[Any, Any], at: float | None = None) -> LifecycleEvent | None:
    """A `LifecycleEvent` from a logged field list or map (None for a kind this version does not know).

    A burst's replies and log reads carry thousands of these: only the fields an event uses are decoded.
    """
    if isinstance(fields, dict):
        f = {k if type(k) is str else _text(k): v for k, v in fields.items()}
    else:
        pairs = iter(fields)  # key, value, key, value, ...: zipped with itself, it yields the pairs
        keys_text = bool(fields) and type(fields[0]) is str
        f = dict(zip(pairs, pairs, strict=False)) if keys_text else {
            _text(k): v for k, v in zip(pairs, pairs, strict=False)}
    sid = ServiceId(_text(f["id"]))
    at = time.monotonic() if at is None else at
    kind = _text(f["type"])
    make = _SIMPLE.get(kind)
    if make is not None:
        return make(sid, at)
    if kind == "status_changed":
        return StatusChanged(sid, at, _status_of(f["old"]), _status_of(f["new"]))
    if kind == "reconnecting":
        return Reconnecting(sid, at, int(_text(f["attempt"])), int(_text(f["max_attempts"])),
                            int(_text(f["delay"])) / _US)
    if kind == "reconnect_failed":
        return ReconnectFailed(sid, at, int(_text(f["attempts"])))
    if kind == "service_error":
        return Error(sid, at, _text(f["error"]))
    if kind == "service_flapping":
        return ServiceFlapping(sid, at, int(_text(f["restarts"])), int(_text(f["window"])) / _US)
    if kind == "heartbeat_received":  # only logged with log_heartbeats=True
        from .events import Heartbeat
        return Heartbeat(sid, at)
    return None


def _events(raw: Sequence[Any]) -> _Events:
    now = time.monotonic()
    return [e for e in (_event(fields, now) for fields in raw) if e is not None]


def _prior(code: Any) -> ServiceStatus | None:
    text = _text(code)
    return None if text == "missing" else _STATUS.get(text) or ServiceStatus(text)



def _beaten(reply: Sequence[Any]) -> tuple[ServiceStatus | None, _Events]:
    """A HEARTBEAT or REVIVE reply: the prior status, and the events of a revival."""
    return _prior(reply[0]), (_events(reply[1]) if len(reply) > 1 and reply[1] else [])


def _own_timeout(service: ExtensionService) -> str:
    """The service's own heartbeat timeout in microseconds, '' when it has none."""
    own = service.transport.heartbeat_timeout_secs
    return "" if own is None else _us(own)


def _plan_args(plan: Plan) -> tuple[str, int, str, int]:
    return plan.mode, plan.attempt, _us(plan.delay), plan.max_attempts


def _onset_args(onset: Onset) -> tuple[Any, ...]:
    """SWEEP's last arguments: how it begins the reconnect cycles of the services it times out."""
    return ("1" if onset.auto_reconnect else "0", onset.max_attempts, _us(onset.low), _us(onset.high), onset.seed)


def _sweep(result: Sequence[Any]) -> Sweep:
    """A SWEEP reply that is not "fenced": the due services with their details, the claimed attempts, the next due."""
    _, rows, claimed, next_us, rebased = result
    nxt = int(_text(next_us))
    due = [ServiceId(_text(row[0])) for row in rows]
    return Sweep(
        due=due,
        details={sid: Detail(_text(row[1]), _text(row[2]) == "1", None if row[3] in ("", b"") else int(_text(row[3])))
                 for sid, row in zip(due, rows, strict=True)},
        attempts=[(ServiceId(_text(i)), int(_text(k))) for i, k in claimed],
        next_in=None if nxt < 0 else nxt / _US,
        rebased=int(rebased),
        events=_timed_out(due, rows),
    )


def _timed_out(due: list[ServiceId], rows: Sequence[Any]) -> _Events:
    """The events of the services a SWEEP timed out, from their compact rows (see SWEEP's `compact`)."""
    now = time.monotonic()
    events: _Events = []
    for sid, row in zip(due, rows, strict=True):
        events += (HeartbeatTimeout(sid, now), StatusChanged(sid, now, ServiceStatus.RUNNING, _status_of(row[4])))
        if row[5]:
            follow = _event({"type": row[5], "id": sid, row[6]: row[7], row[8]: row[9], row[10]: row[11]}, now)
            if follow is not None:
                events.append(follow)
    return events


def _entry_id(after: str) -> str:
    """Stream id `after` in full ("1234" is "1234-0", as XREAD reads it): where `_rows_after`'s XRANGE starts.

    XRANGE, not XREAD, reads what is after an entry without waiting: a Redis Cluster client asks
    the server where an XREAD's keys are (COMMAND GETKEYS, a round trip before each one) and finds
    XRANGE's key itself. The range includes `after` (an exclusive one needs Redis 6.2), so one
    entry more is asked for and `after` itself dropped.
    """
    return after if "-" in after else f"{after}-0"


def _rows_after(entries: Any, start: str, count: int) -> _Rows:
    """An ``XRANGE key start + COUNT count+1`` reply as the first `count` rows after entry `start`."""
    if entries and _text(entries[0][0]) == start:
        entries = entries[1:]
    return _rows([(None, entries[:count])])


def _rows(reply: Any) -> _Rows:
    """An XREAD reply as (entry id, event), oldest first; entries of a kind this version does not know are left out."""
    out: _Rows = []
    for _stream, entries in reply or ():
        for entry_id, fields in entries:
            event = _event(fields)
            if event is not None:
                out.append((_text(entry_id), event))
    return out
