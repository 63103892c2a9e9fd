"""Contract section 6 (errors) and the top-level exports promised by the contract."""

from __future__ import annotations

import importlib
import types

import pytest

import lifecycle
import lifecycle.events
from lifecycle import (
    ConnectionFailed,
    ExtensionService,
    InvalidState,
    LifecycleError,
    ManagerClosed,
    RegistryService,
    ServiceAlreadyExists,
    ServiceNotFound,
)

ERRORS = [ServiceNotFound, ServiceAlreadyExists, InvalidState, ConnectionFailed, ManagerClosed]

TOP_LEVEL_NAMES = [
    # 1. service model
    "ServiceId",
    "ServiceStatus",
    "TransportType",
    "Capability",
    "TransportConfig",
    "ExtensionService",
    "RegistrationInfo",
    # 2. registry
    "RegistryService",
    "ServiceFilter",
    "RegistryStats",
    "Registry",
    # 3. configuration
    "LifecycleConfig",
    # 4. manager
    "LifecycleManager",
    "Subscription",
    # 5. events
    "LifecycleEvent",
    # 6. errors
    "LifecycleError",
    "ServiceNotFound",
    "ServiceAlreadyExists",
    "InvalidState",
    "ConnectionFailed",
    "ManagerClosed",
]

EVENT_CLASSES = {
    "Started": "service_started",
    "Stopped": "service_stopped",
    "StatusChanged": "status_changed",
    "Heartbeat": "heartbeat_received",
    "HeartbeatTimeout": "heartbeat_timeout",
    "Reconnecting": "reconnecting",
    "Reconnected": "reconnected",
    "ReconnectFailed": "reconnect_failed",
    "Error": "service_error",
}


# -- hierarchy ------------------------------------------------------------------------------


def test_lifecycle_error_derives_from_exception():
    assert issubclass(LifecycleError, Exception)
    assert LifecycleError.__bases__ == (Exception,)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_every_error_derives_from_lifecycle_error(error):
    assert issubclass(error, LifecycleError)
    assert issubclass(error, Exception)
    with pytest.raises(LifecycleError):
        raise error("service 'x'")


def test_service_not_found_is_also_a_lookup_error():
    assert issubclass(ServiceNotFound, LookupError)
    with pytest.raises(LookupError):
        raise ServiceNotFound("service 'x' is not registered")


@pytest.mark.parametrize("error", [e for e in ERRORS if e is not ServiceNotFound], ids=lambda e: e.__name__)
def test_other_errors_are_not_lookup_errors(error):
    assert not issubclass(error, LookupError)


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: e.__name__)
def test_errors_are_not_value_or_type_errors(error):
    assert not issubclass(error, (ValueError, TypeError))


@pytest.mark.parametrize("error", [*ERRORS, LifecycleError], ids=lambda e: e.__name__)
def test_error_str_is_the_plain_message(error):
    assert str(error("service 'abc' is not registered")) == "service 'abc' is not registered"


def test_errors_from_the_registry_name_the_service():
    reg = RegistryService()
    reg.register(ExtensionService("named-svc", "1"))
    with pytest.raises(ServiceAlreadyExists) as dup:
        reg.register(ExtensionService("named-svc", "1"))
    assert "named-svc" in str(dup.value)
    with pytest.raises(ServiceNotFound) as missing:
        reg.heartbeat("id-1234")
    assert "id-1234" in str(missing.value)


# -- exports --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TOP_LEVEL_NAMES)
def test_contract_name_is_importable_from_top_level(name):
    module = importlib.import_module("lifecycle")
    assert getattr(module, name) is not None


@pytest.mark.parametrize("error", [*ERRORS, LifecycleError], ids=lambda e: e.__name__)
def test_errors_are_exported_from_top_level(error):
    assert getattr(lifecycle, error.__name__) is error


def test_signals_and_events_are_modules():
    assert isinstance(lifecycle.signals, types.ModuleType)
    assert isinstance(lifecycle.events, types.ModuleType)
    assert importlib.import_module("lifecycle.signals") is lifecycle.signals


@pytest.mark.parametrize(("name", "signal_name"), EVENT_CLASSES.items())
def test_event_classes_live_in_lifecycle_events(name, signal_name):
    cls = getattr(lifecycle.events, name)
    assert issubclass(cls, lifecycle.LifecycleEvent)
    assert not issubclass(cls, BaseException)
    assert cls.signal_name == signal_name


def test_reconnect_failed_is_an_event_not_an_error():
    assert issubclass(lifecycle.events.ReconnectFailed, lifecycle.events.LifecycleEvent)
    assert not issubclass(lifecycle.events.ReconnectFailed, BaseException)
    assert not hasattr(lifecycle, "ReconnectFailed")
    assert "ReconnectFailed" not in lifecycle.__all__


def test_lifecycle_event_is_the_same_class_at_top_level_and_in_events():
    assert lifecycle.LifecycleEvent is lifecycle.events.LifecycleEvent


def test_a_duplicate_service_error_names_it_plainly_carries_its_data_and_says_what_to_do():
    manager = lifecycle.LifecycleManager(autostart=False)
    try:
        first = manager.start_service(ExtensionService("search", "1.0", id="search-1"))
        with pytest.raises(ServiceAlreadyExists) as by_name:
            manager.start_service(ExtensionService("search", "1.0"))
        with pytest.raises(ServiceAlreadyExists) as by_id:
            manager.start_service(ExtensionService("other", "1.0", id=first))
    finally:
        manager.shutdown(0)
    assert (by_name.value.name, by_name.value.id) == ("search", "search-1")
    assert str(by_name.value).startswith("a service named 'search' is already registered (id 'search-1'); stop it")
    assert (by_id.value.name, by_id.value.id) == (None, "search-1")
    assert str(by_id.value).startswith("a service with id 'search-1' is already registered; stop it first")
    for error in (by_name.value, by_id.value):
        assert "ServiceId(" not in str(error) and "stop_service" in str(error)
