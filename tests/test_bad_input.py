"""Bad input at every public entry point: the documented typed error, a message naming the culprit,
and no partial state left behind.

One table drives the checks. Each row calls one entry point with one bad argument against a
manager holding a few services (in manual mode, frozen time) and asserts:

* the exception type the contract documents (API.md section 6): `TypeError` for wrong types,
  `ValueError` for wrong values (`LifecycleConfig`: `ValueError` for both), the lifecycle errors
  (`ServiceNotFound`, `ServiceAlreadyExists`, `ConnectionFailed`, `ManagerClosed`) where they apply,
  and `ManagerClosed` before `ServiceNotFound` after shutdown;
* a message naming the field or the service (`match=`);
* nothing changed: registry contents and timestamps, `count()`, `armed_timers()`, attempt counters,
  the events emitted, a subscription's pending events, the receivers connected, the threads.

Queries (`get_status`, `is_healthy`, `attempts`, `registry.get`...) are total: they answer
None/False/0 for anything that is not a managed id (their contract: "None for any other id").
Re-entrant misuse (calls from inside a connector while the service is starting or stopping)
has its own tests at the end.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import blinker
import pytest
from helpers import MANUAL, receiver_ids

import lifecycle
from lifecycle import (
    Capability,
    ConnectionFailed,
    ExponentialBackoff,
    ExtensionService,
    InvalidState,
    LifecycleConfig,
    LifecycleError,
    LifecycleManager,
    ManagerClosed,
    RegistryService,
    ServiceAlreadyExists,
    ServiceFilter,
    ServiceId,
    ServiceNotFound,
    ServiceStatus,
    Subscription,
    TransportConfig,
)

RUNNING = ServiceStatus.RUNNING
STARTING = ServiceStatus.STARTING
STOPPING = ServiceStatus.STOPPING

HUGE = "x" * 10**6
NAN, INF = math.nan, math.inf

CFG = MANUAL


class Conn:
    def __init__(self) -> None:
        self.fail = False

    def connect(self, service: ExtensionService) -> None:
        if self.fail:
            raise ConnectionError("refused")

    def disconnect(self, service: ExtensionService) -> None:
        pass


@dataclass
class Env:
    m: LifecycleManager
    rec: Any
    sub: Subscription
    a: ServiceId  # "alpha": RUNNING, with a connector
    b: ServiceId  # "beta": RECONNECTING, no connector
    conn: Conn

    @property
    def reg(self) -> Any:
        return self.m.registry


@pytest.fixture
def env(make_manager, record, frozen_lifecycle) -> Env:
    m = make_manager(CFG)
    rec = record(m)
    conn = Conn()
    a = m.start_service(ExtensionService("alpha", "1"), connector=conn)
    b = m.start_service(ExtensionService("beta", "1"))
    frozen_lifecycle.advance(1, m)
    m.handle_error(b, "lost")
    sub = m.subscribe()
    m.handle_heartbeat(a)
    return Env(m, rec, sub, a, b, conn)


def snapshot(env: Env) -> dict[str, Any]:
    m, reg = env.m, env.m.registry
    services = reg.list_all()
    return {
        "services": [(s.id, s.name, s.version, s.status, s.last_heartbeat, s.retry_count, s.transport)
                     for s in services],
        "updated": [reg.get_registration(s.id).updated_at for s in services],
        "count": (m.count(), len(m), reg.count()),
        "armed": m.armed_timers(),
        "attempts": [m.attempts(s.id) for s in services],
        "events": [(e.signal_name, e.signal_kwargs()) for e in env.rec.events],
        "pending": env.sub.pending(),
        # No public view of live subscriptions; a failed subscribe() must not leave one behind.
        "subscriptions": len(getattr(m, "_subscriptions", ())),
        "closed": m.closed,
        "receivers": receiver_ids(),
        "threads": set(threading.enumerate()),
    }


@dataclass
class Case:
    call: Callable[[Env], Any]
    exc: type[BaseException]
    match: str
    prepare: Callable[[Env], Any] | None = None


def case(id: str, call: Callable[[Env], Any], exc: type[BaseException], match: str,
         prepare: Callable[[Env], Any] | None = None, bug: str | None = None) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {bug}")] if bug else []
    return pytest.param(Case(call, exc, match, prepare), id=id, marks=marks)


def closed(env: Env) -> None:
    env.m.shutdown()


def svc(name: str = "fresh", **kw: Any) -> ExtensionService:
    return ExtensionService(name, "1", **kw)


class NotCallableConnect:
    connect = 5


class NotCallableDisconnect:
    def connect(self, service: ExtensionService) -> None:
        pass

    disconnect = "no"


class NotCallablePing:
    def connect(self, service: ExtensionService) -> None:
        pass

    ping = 3.5


def failing_connect(env: Env) -> Any:
    env.conn.fail = True
    return env.m.start_service(svc("newcomer"), connector=env.conn)


CASES = [
    # -- LifecycleManager(...) -------------------------------------------------------------------
    case("LifecycleManager-registry-str", lambda e: LifecycleManager(registry="reg"), TypeError, "registry"),
    case("LifecycleManager-registry-dict", lambda e: LifecycleManager(registry={}), TypeError, "registry"),
    case("LifecycleManager-config-dict", lambda e: LifecycleManager(config={}), TypeError, "config"),
    case("LifecycleManager-config-int", lambda e: LifecycleManager(config=30), TypeError, "config"),
    case("LifecycleManager-connector-int", lambda e: LifecycleManager(connector=42), TypeError, "connector"),
    case("LifecycleManager-connector-str", lambda e: LifecycleManager(connector="tcp://x"), TypeError, "connector"),
    case("LifecycleManager-connector-connect-not-callable",
         lambda e: LifecycleManager(connector=NotCallableConnect()), TypeError, r"connector\.connect"),
    case("LifecycleManager-connector-disconnect-not-callable",
         lambda e: LifecycleManager(connector=NotCallableDisconnect()), TypeError, r"connector\.disconnect"),
    case("LifecycleManager-connector-ping-not-callable",
         lambda e: LifecycleManager(connector=NotCallablePing()), TypeError, r"connector\.ping"),
    case("LifecycleManager-autostart-int", lambda e: LifecycleManager(autostart=1), TypeError, "autostart"),
    case("LifecycleManager-autostart-str", lambda e: LifecycleManager(autostart="no"), TypeError, "autostart"),
    case("LifecycleManager-autostart-None", lambda e: LifecycleManager(autostart=None), TypeError, "autostart"),
    case("LifecycleManager-rng-module", lambda e: LifecycleManager(rng=random), TypeError, "rng"),
    case("LifecycleManager-rng-int", lambda e: LifecycleManager(rng=42), TypeError, "rng"),
    # -- start_service ---------------------------------------------------------------------------
    case("start_service-str", lambda e: e.m.start_service("fresh"), TypeError, "service"),
    case("start_service-None", lambda e: e.m.start_service(None), TypeError, "service"),
    case("start_service-dict", lambda e: e.m.start_service({"name": "fresh"}), TypeError, "service"),
    case("start_service-connector-int", lambda e: e.m.start_service(svc(), connector=42), TypeError, "connector"),
    case("start_service-connector-disconnect-not-callable",
         lambda e: e.m.start_service(svc(), connector=NotCallableDisconnect()), TypeError, r"connector\.disconnect"),
    case("start_service-duplicate-name", lambda e: e.m.start_service(svc("alpha")), ServiceAlreadyExists, "alpha"),
    case("start_service-duplicate-name-of-reconnecting",
         lambda e: e.m.start_service(svc("beta")), ServiceAlreadyExists, "beta"),
    case("start_service-duplicate-id", lambda e: e.m.start_service(svc("other", id=e.a)), ServiceAlreadyExists,
         "id"),
    case("start_service-connect-raises", failing_connect, ConnectionFailed, "newcomer"),
    case("start_service-after-shutdown", lambda e: e.m.start_service(svc()), ManagerClosed, "shut down",
         prepare=closed),
    # -- stop_service ----------------------------------------------------------------------------
    case("stop_service-int", lambda e: e.m.stop_service(42), TypeError, r"\bid\b"),
    case("stop_service-None", lambda e: e.m.stop_service(None), TypeError, r"\bid\b"),
    case("stop_service-bytes", lambda e: e.m.stop_service(b"alpha"), TypeError, r"\bid\b"),
    case("stop_service-float-nan", lambda e: e.m.stop_service(NAN), TypeError, r"\bid\b"),
    case("stop_service-empty", lambda e: e.m.stop_service(""), ServiceNotFound, "''"),
    case("stop_service-huge", lambda e: e.m.stop_service(HUGE), ServiceNotFound, "x" * 50),
    case("stop_service-unknown", lambda e: e.m.stop_service("no-such-id"), ServiceNotFound, "no-such-id"),
    case("stop_service-name-instead-of-id", lambda e: e.m.stop_service("alpha"), ServiceNotFound, "alpha"),
    case("stop_service-after-shutdown-unknown", lambda e: e.m.stop_service("no-such-id"), ManagerClosed,
         "shut down", prepare=closed),
    case("stop_service-after-shutdown-known", lambda e: e.m.stop_service(e.a), ManagerClosed, "shut down",
         prepare=closed),
    # -- handle_heartbeat ------------------------------------------------------------------------
    case("handle_heartbeat-int", lambda e: e.m.handle_heartbeat(42), TypeError, r"\bid\b"),
    case("handle_heartbeat-None", lambda e: e.m.handle_heartbeat(None), TypeError, r"\bid\b"),
    case("handle_heartbeat-list", lambda e: e.m.handle_heartbeat([]), TypeError, r"\bid\b"),
    case("handle_heartbeat-bool", lambda e: e.m.handle_heartbeat(True), TypeError, r"\bid\b"),
    case("handle_heartbeat-empty", lambda e: e.m.handle_heartbeat(""), ServiceNotFound, "''"),
    case("handle_heartbeat-blank", lambda e: e.m.handle_heartbeat("   "), ServiceNotFound, "'   '"),
    case("handle_heartbeat-huge", lambda e: e.m.handle_heartbeat(HUGE), ServiceNotFound, "x" * 50),
    case("handle_heartbeat-unknown", lambda e: e.m.handle_heartbeat("no-such-id"), ServiceNotFound, "no-such-id"),
    case("handle_heartbeat-after-shutdown-unknown", lambda e: e.m.handle_heartbeat("no-such-id"), ManagerClosed,
         "shut down", prepare=closed),
    case("handle_heartbeat-after-shutdown-known", lambda e: e.m.handle_heartbeat(e.a), ManagerClosed,
         "shut down", prepare=closed),
    # -- handle_error ----------------------------------------------------------------------------
    case("handle_error-id-int", lambda e: e.m.handle_error(42, "x"), TypeError, r"\bid\b"),
    case("handle_error-id-None", lambda e: e.m.handle_error(None, "x"), TypeError, r"\bid\b"),
    case("handle_error-error-int", lambda e: e.m.handle_error(e.a, 42), TypeError, "error"),
    case("handle_error-error-None", lambda e: e.m.handle_error(e.a, None), TypeError, "error"),
    case("handle_error-error-bytes", lambda e: e.m.handle_error(e.a, b"boom"), TypeError, "error"),
    case("handle_error-error-exception-class", lambda e: e.m.handle_error(e.a, RuntimeError), TypeError, "error"),
    case("handle_error-empty-id", lambda e: e.m.handle_error("", "x"), ServiceNotFound, "''"),
    case("handle_error-huge-id", lambda e: e.m.handle_error(HUGE, "x"), ServiceNotFound, "x" * 50),
    case("handle_error-unknown", lambda e: e.m.handle_error("no-such-id", "x"), ServiceNotFound, "no-such-id"),
    case("handle_error-after-shutdown-unknown", lambda e: e.m.handle_error("no-such-id", "x"), ManagerClosed,
         "shut down", prepare=closed),
    case("handle_error-after-shutdown-known", lambda e: e.m.handle_error(e.a, "x"), ManagerClosed, "shut down",
         prepare=closed),
    # -- health_check / subscribe after shutdown ---------------------------------------------------
    case("health_check-after-shutdown", lambda e: e.m.health_check(), ManagerClosed, "shut down", prepare=closed),
    # -- calculate_reconnect_delay ---------------------------------------------------------------
    case("calculate_reconnect_delay-negative", lambda e: e.m.calculate_reconnect_delay(-1), ValueError, "attempt"),
    case("calculate_reconnect_delay-float", lambda e: e.m.calculate_reconnect_delay(1.5), TypeError, "attempt"),
    case("calculate_reconnect_delay-nan", lambda e: e.m.calculate_reconnect_delay(NAN), TypeError, "attempt"),
    case("calculate_reconnect_delay-inf", lambda e: e.m.calculate_reconnect_delay(INF), TypeError, "attempt"),
    case("calculate_reconnect_delay-bool", lambda e: e.m.calculate_reconnect_delay(True), TypeError, "attempt"),
    case("calculate_reconnect_delay-str", lambda e: e.m.calculate_reconnect_delay("1"), TypeError, "attempt"),
    case("calculate_reconnect_delay-None", lambda e: e.m.calculate_reconnect_delay(None), TypeError, "attempt"),
    # -- subscribe ---------------------------------------------------------------------------------
    case("subscribe-zero", lambda e: e.m.subscribe(0), ValueError, "maxsize"),
    case("subscribe-negative", lambda e: e.m.subscribe(-5), ValueError, "maxsize"),
    case("subscribe-float", lambda e: e.m.subscribe(8.0), TypeError, "maxsize"),
    case("subscribe-nan", lambda e: e.m.subscribe(NAN), TypeError, "maxsize"),
    case("subscribe-inf", lambda e: e.m.subscribe(INF), TypeError, "maxsize"),
    case("subscribe-bool", lambda e: e.m.subscribe(True), TypeError, "maxsize"),
    case("subscribe-str", lambda e: e.m.subscribe("8"), TypeError, "maxsize"),
    case("subscribe-None", lambda e: e.m.subscribe(None), TypeError, "maxsize"),
    case("subscribe-after-shutdown", lambda e: e.m.subscribe(), ManagerClosed, "shut down", prepare=closed),
    case("Subscription-maxsize-zero", lambda e: Subscription(0), ValueError, "maxsize"),
    case("Subscription-maxsize-bool", lambda e: Subscription(True), TypeError, "maxsize"),
    # -- Subscription.get(timeout) -----------------------------------------------------------------
    case("Subscription.get-negative", lambda e: e.sub.get(timeout=-1), ValueError, "timeout"),
    case("Subscription.get-nan", lambda e: e.sub.get(timeout=NAN), ValueError, "timeout"),
    case("Subscription.get-inf", lambda e: e.sub.get(timeout=INF), ValueError, "timeout"),
    case("Subscription.get-bool", lambda e: e.sub.get(timeout=True), TypeError, "timeout"),
    case("Subscription.get-str", lambda e: e.sub.get(timeout="1"), TypeError, "timeout"),
    # -- shutdown(timeout) -------------------------------------------------------------------------
    case("shutdown-negative", lambda e: e.m.shutdown(-1), ValueError, "timeout"),
    case("shutdown-nan", lambda e: e.m.shutdown(NAN), ValueError, "timeout"),
    case("shutdown-inf", lambda e: e.m.shutdown(INF), ValueError, "timeout"),
    case("shutdown-bool", lambda e: e.m.shutdown(True), TypeError, "timeout"),
    case("shutdown-str", lambda e: e.m.shutdown("5"), TypeError, "timeout"),
    case("shutdown-None", lambda e: e.m.shutdown(None), TypeError, "timeout"),
    # -- RegistryService ---------------------------------------------------------------------------
    case("RegistryService-timeout-zero", lambda e: RegistryService(heartbeat_timeout_secs=0), ValueError,
         "heartbeat_timeout_secs"),
    case("RegistryService-timeout-negative", lambda e: RegistryService(heartbeat_timeout_secs=-1), ValueError,
         "heartbeat_timeout_secs"),
    case("RegistryService-timeout-nan", lambda e: RegistryService(heartbeat_timeout_secs=NAN), ValueError,
         "heartbeat_timeout_secs"),
    case("RegistryService-timeout-inf", lambda e: RegistryService(heartbeat_timeout_secs=INF), ValueError,
         "heartbeat_timeout_secs"),
    case("RegistryService-timeout-bool", lambda e: RegistryService(heartbeat_timeout_secs=True), TypeError,
         "heartbeat_timeout_secs"),
    case("RegistryService-timeout-str", lambda e: RegistryService(heartbeat_timeout_secs="60"), TypeError,
         "heartbeat_timeout_secs"),
    case("RegistryService-timeout-None", lambda e: RegistryService(heartbeat_timeout_secs=None), TypeError,
         "heartbeat_timeout_secs"),
    case("registry.register-str", lambda e: e.reg.register("alpha"), TypeError, "service"),
    case("registry.register-None", lambda e: e.reg.register(None), TypeError, "service"),
    case("registry.register-duplicate-name", lambda e: e.reg.register(svc("alpha")), ServiceAlreadyExists,
         "alpha"),
    case("registry.register-duplicate-id", lambda e: e.reg.register(svc("other", id=e.b)), ServiceAlreadyExists,
         "id"),
    case("registry.unregister-unknown", lambda e: e.reg.unregister("no-such-id"), ServiceNotFound, "no-such-id"),
    case("registry.unregister-empty", lambda e: e.reg.unregister(""), ServiceNotFound, "''"),
    case("registry.unregister-huge", lambda e: e.reg.unregister(HUGE), ServiceNotFound, "x" * 50),
    case("registry.unregister-int", lambda e: e.reg.unregister(42), TypeError, r"\bid\b"),
    case("registry.unregister-list", lambda e: e.reg.unregister([]), TypeError, r"\bid\b"),
    case("registry.update_status-bogus", lambda e: e.reg.update_status(e.a, "sleeping"), ValueError, "status"),
    case("registry.update_status-int", lambda e: e.reg.update_status(e.a, 1), TypeError, "status"),
    case("registry.update_status-None", lambda e: e.reg.update_status(e.a, None), TypeError, "status"),
    case("registry.update_status-unknown", lambda e: e.reg.update_status("no-such-id", RUNNING), ServiceNotFound,
         "no-such-id"),
    case("registry.update_status-id-int", lambda e: e.reg.update_status(42, RUNNING), TypeError, r"\bid\b"),
    case("registry.heartbeat-unknown", lambda e: e.reg.heartbeat("no-such-id"), ServiceNotFound, "no-such-id"),
    case("registry.heartbeat-empty", lambda e: e.reg.heartbeat(""), ServiceNotFound, "''"),
    case("registry.heartbeat-int", lambda e: e.reg.heartbeat(42), TypeError, r"\bid\b"),
    case("registry.list-dict", lambda e: e.reg.list({"status": RUNNING}), TypeError, "filter"),
    case("registry.list-str", lambda e: e.reg.list("running"), TypeError, "filter"),
    case("registry.find_by_capability-empty", lambda e: e.reg.find_by_capability(""), ValueError, "capability"),
    case("registry.find_by_capability-huge", lambda e: e.reg.find_by_capability(HUGE), ValueError, "capability"),
    case("registry.find_by_capability-int", lambda e: e.reg.find_by_capability(42), TypeError, "capability"),
    # -- ExtensionService(...) and its methods -------------------------------------------------------
    case("ExtensionService-name-empty", lambda e: ExtensionService("", "1"), ValueError, "name"),
    case("ExtensionService-name-blank", lambda e: ExtensionService("   ", "1"), ValueError, "name"),
    case("ExtensionService-name-huge", lambda e: ExtensionService(HUGE, "1"), ValueError, "name"),
    case("ExtensionService-name-int", lambda e: ExtensionService(42, "1"), TypeError, "name"),
    case("ExtensionService-name-None", lambda e: ExtensionService(None, "1"), TypeError, "name"),
    case("ExtensionService-version-empty", lambda e: ExtensionService("n", ""), ValueError, "version"),
    case("ExtensionService-version-huge", lambda e: ExtensionService("n", HUGE), ValueError, "version"),
    case("ExtensionService-version-float", lambda e: ExtensionService("n", 1.0), TypeError, "version"),
    case("ExtensionService-description-int", lambda e: svc(description=3), TypeError, "description"),
    case("ExtensionService-capabilities-str", lambda e: svc(capabilities="search"), TypeError, "capabilities"),
    case("ExtensionService-capabilities-of-str", lambda e: svc(capabilities=["search"]), TypeError, "capabilities"),
    case("ExtensionService-transport-dict", lambda e: svc(transport={}), TypeError, "transport"),
    case("ExtensionService-metadata-list", lambda e: svc(metadata=[]), TypeError, "metadata"),
    case("ExtensionService-id-empty", lambda e: svc(id=""), ValueError, r"\.id"),
    case("ExtensionService-id-huge", lambda e: svc(id=HUGE), ValueError, r"\.id"),
    case("ExtensionService-id-int", lambda e: svc(id=42), TypeError, r"\.id"),
    case("ExtensionService-status-bogus", lambda e: svc(status="sleeping"), ValueError, "status"),
    case("ExtensionService-status-int", lambda e: svc(status=1), TypeError, "status"),
    case("ExtensionService-last_heartbeat-nan", lambda e: svc(last_heartbeat=NAN), ValueError, "last_heartbeat"),
    case("ExtensionService-last_heartbeat-inf", lambda e: svc(last_heartbeat=INF), ValueError, "last_heartbeat"),
    case("ExtensionService-last_heartbeat-bool", lambda e: svc(last_heartbeat=True), TypeError, "last_heartbeat"),
    case("ExtensionService-last_heartbeat-str", lambda e: svc(last_heartbeat="now"), TypeError, "last_heartbeat"),
    case("ExtensionService-retry_count-negative", lambda e: svc(retry_count=-1), ValueError, "retry_count"),
    case("ExtensionService-retry_count-float", lambda e: svc(retry_count=1.5), TypeError, "retry_count"),
    case("ExtensionService-retry_count-bool", lambda e: svc(retry_count=False), TypeError, "retry_count"),
    case("ExtensionService.is_healthy-nan", lambda e: svc().is_healthy(NAN), ValueError, "timeout_secs"),
    case("ExtensionService.is_healthy-inf", lambda e: svc().is_healthy(INF), ValueError, "timeout_secs"),
    case("ExtensionService.is_healthy-bool", lambda e: svc().is_healthy(True), TypeError, "timeout_secs"),
    case("ExtensionService.is_healthy-str", lambda e: svc().is_healthy("90"), TypeError, "timeout_secs"),
    case("ExtensionService.set_status-bogus", lambda e: svc().set_status("sleeping"), ValueError, "status"),
    case("ExtensionService.set_status-None", lambda e: svc().set_status(None), TypeError, "status"),
    # -- TransportConfig(...) ------------------------------------------------------------------------
    case("TransportConfig-transport_type-bogus", lambda e: TransportConfig(transport_type="pigeon"), ValueError,
         "transport_type"),
    case("TransportConfig-transport_type-int", lambda e: TransportConfig(transport_type=1), TypeError,
         "transport_type"),
    case("TransportConfig-port-negative", lambda e: TransportConfig(port=-1), ValueError, "port"),
    case("TransportConfig-port-too-big", lambda e: TransportConfig(port=65536), ValueError, "port"),
    case("TransportConfig-port-bool", lambda e: TransportConfig(port=True), TypeError, "port"),
    case("TransportConfig-port-str", lambda e: TransportConfig(port="80"), TypeError, "port"),
    case("TransportConfig-port-float", lambda e: TransportConfig(port=80.0), TypeError, "port"),
    case("TransportConfig-timeout-zero", lambda e: TransportConfig(timeout_secs=0), ValueError, "timeout_secs"),
    case("TransportConfig-timeout-negative", lambda e: TransportConfig(timeout_secs=-1), ValueError,
         "timeout_secs"),
    case("TransportConfig-timeout-nan", lambda e: TransportConfig(timeout_secs=NAN), ValueError, "timeout_secs"),
    case("TransportConfig-timeout-inf", lambda e: TransportConfig(timeout_secs=INF), ValueError, "timeout_secs"),
    case("TransportConfig-timeout-bool", lambda e: TransportConfig(timeout_secs=True), TypeError, "timeout_secs"),
    case("TransportConfig-timeout-str", lambda e: TransportConfig(timeout_secs="30"), TypeError, "timeout_secs"),
    case("TransportConfig-auto_reconnect-str", lambda e: TransportConfig(auto_reconnect="yes"), TypeError,
         "auto_reconnect"),
    case("TransportConfig-auto_reconnect-int", lambda e: TransportConfig(auto_reconnect=1), TypeError,
         "auto_reconnect"),
    case("TransportConfig-max_retries-negative", lambda e: TransportConfig(max_retries=-1), ValueError,
         "max_retries"),
    case("TransportConfig-max_retries-float", lambda e: TransportConfig(max_retries=1.5), TypeError,
         "max_retries"),
    case("TransportConfig-max_retries-bool", lambda e: TransportConfig(max_retries=True), TypeError,
         "max_retries"),
    case("TransportConfig-heartbeat_interval-zero", lambda e: TransportConfig(heartbeat_interval_secs=0),
         ValueError, "heartbeat_interval_secs"),
    case("TransportConfig-heartbeat_interval-nan", lambda e: TransportConfig(heartbeat_interval_secs=NAN),
         ValueError, "heartbeat_interval_secs"),
    case("TransportConfig-heartbeat_interval-bool", lambda e: TransportConfig(heartbeat_interval_secs=True),
         TypeError, "heartbeat_interval_secs"),
    case("TransportConfig-address-int", lambda e: TransportConfig(address=80), TypeError, "address"),
    case("TransportConfig-command-list", lambda e: TransportConfig(command=["ls"]), TypeError, "command"),
    case("TransportConfig-cwd-int", lambda e: TransportConfig(cwd=1), TypeError, "cwd"),
    case("TransportConfig-args-str", lambda e: TransportConfig(args="-v"), TypeError, "args"),
    case("TransportConfig-env-list", lambda e: TransportConfig(env=[]), TypeError, "env"),
    # -- Capability(...) -------------------------------------------------------------------------------
    case("Capability-name-empty", lambda e: Capability(""), ValueError, "name"),
    case("Capability-name-huge", lambda e: Capability(HUGE), ValueError, "name"),
    case("Capability-name-int", lambda e: Capability(7), TypeError, "name"),
    case("Capability-version-int", lambda e: Capability("search", 2), TypeError, "version"),
    case("Capability-config-list", lambda e: Capability("search", "1", []), TypeError, "config"),
    # -- LifecycleConfig(...): ValueError for wrong values and wrong types alike -----------------------
    *[
        case(f"LifecycleConfig-{field}-{label}", (lambda f, v: lambda e: LifecycleConfig(**{f: v}))(field, value),
             ValueError, field)
        for field, cases in {
            "heartbeat_interval_secs": {"zero": 0, "negative": -1, "nan": NAN, "inf": INF, "bool": True,
                                        "str": "30", "None": None, "int-overflowing-float": 10**400},
            "heartbeat_timeout_secs": {"zero": 0, "negative": -1, "nan": NAN, "inf": INF, "bool": False,
                                       "below-interval": 10},
            "max_reconnect_attempts": {"negative": -1, "float": 1.5, "bool": True, "str": "5", "None": None},
            "reconnect_delay_ms": {"negative": -1, "nan": NAN, "inf": INF, "bool": True, "huge-int": 10**400},
            "max_reconnect_delay_ms": {"below-delay": 500, "nan": NAN, "str": "30000"},
            "reconnect_backoff_multiplier": {"below-one": 0.5, "zero": 0, "nan": NAN, "inf": INF, "bool": True},
            "jitter": {"negative": -0.1, "above-one": 1.5, "nan": NAN, "inf": INF, "bool": True, "str": "0.1"},
            "auto_reconnect": {"str": "yes", "int": 1, "None": None},
        }.items()
        for label, value in cases.items()
    ],
    # -- ServiceFilter(...) ----------------------------------------------------------------------------
    case("ServiceFilter-status-bogus", lambda e: ServiceFilter(status="sleeping"), ValueError, "status"),
    case("ServiceFilter-status-int", lambda e: ServiceFilter(status=1), TypeError, "status"),
    case("ServiceFilter-capability-empty", lambda e: ServiceFilter(capability=""), ValueError, "capability"),
    case("ServiceFilter-capability-huge", lambda e: ServiceFilter(capability=HUGE), ValueError, "capability"),
    case("ServiceFilter-capability-int", lambda e: ServiceFilter(capability=1), TypeError, "capability"),
    case("ServiceFilter-transport_type-str", lambda e: ServiceFilter(transport_type="tcp"), TypeError,
         "transport_type"),
    case("ServiceFilter-transport_type-int", lambda e: ServiceFilter(transport_type=1), TypeError,
         "transport_type"),
    # -- ExponentialBackoff(...) -----------------------------------------------------------------------
    case("ExponentialBackoff-initial-negative", lambda e: ExponentialBackoff(initial=-1), ValueError, "initial"),
    case("ExponentialBackoff-multiplier-below-one", lambda e: ExponentialBackoff(multiplier=0.5), ValueError,
         "multiplier"),
    case("ExponentialBackoff-jitter-above-one", lambda e: ExponentialBackoff(jitter=2), ValueError, "jitter"),
    case("ExponentialBackoff-maximum-nan", lambda e: ExponentialBackoff(maximum=NAN), ValueError, "maximum"),
    case("ExponentialBackoff-initial-bool", lambda e: ExponentialBackoff(initial=True), TypeError, "initial"),
    # -- lifecycle.connect -----------------------------------------------------------------------------
    case("connect-receiver-int", lambda e: lifecycle.connect(42), TypeError, "receiver"),
    case("connect-receiver-None", lambda e: lifecycle.connect(None), TypeError, "receiver"),
    case("connect-receiver-str", lambda e: lifecycle.connect("print", "service_started"), TypeError, "receiver"),
    case("connect-unknown-signal", lambda e: lifecycle.connect(print, "service_started", "service_exploded"),
         ValueError, "service_exploded"),
    case("connect-empty-signal-name", lambda e: lifecycle.connect(print, ""), ValueError, "signal ''"),
    case("connect-huge-signal-name", lambda e: lifecycle.connect(print, HUGE), ValueError, "unknown signal"),
    case("connect-foreign-signal", lambda e: lifecycle.connect(print, blinker.Signal()), TypeError, "signals"),
    case("connect-same-name-foreign-signal",
         lambda e: lifecycle.connect(print, blinker.Namespace().signal("service_started")), TypeError, "signals"),
    case("connect-signal-None", lambda e: lifecycle.connect(print, None), TypeError, "signals"),
]


@pytest.mark.parametrize("bad", CASES)
def test_bad_input_raises_the_documented_error_and_leaves_no_partial_state(env, frozen_lifecycle, bad):
    if bad.prepare is not None:
        bad.prepare(env)
    before = snapshot(env)
    # so a heartbeat or a registry touch the failed call made would show in the timestamps:
    frozen_lifecycle.freezer.tick(0.5)
    with pytest.raises(bad.exc, match=bad.match) as info:
        bad.call(env)
    if bad.exc in (TypeError, ValueError):
        assert not isinstance(info.value, LifecycleError), "argument errors are not lifecycle errors"
    assert snapshot(env) == before, "the failed call left state behind"
    if not env.m.closed:  # and the manager still works
        env.m.handle_heartbeat(env.a)
        assert env.m.get_status(env.a) is RUNNING


# -- queries are total -------------------------------------------------------------------------------

NOT_IDS = [pytest.param(v, id=i) for i, v in [
    ("int", 42), ("None", None), ("list", []), ("bytes", b"x"), ("empty", ""), ("huge", HUGE),
    ("unknown", "no-such-id"), ("name-not-id", "alpha"), ("nan", NAN),
]]


@pytest.mark.parametrize("value", NOT_IDS)
def test_manager_queries_answer_for_anything_that_is_not_a_managed_id(env, value):
    before = snapshot(env)
    assert env.m.get_status(value) is None
    assert env.m.is_healthy(value) is False
    assert env.m.attempts(value) == 0
    assert snapshot(env) == before


@pytest.mark.parametrize("value", NOT_IDS)
def test_registry_queries_answer_none_for_anything_that_is_not_a_registered_id(env, value):
    before = snapshot(env)
    assert env.reg.get(value) is None
    assert env.reg.get_registration(value) is None
    assert env.reg.get_by_name(value) is None or value == "alpha"
    assert (value in env.reg) is False
    assert snapshot(env) == before


def test_queries_after_shutdown_answer_as_for_an_empty_manager(env):
    env.m.shutdown()
    for sid in (env.a, env.b, "no-such-id", 42):
        assert env.m.get_status(sid) is None
        assert env.m.is_healthy(sid) is False
    assert env.m.count() == len(env.m) == 0
    assert env.m.run_pending() == 0
    env.m.stop_all()  # does nothing after shutdown
    env.m.shutdown()  # idempotent


# -- inputs at the edge that are valid -----------------------------------------------------------


def test_valid_edge_inputs_are_accepted(env):
    assert 0 <= env.m.calculate_reconnect_delay(10**100) <= CFG.max_reconnect_delay_ms / 1000
    assert env.m.calculate_reconnect_delay(0) == 1.0
    env.m.handle_error(env.a, "")  # an empty message is still a report
    env.m.handle_error(env.b, HUGE)
    assert env.rec.events[-1].error == HUGE
    assert env.m.start_service(ExtensionService("n" * 256, "1"))  # the longest accepted name
    assert env.m.start_service(ExtensionService("d", "1", description=HUGE, id=ServiceId("i" * 256)))
    assert env.m.subscribe(maxsize=1).maxsize == 1
    assert LifecycleConfig(max_reconnect_attempts=0, reconnect_delay_ms=0, max_reconnect_delay_ms=0, jitter=0)
    assert LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=1, jitter=1)


# -- re-entrant misuse -------------------------------------------------------------------------------


class Reentrant:
    """A connector that runs `action` from inside connect (while STARTING) or disconnect (STOPPING)."""

    def __init__(self) -> None:
        self.on_connect: Callable[[ExtensionService], Any] | None = None
        self.on_disconnect: Callable[[ExtensionService], Any] | None = None
        self.raised: list[BaseException] = []
        self.status_seen: list[Any] = []

    def run(self, action: Callable[[ExtensionService], Any] | None, service: ExtensionService) -> None:
        if action is None:
            return
        try:
            action(service)
        except BaseException as exc:
            self.raised.append(exc)

    def connect(self, service: ExtensionService) -> None:
        self.run(self.on_connect, service)

    def disconnect(self, service: ExtensionService) -> None:
        self.run(self.on_disconnect, service)


@pytest.mark.parametrize(("label", "misuse", "exc"), [
    ("handle_heartbeat", lambda m, s: m.handle_heartbeat(s.id), InvalidState),
    ("handle_error", lambda m, s: m.handle_error(s.id, "late"), InvalidState),
    ("handle_error-bad-type", lambda m, s: m.handle_error(s.id, 42), TypeError),
])
def test_reports_from_disconnect_during_stop_are_refused_and_change_nothing(make_manager, record, label, misuse,
                                                                              exc):
    m = make_manager(CFG)
    rec = record(m)
    conn = Reentrant()
    sid = m.start_service(ExtensionService("alpha", "1"), connector=conn)
    rec.clear()
    seen: list[Any] = []

    def misuse_while_stopping(service: ExtensionService) -> None:
        before = m.registry.get(service.id)
        seen.append(before.status)
        try:
            misuse(m, service)
        finally:
            after = m.registry.get(service.id)
            seen.append((after.status, after.last_heartbeat == before.last_heartbeat, m.armed_timers()))

    conn.on_disconnect = misuse_while_stopping
    m.stop_service(sid)
    assert len(conn.raised) == 1 and isinstance(conn.raised[0], exc)
    if exc is InvalidState:
        assert "alpha" in str(conn.raised[0]) and "stopping" in str(conn.raised[0])
    assert seen == [STOPPING, (STOPPING, True, 0)]
    assert rec.names() == ["status_changed", "status_changed", "service_stopped"]
    assert m.count() == 0 and m.registry.count() == 0


def test_stop_service_from_disconnect_during_stop_returns_at_once(make_manager, record):
    m = make_manager(CFG)
    rec = record(m)
    conn = Reentrant()
    sid = m.start_service(ExtensionService("alpha", "1"), connector=conn)
    rec.clear()
    conn.on_disconnect = lambda s: m.stop_service(s.id)
    m.stop_service(sid)
    assert conn.raised == []
    assert rec.names() == ["status_changed", "status_changed", "service_stopped"]


def test_handle_error_from_connect_while_starting_is_refused(make_manager, record):
    m = make_manager(CFG)
    rec = record(m)
    conn = Reentrant()
    conn.on_connect = lambda s: m.handle_error(s.id, "too early")
    sid = m.start_service(ExtensionService("alpha", "1"), connector=conn)
    assert len(conn.raised) == 1 and isinstance(conn.raised[0], InvalidState)
    assert "alpha" in str(conn.raised[0])
    assert rec.names() == ["service_started", "status_changed"]  # no service_error leaked out
    assert m.get_status(sid) is RUNNING and m.attempts(sid) == 0 and m.armed_timers() == 1


def test_starting_the_same_service_again_from_its_own_connect_is_refused(make_manager, record):
    m = make_manager(CFG)
    rec = record(m)
    conn = Reentrant()
    service = ExtensionService("alpha", "1")
    conn.on_connect = lambda s: m.start_service(service)
    sid = m.start_service(service, connector=conn)
    assert len(conn.raised) == 1 and isinstance(conn.raised[0], ServiceAlreadyExists)
    assert "alpha" in str(conn.raised[0])
    assert m.count() == 1 and m.registry.count() == 1 and m.get_status(sid) is RUNNING
    assert rec.names() == ["service_started", "status_changed"]


def test_shutdown_from_connect_while_starting_fails_the_start_and_leaves_nothing(make_manager, record):
    m = make_manager(CFG)
    rec = record(m)
    conn = Reentrant()
    conn.on_connect = lambda s: m.shutdown()
    with pytest.raises(LifecycleError, match="alpha"):
        m.start_service(ExtensionService("alpha", "1"), connector=conn)
    assert conn.raised == []
    assert m.closed and m.count() == 0 and m.registry.count() == 0 and m.armed_timers() == 0
    assert "service_started" not in rec.names()
