"""TransportConfig checks the elements of `args` and `env`; every message repeating a caller's value shortens it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

import lifecycle
from lifecycle import (
    ExtensionService,
    FieldError,
    LifecycleConfig,
    LifecycleManager,
    RegistryService,
    ServiceAlreadyExists,
    TransportConfig,
)
from lifecycle.contrib._settings import ConfigurationError, parse_settings
from lifecycle.contrib._status import StatusUnavailable, fetch_services

LONG = "x" * 40 + "y" * 9_960  # what a client, a config file or a bug may hand over


# -- element types of args and env -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"args": ["--port", 8080]}, "TransportConfig.args[1]"),
        ({"args": [None]}, "TransportConfig.args[0]"),
        ({"args": [b"bytes"]}, "TransportConfig.args[0]"),
        ({"env": {"PORT": 8080}}, "TransportConfig.env['PORT']"),
        ({"env": {"PATH": None}}, "TransportConfig.env['PATH']"),
        ({"env": {1: "one"}}, "TransportConfig.env"),
        ({"env": {b"K": "v"}}, "TransportConfig.env"),
    ],
)
def test_args_must_be_a_list_of_str_and_env_a_mapping_of_str_to_str(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(TypeError) as caught:
        TransportConfig(**kwargs)
    assert isinstance(caught.value, FieldError)
    assert (caught.value.field, caught.value.code) == (field, "element")
    assert str(caught.value).startswith(field)


def test_well_typed_args_and_env_are_kept() -> None:
    transport = TransportConfig(command="ext", args=["--port", "8080", ""], env={"PORT": "8080", "EMPTY": ""})
    assert transport.args == ["--port", "8080", ""] and transport.env == {"PORT": "8080", "EMPTY": ""}


def test_an_element_error_shortens_the_value_it_repeats() -> None:
    with pytest.raises(TypeError) as caught:
        TransportConfig(env={LONG: 5})
    assert_shortened(str(caught.value))


# -- shortened values --------------------------------------------------------------------------


def assert_shortened(message: str) -> None:
    """The message repeats at most 80 characters of the long value, then "...", and not the rest."""
    runs = re.findall(r"x+y*", message)
    assert runs and max(map(len, runs)) <= 80, message[:200]
    assert "y..." in message or "x..." in message, message[:200]
    assert len(message) < 400, len(message)


def _manager() -> LifecycleManager:
    return LifecycleManager(autostart=False)


CALLS: list[tuple[str, Callable[[], object]]] = [
    ("handle_heartbeat", lambda: _manager().handle_heartbeat(LONG)),
    ("handle_error", lambda: _manager().handle_error(LONG, "boom")),
    ("stop_service", lambda: _manager().stop_service(LONG)),
    ("registry.heartbeat", lambda: RegistryService().heartbeat(LONG)),
    ("registry.unregister", lambda: RegistryService().unregister(LONG)),
    ("registry.update_status", lambda: RegistryService().update_status(LONG, "running")),
    ("status", lambda: ExtensionService("a", "1", status=LONG)),
    ("set_status", lambda: ExtensionService("a", "1").set_status(LONG)),  # type: ignore[arg-type]
    ("transport_type", lambda: TransportConfig(transport_type=LONG)),
    ("connect", lambda: lifecycle.connect(lambda sender, **kw: None, LONG)),
    ("status --url", lambda: fetch_services("ftp://" + LONG)),
    ("AUTH setting", lambda: parse_settings({"AUTH": LONG}, lambda key: key)),
    ("CONNECTOR setting", lambda: parse_settings({"CONNECTOR": "no_such_module." + LONG}, lambda key: key)),
]


@pytest.mark.parametrize("call", [c for _, c in CALLS], ids=[name for name, _ in CALLS])
def test_a_message_repeating_a_callers_value_shortens_it(call: Callable[[], object]) -> None:
    with pytest.raises((LookupError, ValueError, TypeError, StatusUnavailable, ConfigurationError)) as caught:
        call()
    assert_shortened(str(caught.value))


def test_a_duplicate_name_is_shortened_too() -> None:
    name = LONG[:256]  # the longest name a service may have
    registry = RegistryService()
    registry.register(ExtensionService(name, "1"))
    with pytest.raises(ServiceAlreadyExists) as caught:
        registry.register(ExtensionService(name, "1"))
    assert caught.value.name == name  # the data keeps it whole
    assert_shortened(str(caught.value))


def test_a_huge_number_is_described_not_printed() -> None:
    with pytest.raises(ValueError) as caught:
        LifecycleConfig(heartbeat_timeout_secs=10**400)
    assert len(str(caught.value)) < 200 and "bits" in str(caught.value)
