"""The blinker signals a manager sends; connect receivers here.

Every signal is sent with the manager as sender and keyword arguments: ``service_id``,
``event`` (the matching `lifecycle.events.LifecycleEvent`) and the per-signal extras listed
below. Write receivers as ``def receiver(sender, **kwargs)`` so new arguments never break them.

Receivers run synchronously in the thread that caused the event (for timeouts and retries that
is the watchdog thread), with no manager lock held. Keep them quick and hand slow work off.
blinker keeps *weak* references by default: a lambda, a closure or a bound method of a
temporary object silently disappears once garbage collected. Connect those with
``weak=False`` (or use `lifecycle.connect`).
"""

from __future__ import annotations

from blinker import Namespace

# Only this library's signals live in this namespace.
_signals = Namespace()

service_started = _signals.signal("service_started", doc="A service was started and is RUNNING. kwargs: service_id.")
service_stopped = _signals.signal("service_stopped", doc="A service was stopped and unregistered. kwargs: service_id.")
status_changed = _signals.signal(
    "status_changed", doc="A service's status changed. kwargs: service_id, old_status, new_status."
)
heartbeat_received = _signals.signal("heartbeat_received", doc="A heartbeat arrived. kwargs: service_id.")
heartbeat_timeout = _signals.signal(
    "heartbeat_timeout", doc="A RUNNING service missed its heartbeat deadline. kwargs: service_id."
)
reconnecting = _signals.signal(
    "reconnecting",
    doc="A reconnect attempt was scheduled. kwargs: service_id, attempt, max_attempts, delay (seconds).",
)
reconnected = _signals.signal("reconnected", doc="A service is RUNNING again. kwargs: service_id.")
reconnect_failed = _signals.signal(
    "reconnect_failed", doc="Every reconnect attempt failed; the service is ERROR. kwargs: service_id, attempts."
)
service_error = _signals.signal("service_error", doc="An error was reported for a service. kwargs: service_id, error.")
service_flapping = _signals.signal(
    "service_flapping",
    doc="A service needed more restarts than max_restarts within the window; it is left in ERROR. "
    "kwargs: service_id, restarts, window (seconds).",
)
