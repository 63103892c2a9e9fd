"""Shared fixtures: frozen time, managers in manual mode, and an event recorder."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import freezegun
import pytest
from helpers import Recorder

from lifecycle import LifecycleConfig, LifecycleManager
from lifecycle.dispatch import SIGNALS


class Clock:
    """Moves frozen time and runs whatever became due, like the watchdog would."""

    def __init__(self, frozen: Any) -> None:
        self.frozen = frozen

    def advance(self, seconds: float, *managers: LifecycleManager) -> int:
        self.frozen.tick(seconds)
        return sum(m.run_pending() for m in managers)


@pytest.fixture(autouse=True)
def no_leaked_receivers() -> Iterator[None]:
    """Every test leaves the library's signals with the receivers it found."""
    before = {name: set(signal.receivers) for name, signal in SIGNALS.items()}
    yield
    after = {name: set(signal.receivers) for name, signal in SIGNALS.items()}
    assert after == before, "a test left receivers connected to lifecycle.signals"


@pytest.fixture
def frozen() -> Iterator[Any]:
    with freezegun.freeze_time("2026-01-01 00:00:00") as frozen_time:
        yield frozen_time


@pytest.fixture
def clock(frozen: Any) -> Clock:
    return Clock(frozen)


@pytest.fixture
def make_manager(frozen: Any) -> Iterator[Callable[..., LifecycleManager]]:
    """Build managers inside the freeze, in manual mode with a pinned RNG; shut them down after."""
    managers: list[LifecycleManager] = []

    def make(config: LifecycleConfig | None = None, **kwargs: Any) -> LifecycleManager:
        kwargs.setdefault("autostart", False)
        kwargs.setdefault("rng", random.Random(1234))
        manager = LifecycleManager(config=config, **kwargs)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.shutdown()


@pytest.fixture
def record() -> Iterator[Callable[[LifecycleManager], Recorder]]:
    """`record(manager)` connects a Recorder (strongly) to every signal for that manager."""
    connections: list[tuple[Any, Recorder, LifecycleManager]] = []

    def attach(manager: LifecycleManager) -> Recorder:
        recorder = Recorder()
        for signal in SIGNALS.values():
            signal.connect(recorder, sender=manager, weak=False)
            connections.append((signal, recorder, manager))
        return recorder

    yield attach
    for signal, recorder, _manager in connections:
        # Without a sender, blinker forgets the receiver entirely (with one it stays in .receivers).
        signal.disconnect(recorder)
