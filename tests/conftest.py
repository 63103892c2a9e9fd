"""Shared fixtures: the lifecycle.testing plugin's, plus two thin aliases and the receiver-leak check.

The plugin (frozen_lifecycle, make_lifecycle_manager, lifecycle_manager, lifecycle_events,
lifecycle_config) is loaded through its pytest11 entry point; registering it here again would fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from lifecycle import LifecycleManager
from lifecycle.dispatch import SIGNALS
from lifecycle.testing import EventRecorder, FrozenLifecycle

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def no_leaked_receivers() -> Iterator[None]:
    """Every test leaves the library's signals with the receivers it found."""
    before = {name: set(signal.receivers) for name, signal in SIGNALS.items()}
    yield
    after = {name: set(signal.receivers) for name, signal in SIGNALS.items()}
    assert after == before, "a test left receivers connected to lifecycle.signals"


@pytest.fixture
def make_manager(
    frozen_lifecycle: FrozenLifecycle, make_lifecycle_manager: Callable[..., LifecycleManager]
) -> Callable[..., LifecycleManager]:
    """The plugin's factory, always under frozen time (these tests rely on it even without advancing)."""
    return make_lifecycle_manager


@pytest.fixture
def record() -> Iterator[Callable[[LifecycleManager], EventRecorder]]:
    """`record(manager)`: a new EventRecorder per call (so one test can keep managers apart); closed after."""
    recorders: list[EventRecorder] = []

    def attach(manager: LifecycleManager) -> EventRecorder:
        recorders.append(EventRecorder().record(manager))
        return recorders[-1]

    yield attach
    for recorder in recorders:
        recorder.close()
