"""Contract section 3: LifecycleConfig defaults, immutability and validation."""

from __future__ import annotations

import dataclasses

import pytest

from lifecycle import LifecycleConfig

NUMERIC_FIELDS = [
    "heartbeat_interval_secs",
    "heartbeat_timeout_secs",
    "max_reconnect_attempts",
    "reconnect_delay_ms",
    "max_reconnect_delay_ms",
    "reconnect_backoff_multiplier",
    "jitter",
]

CONTRACT_DEFAULTS = {
    "heartbeat_interval_secs": 30.0,
    "heartbeat_timeout_secs": 90.0,
    "max_reconnect_attempts": 5,
    "reconnect_delay_ms": 1000,
    "max_reconnect_delay_ms": 30000,
    "reconnect_backoff_multiplier": 2.0,
    "auto_reconnect": True,
    "jitter": 0.1,
    # API.md section 7 (operability)
    "max_restarts": None,
    "restart_window_secs": 60.0,
    "detector": "fixed",
    "phi_threshold": 8.0,
    "phi_max_sample_size": 1000,
    "phi_min_std_deviation_secs": 0.1,
    "phi_acceptable_pause_secs": 3.0,
}


def test_defaults_match_contract_exactly():
    config = LifecycleConfig()
    assert {f.name: getattr(config, f.name) for f in dataclasses.fields(config)} == CONTRACT_DEFAULTS
    assert config.auto_reconnect is True


def test_config_is_a_dataclass_with_exactly_the_contract_fields():
    assert dataclasses.is_dataclass(LifecycleConfig)
    assert {f.name for f in dataclasses.fields(LifecycleConfig)} == set(CONTRACT_DEFAULTS)


def test_keyword_construction_keeps_given_values():
    config = LifecycleConfig(
        heartbeat_interval_secs=5.0,
        heartbeat_timeout_secs=15.0,
        max_reconnect_attempts=7,
        reconnect_delay_ms=250.0,
        max_reconnect_delay_ms=8000.0,
        reconnect_backoff_multiplier=1.5,
        auto_reconnect=False,
        jitter=0.25,
    )
    assert (
        config.heartbeat_interval_secs,
        config.heartbeat_timeout_secs,
        config.max_reconnect_attempts,
        config.reconnect_delay_ms,
        config.max_reconnect_delay_ms,
        config.reconnect_backoff_multiplier,
        config.auto_reconnect,
        config.jitter,
    ) == (5.0, 15.0, 7, 250.0, 8000.0, 1.5, False, 0.25)


@pytest.mark.parametrize("field", [*CONTRACT_DEFAULTS])
def test_config_is_frozen(field):
    config = LifecycleConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, field, CONTRACT_DEFAULTS[field])
    assert getattr(config, field) == CONTRACT_DEFAULTS[field]


def test_replace_derives_a_validated_variant():
    config = dataclasses.replace(LifecycleConfig(), max_reconnect_attempts=2)
    assert config.max_reconnect_attempts == 2
    with pytest.raises(ValueError, match=names("max_reconnect_attempts")):
        dataclasses.replace(LifecycleConfig(), max_reconnect_attempts=-1)


def test_configs_with_equal_values_are_equal():
    assert LifecycleConfig(jitter=0.2) == LifecycleConfig(jitter=0.2)
    assert LifecycleConfig(jitter=0.2) != LifecycleConfig(jitter=0.3)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"heartbeat_interval_secs": 10, "heartbeat_timeout_secs": 30},
        {"heartbeat_interval_secs": 0.5, "heartbeat_timeout_secs": 1.5},
        {"heartbeat_interval_secs": 1, "heartbeat_timeout_secs": 2.5},
        {"reconnect_delay_ms": 500, "max_reconnect_delay_ms": 5000},
        {"reconnect_delay_ms": 0.5, "max_reconnect_delay_ms": 10.25},
        {"reconnect_backoff_multiplier": 3},
    ],
)
def test_int_and_float_durations_are_accepted_and_kept(kwargs):
    config = LifecycleConfig(**kwargs)
    for name, value in kwargs.items():
        assert getattr(config, name) == value


@pytest.mark.parametrize(
    "kwargs",
    [
        {"heartbeat_interval_secs": 30, "heartbeat_timeout_secs": 30},  # timeout == interval
        {"reconnect_delay_ms": 0, "max_reconnect_delay_ms": 0},  # zero delays
        {"reconnect_delay_ms": 2000, "max_reconnect_delay_ms": 2000},  # max == delay
        {"reconnect_backoff_multiplier": 1},  # multiplier exactly 1
        {"jitter": 0},
        {"jitter": 1},
        {"jitter": 1.0},
        {"max_reconnect_attempts": 0},
        {"auto_reconnect": False},
    ],
)
def test_boundary_values_are_accepted(kwargs):
    config = LifecycleConfig(**kwargs)
    for name, value in kwargs.items():
        assert getattr(config, name) == value


INVALID = [
    # non-positive timeouts / intervals
    ("heartbeat_interval_secs", {"heartbeat_interval_secs": 0}),
    ("heartbeat_interval_secs", {"heartbeat_interval_secs": 0.0}),
    ("heartbeat_interval_secs", {"heartbeat_interval_secs": -1}),
    ("heartbeat_timeout_secs", {"heartbeat_timeout_secs": 0}),
    ("heartbeat_timeout_secs", {"heartbeat_timeout_secs": -90.0}),
    # timeout < interval
    ("heartbeat_timeout_secs", {"heartbeat_interval_secs": 30, "heartbeat_timeout_secs": 29.999}),
    ("heartbeat_timeout_secs", {"heartbeat_interval_secs": 100, "heartbeat_timeout_secs": 90}),
    # negative delays
    ("reconnect_delay_ms", {"reconnect_delay_ms": -1}),
    ("reconnect_delay_ms", {"reconnect_delay_ms": -0.001}),
    ("max_reconnect_delay_ms", {"reconnect_delay_ms": 0, "max_reconnect_delay_ms": -1}),
    # max delay < delay
    ("max_reconnect_delay_ms", {"reconnect_delay_ms": 5000, "max_reconnect_delay_ms": 4999}),
    ("max_reconnect_delay_ms", {"max_reconnect_delay_ms": 999}),
    # multiplier < 1
    ("reconnect_backoff_multiplier", {"reconnect_backoff_multiplier": 0.999}),
    ("reconnect_backoff_multiplier", {"reconnect_backoff_multiplier": 0}),
    ("reconnect_backoff_multiplier", {"reconnect_backoff_multiplier": -2.0}),
    # jitter outside [0, 1]
    ("jitter", {"jitter": -0.01}),
    ("jitter", {"jitter": 1.0001}),
    ("jitter", {"jitter": 2}),
    # negative attempts
    ("max_reconnect_attempts", {"max_reconnect_attempts": -1}),
    # bool where a number is expected
    *[(field, {field: True}) for field in NUMERIC_FIELDS],
    *[(field, {field: False}) for field in NUMERIC_FIELDS],
    # NaN and infinity in every numeric field
    *[(field, {field: float("nan")}) for field in NUMERIC_FIELDS],
    *[(field, {field: float("inf")}) for field in NUMERIC_FIELDS],
    *[(field, {field: float("-inf")}) for field in NUMERIC_FIELDS],
    # wrong types are ValueError too in LifecycleConfig
    *[(field, {field: "10"}) for field in NUMERIC_FIELDS],
    *[(field, {field: None}) for field in NUMERIC_FIELDS],
    ("max_reconnect_attempts", {"max_reconnect_attempts": 2.5}),
    ("max_reconnect_attempts", {"max_reconnect_attempts": 3.0}),
    ("auto_reconnect", {"auto_reconnect": "yes"}),
    ("auto_reconnect", {"auto_reconnect": 1}),
    ("auto_reconnect", {"auto_reconnect": None}),
]


def names(field: str) -> str:
    """A regex matching `field` as a whole name (so "reconnect_delay_ms" does not match "max_reconnect_delay_ms")."""
    return rf"(?<![A-Za-z_]){field}\b"


def _case_id(case):
    _field, kwargs = case
    return "-".join(f"{k}={v!r}" for k, v in kwargs.items())


@pytest.mark.parametrize(("field", "kwargs"), INVALID, ids=[_case_id(c) for c in INVALID])
def test_nonsense_is_rejected_with_value_error_naming_the_field(field, kwargs):
    with pytest.raises(ValueError, match=names(field)) as excinfo:
        LifecycleConfig(**kwargs)
    assert not isinstance(excinfo.value, TypeError)


def test_rejected_wrong_type_is_not_a_type_error():
    with pytest.raises(ValueError) as excinfo:
        LifecycleConfig(heartbeat_interval_secs="30")  # type: ignore[arg-type]
    assert not isinstance(excinfo.value, TypeError)


@pytest.mark.parametrize("field", ["heartbeat_timeout_secs", "max_reconnect_delay_ms"])
def test_int_too_large_for_a_float_is_rejected_with_value_error_naming_the_field(field):
    with pytest.raises(ValueError, match=names(field)):
        LifecycleConfig(**{field: 10**400})
