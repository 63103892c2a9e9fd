"""Prometheus: `LifecycleCollector(manager)`, a custom collector that reads `manager.metrics()` at scrape time.

Needs the extra ``service-lifecycle[prometheus]`` (the official ``prometheus_client``).
Register it on any `CollectorRegistry`::

    from prometheus_client import REGISTRY
    REGISTRY.register(LifecycleCollector(manager))

Nothing is recorded through prometheus_client between scrapes, so the heartbeat path pays
nothing for it. The numbers are this process's (see `lifecycle.Metrics`); the framework
integrations' ``<prefix>/metrics`` endpoint adds a ``pid`` label so that the workers of a
pre-forking server (gunicorn) stay apart: see docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ..manager import LifecycleManager
from ..metrics import Metrics

__all__ = ["LifecycleCollector", "exposition"]

# name (without _total for counters), help, Metrics field
_COUNTERS = (
    ("lifecycle_heartbeats", "Heartbeats received (HTTP, handle_heartbeat, successful pings).", "heartbeats"),
    ("lifecycle_heartbeat_timeouts", "RUNNING services that missed their heartbeat deadline.", "heartbeat_timeouts"),
    ("lifecycle_reconnect_attempts", "Reconnect attempts scheduled (one per reconnecting event).",
     "reconnect_attempts"),
    ("lifecycle_reconnects", "Services back to RUNNING after a timeout or an error.", "reconnects"),
    ("lifecycle_reconnect_failures", "Services given up on after their last reconnect attempt.",
     "reconnect_failures"),
    ("lifecycle_errors", "Errors reported for services.", "errors"),
    ("lifecycle_events_dropped", "Events dropped by full subscriptions.", "events_dropped"),
    ("lifecycle_service_flapping", "Services that exceeded their restart intensity.", "flapping"),
)


class LifecycleCollector(Collector):
    """Exposes one manager's `metrics()` under the names of API.md section 7.

    `labels` (e.g. ``{"pid": "123"}``) are added to every sample.
    """

    def __init__(self, manager: LifecycleManager, *, labels: Mapping[str, str] | None = None) -> None:
        if not isinstance(manager, LifecycleManager):
            raise TypeError(f"manager must be a LifecycleManager, not {type(manager).__name__}")
        self._manager = manager
        self._labels = dict(labels or {})
        for key, value in self._labels.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError("labels must map str to str")
            if key in ("status", "le"):
                raise ValueError(f"label {key!r} is used by the lifecycle metrics themselves")

    def describe(self) -> Iterator[Metric]:
        """The metric families without samples: registering costs no scrape."""
        return self._families(None)

    def collect(self) -> Iterator[Metric]:
        """The families with this moment's samples."""
        return self._families(self._manager.metrics())

    def _families(self, metrics: Metrics | None) -> Iterator[Metric]:
        names = list(self._labels)
        values = list(self._labels.values())
        services = GaugeMetricFamily("lifecycle_services", "Services per status.", labels=[*names, "status"])
        if metrics is not None:
            for status, count in metrics.services.items():
                services.add_metric([*values, status], count)
        yield services
        for name, help_text, attribute in _COUNTERS:
            counter = CounterMetricFamily(name, help_text, labels=names)
            if metrics is not None:
                counter.add_metric(values, getattr(metrics, attribute))
            yield counter
        lag = HistogramMetricFamily(
            "lifecycle_detection_lag_seconds", "How late heartbeat timeouts fired after their deadline.", labels=names
        )
        if metrics is not None:
            histogram = metrics.detection_lag
            buckets = [("+Inf" if bound == float("inf") else repr(bound), count) for bound, count in histogram.buckets]
            lag.add_metric(values, buckets, histogram.sum)
        yield lag
        timers = GaugeMetricFamily("lifecycle_watchdog_timers", "Watchdog timer entries queued.", labels=names)
        lateness = GaugeMetricFamily(
            "lifecycle_watchdog_lateness_seconds", "How late the watchdog's most recent timer ran.", labels=names
        )
        if metrics is not None:
            timers.add_metric(values, metrics.timers_queued)
            if metrics.timer_lateness_secs is not None:
                lateness.add_metric(values, metrics.timer_lateness_secs)
        yield timers
        yield lateness


def exposition(manager: LifecycleManager, labels: Mapping[str, str] | None = None) -> bytes:
    """The manager's metrics in Prometheus' text exposition format, as an endpoint serves them."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LifecycleCollector(manager, labels=labels))
    return generate_latest(registry)
