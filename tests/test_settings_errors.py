"""Settings errors carry data (key, setting, code, hint), every bad key is reported, suggestions make sense."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import django_setup  # noqa: F401  (configures Django before the imports below)
import pytest
from django.core.checks import run_checks
from django.test import override_settings
from flask import Flask

from lifecycle import FieldError, LifecycleConfig, TransportConfig
from lifecycle.contrib._settings import ConfigurationError, check_settings, parse_settings
from lifecycle.contrib.flask import Lifecycle

MANAGE = Path(__file__).resolve().parent.parent / "examples" / "django_project" / "manage.py"


def flask_spell(key: str) -> str:
    return f"LIFECYCLE_{key}"


# -- the data an error carries -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "setting", "code"),
    [
        ({"JITTER": 5}, "JITTER", "too_large"),
        ({"JITTER": "0.1"}, "JITTER", "type"),
        ({"HEARTBEAT_TIMEOUT_SECS": 1e10}, "HEARTBEAT_TIMEOUT_SECS", "too_large"),
        ({"HEARTBEAT_INTERVAL_SECS": 100}, "HEARTBEAT_INTERVAL_SECS", "order"),  # against the default timeout
        ({"HEARTBEAT_INTERVAL_SECS": 10, "HEARTBEAT_TIMEOUT_SECS": 5}, "HEARTBEAT_TIMEOUT_SECS", "order"),
        ({"SHUTDOWN_TIMEOUT": -1}, "SHUTDOWN_TIMEOUT", "too_small"),
        ({"AUTOSTART": 1}, "AUTOSTART", "type"),
        ({"AUTH": "nodots"}, "AUTH", "import"),
        ({"CONNECTOR": "no_such_module_here.C"}, "CONNECTOR", "import"),
        ({"JITER": 0.1}, "JITER", "unknown"),
        ({"REDIS_URL": "redis://h:6379/0", "REDIS_CLUSTER": "yes"}, "REDIS_CLUSTER", "type"),
        ({"REDIS_CLUSTER": True}, "REDIS_CLUSTER", "conflict"),  # without REDIS_URL
        ({"REDIS_URL": "redis://h:6379/0", "REDIS_PARTITIONS": 0}, "REDIS_PARTITIONS", "too_small"),
        ({"REDIS_URL": "redis://h:6379/0", "REDIS_PARTITIONS": "2"}, "REDIS_PARTITIONS", "type"),
        ({"REDIS_URL": "redis://h:6379/0", "REDIS_PARTITIONS": 1025}, "REDIS_PARTITIONS", "too_large"),
        ({"REDIS_PARTITIONS": 1}, "REDIS_PARTITIONS", "conflict"),  # without REDIS_URL
        ({"REDIS_URL": "redis://h:6379/0", "REDIS_LEASE_SECS": 0}, "REDIS_LEASE_SECS", "too_small"),
        ({"REDIS_URL": "redis://h:6379/0", "REDIS_LEASE_SECS": -2.5}, "REDIS_LEASE_SECS", "too_small"),
        ({"REDIS_URL": "redis://h:6379/0", "REDIS_LEASE_SECS": "5"}, "REDIS_LEASE_SECS", "type"),
        ({"REDIS_URL": "redis://h:6379/0", "REDIS_LEASE_SECS": True}, "REDIS_LEASE_SECS", "type"),
        ({"REDIS_URL": "redis://h:6379/0", "REDIS_LEASE_SECS": float("nan")}, "REDIS_LEASE_SECS", "not_finite"),
        ({"REDIS_LEASE_SECS": 5}, "REDIS_LEASE_SECS", "conflict"),  # without REDIS_URL
    ],
)
def test_a_settings_error_names_its_setting_and_code(values: dict[str, Any], setting: str, code: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_settings(values, flask_spell)
    error = caught.value
    assert (error.setting, error.code, error.key) == (setting, code, flask_spell(setting))
    assert str(error).startswith(f"{error.key}: {error.message}")


def test_validation_errors_carry_field_code_and_detail() -> None:
    with pytest.raises(ValueError) as caught:
        LifecycleConfig(jitter=True)
    assert isinstance(caught.value, FieldError)
    assert (caught.value.field, caught.value.code) == ("jitter", "type")  # a ValueError, as API.md section 6 says
    with pytest.raises(TypeError) as typed:
        TransportConfig(timeout_secs="5")
    assert isinstance(typed.value, FieldError)
    assert (typed.value.field, typed.value.code) == ("TransportConfig.timeout_secs", "type")
    assert str(typed.value) == f"{typed.value.field} {typed.value.detail}"


def test_every_bad_key_is_found_in_one_pass() -> None:
    values = {"JITTER": 5, "AUTOSTART": "yes", "JITER": 1, "CONNECTOR": "nodots", "SHUTDOWN_TIMEOUT": -1,
              "HEARTBEAT_TOKEN": " x"}
    settings, errors = check_settings(values, flask_spell)
    assert settings is None
    assert sorted((e.setting, e.code) for e in errors) == [
        ("AUTOSTART", "type"), ("CONNECTOR", "import"), ("HEARTBEAT_TOKEN", "invalid"), ("JITER", "unknown"),
        ("JITTER", "too_large"), ("SHUTDOWN_TIMEOUT", "too_small")]


def test_flask_raises_the_first_and_keeps_the_others() -> None:
    app = Flask("bad")
    app.config.update(LIFECYCLE_JITTER=5, LIFECYCLE_AUTOSTART="yes")
    with pytest.raises(ConfigurationError) as caught:
        Lifecycle(app)
    assert [e.setting for e in (caught.value, *caught.value.others)] == ["JITTER", "AUTOSTART"]


# -- "did you mean" --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("TIMEOUT", "did you mean LIFECYCLE_HEARTBEAT_TIMEOUT_SECS or LIFECYCLE_SHUTDOWN_TIMEOUT?"),
        ("JITER", "did you mean LIFECYCLE_JITTER?"),
        ("HEARTBEAT_TIMEOUT", "did you mean LIFECYCLE_HEARTBEAT_TIMEOUT_SECS?"),
        ("LIFECYCLE_JITTER", "did you mean LIFECYCLE_JITTER?"),  # the prefix written twice
        ("heartbeat_interval_secs", "did you mean LIFECYCLE_HEARTBEAT_INTERVAL_SECS?"),
        ("INTERVAL", "did you mean LIFECYCLE_HEARTBEAT_INTERVAL_SECS?"),
        ("RECONECT_DELAY", "did you mean LIFECYCLE_RECONNECT_DELAY_MS?"),
        ("TOKEN", "did you mean LIFECYCLE_HEARTBEAT_TOKEN?"),
    ],
)
def test_suggestions_name_the_settings_a_user_most_likely_meant(key: str, hint: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_settings({key: 1}, flask_spell)
    assert caught.value.code == "unknown" and caught.value.hint == hint


def test_a_name_like_no_setting_gets_the_list_of_settings() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_settings({"XYZZY": 1}, flask_spell)
    assert caught.value.hint.startswith("known settings: ") and "JITTER" in caught.value.hint


# -- Django: the system checks report every bad key -----------------------------------------------


def test_the_checks_report_every_bad_key_each_with_its_id() -> None:
    bad = {"JITTER": 5, "AUTOSTART": "yes", "JITER": 1, "TIMEOUT": 3, "CONNECTOR": "nodots"}
    with override_settings(LIFECYCLE=bad):
        messages = [m for m in run_checks(tags=["lifecycle"]) if m.id.startswith("lifecycle.E")]
    found = sorted((m.id, m.msg.split(":")[0].split(" is not")[0]) for m in messages)
    assert found == [
        ("lifecycle.E002", "LIFECYCLE['JITER']"), ("lifecycle.E002", "LIFECYCLE['TIMEOUT']"),
        ("lifecycle.E003", "LIFECYCLE['AUTOSTART']"), ("lifecycle.E003", "LIFECYCLE['JITTER']"),
        ("lifecycle.E004", "LIFECYCLE['CONNECTOR']"),
    ]
    (timeout,) = [m for m in messages if "TIMEOUT" in m.msg]
    assert timeout.hint == "Did you mean LIFECYCLE['HEARTBEAT_TIMEOUT_SECS'] or LIFECYCLE['SHUTDOWN_TIMEOUT']?"


def test_manage_py_check_on_the_example_lists_every_bad_key_without_a_traceback(tmp_path: Path) -> None:
    """The example as a user runs it, with a settings module that breaks several keys at once."""
    (tmp_path / "bad_settings.py").write_text(
        "from project.settings import *  # noqa: F403\n"
        "LIFECYCLE = {**LIFECYCLE, 'JITTER': 5, 'TIMEOUT': 3, 'AUTOSTART': 'yes', 'AUTH': 'no.such.hook'}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LIFECYCLE_"))}
    env.update(DJANGO_SETTINGS_MODULE="bad_settings", PYTHONPATH=os.pathsep.join([str(tmp_path), str(MANAGE.parent)]),
               LIFECYCLE_HEARTBEAT_TOKEN="example-token")
    result = subprocess.run([sys.executable, str(MANAGE), "check"], capture_output=True, text=True, env=env,
                            timeout=60, check=False)
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    for key, check in [("JITTER", "E003"), ("TIMEOUT", "E002"), ("AUTOSTART", "E003"), ("AUTH", "E004")]:
        assert f"lifecycle.{check}" in result.stderr and f"LIFECYCLE['{key}']" in result.stderr, (key, result.stderr)


def test_a_bad_lease_is_reported_with_every_other_bad_key() -> None:
    values = {"REDIS_URL": "redis://h:6379/0", "REDIS_LEASE_SECS": 0, "REDIS_PARTITIONS": 0, "JITTER": 5}
    with pytest.raises(ConfigurationError) as caught:
        parse_settings(values, lambda key: f"LIFECYCLE['{key}']")
    assert sorted((e.setting, e.code) for e in caught.value.errors) == [
        ("JITTER", "too_large"), ("REDIS_LEASE_SECS", "too_small"), ("REDIS_PARTITIONS", "too_small")]
    assert "LIFECYCLE['REDIS_LEASE_SECS']: must be > 0, got 0" in str(caught.value)


def test_the_lease_reaches_the_registry_in_flask_and_django(redis_server, namespace: str) -> None:
    """REDIS_LEASE_SECS is the registry's lease_ttl_secs: the leader's and the owners' lease, a tick every third."""
    from lifecycle.contrib import django as integration

    app = Flask("leased")
    app.config.update(LIFECYCLE_REDIS_URL=redis_server.url, LIFECYCLE_NAMESPACE=namespace,
                      LIFECYCLE_AUTOSTART=False, LIFECYCLE_REDIS_LEASE_SECS=2.5)
    Lifecycle(app)
    flask_manager = app.extensions["lifecycle"]
    with override_settings(LIFECYCLE={"REDIS_URL": redis_server.url, "NAMESPACE": namespace, "AUTOSTART": False,
                                      "REDIS_LEASE_SECS": 4}):
        django_manager = integration.get_manager()
        try:
            for manager, lease in ((flask_manager, 2.5), (django_manager, 4.0)):
                assert manager.registry.lease_ttl_secs == lease  # type: ignore[attr-defined]
                assert manager._engine.ticker.renew_every == lease / 3  # type: ignore[attr-defined]
        finally:
            flask_manager.shutdown()
    assert parse_settings({"REDIS_URL": "redis://h:6379/0"}, flask_spell).redis_lease_secs is None  # the default


def test_the_cluster_settings_reach_the_settings() -> None:
    settings = parse_settings({"REDIS_URL": "redis://h:6379/0", "REDIS_CLUSTER": True, "REDIS_PARTITIONS": 1},
                              flask_spell)
    assert (settings.redis_cluster, settings.redis_partitions) == (True, 1)
    default = parse_settings({"REDIS_URL": "redis://h:6379/0"}, flask_spell)
    assert (default.redis_cluster, default.redis_partitions) == (None, 1)
    spread = parse_settings({"REDIS_URL": "redis://h:6379/0", "REDIS_PARTITIONS": 3}, lambda key: f"LIFECYCLE['{key}']")
    assert spread.redis_partitions == 3
    with pytest.raises(ConfigurationError) as caught:
        parse_settings({"REDIS_URL": "redis://h:6379/0", "REDIS_PARTITIONS": 1025}, lambda key: f"LIFECYCLE['{key}']")
    assert caught.value.key == "LIFECYCLE['REDIS_PARTITIONS']" and "at most 1024" in str(caught.value)
