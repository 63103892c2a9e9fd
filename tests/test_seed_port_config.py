"""Ports of the Rust seed's `test_lifecycle_config` and `test_calculate_reconnect_delay`."""

from __future__ import annotations

import random

import pytest

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, RegistryService


def test_manager_keeps_custom_heartbeat_interval_timeout_and_attempts(frozen_lifecycle):
    # test_lifecycle_config: a config with interval 10, timeout 30, 3 attempts (rest default)
    config = LifecycleConfig(heartbeat_interval_secs=10, heartbeat_timeout_secs=30, max_reconnect_attempts=3)
    manager = LifecycleManager(RegistryService(), config, autostart=False)
    try:
        assert manager.config.heartbeat_interval_secs == 10
        assert manager.config.heartbeat_timeout_secs == 30
        assert manager.config.max_reconnect_attempts == 3
        # the fields left out keep their defaults
        assert manager.config.reconnect_delay_ms == 1000
        assert manager.config.max_reconnect_delay_ms == 30000
        assert manager.config.reconnect_backoff_multiplier == 2.0
        assert manager.config.auto_reconnect is True
    finally:
        manager.shutdown()


def test_manager_applies_custom_heartbeat_timeout_to_service_health(frozen_lifecycle):
    config = LifecycleConfig(heartbeat_interval_secs=10, heartbeat_timeout_secs=30, max_reconnect_attempts=3)
    manager = LifecycleManager(RegistryService(), config, autostart=False)
    try:
        sid = manager.start_service(ExtensionService("test", "1.0.0"))
        frozen_lifecycle.freezer.tick(29.999)
        assert manager.is_healthy(sid) is True
        frozen_lifecycle.freezer.tick(0.001)
        assert manager.is_healthy(sid) is False
    finally:
        manager.shutdown()


@pytest.mark.parametrize("seed", range(50))
def test_reconnect_delay_increases_over_the_first_three_attempts(seed):
    # test_calculate_reconnect_delay: default config (10% jitter), delays 0 < 1 < 2 for any RNG draw
    manager = LifecycleManager(RegistryService(), autostart=False, rng=random.Random(seed))
    try:
        delay0 = manager.calculate_reconnect_delay(0)
        delay1 = manager.calculate_reconnect_delay(1)
        delay2 = manager.calculate_reconnect_delay(2)
        assert delay1 > delay0
        assert delay2 > delay1
    finally:
        manager.shutdown()
