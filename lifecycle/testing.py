"""pytest plugin (entry point ``pytest11``: ``lifecycle``): fixtures for testing code built on lifecycle.

Fixtures: ``lifecycle_config`` (override it in a conftest), ``make_lifecycle_manager`` (manual-mode
managers with a seeded RNG, shut down after the test), ``lifecycle_manager``, ``frozen_lifecycle``
(freezegun time that runs due timers when advanced) and ``lifecycle_events`` (an `EventRecorder`).
pytest loads this module into every run, so it imports nothing beyond lifecycle and pytest;
freezegun is imported only when ``frozen_lifecycle`` is used. Disable with ``-p no:lifecycle``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from .config import LifecycleConfig
from .events import LifecycleEvent
from .manager import LifecycleManager
from .receivers import Connection, connect

if TYPE_CHECKING:
    from freezegun.api import FrozenDateTimeFactory, StepTickTimeFactory, TickingDateTimeFactory

    Freezer = FrozenDateTimeFactory | StepTickTimeFactory | TickingDateTimeFactory

__all__ = [
    "FROZEN_START",
    "SEED",
    "EventRecorder",
    "FrozenLifecycle",
    "frozen_lifecycle",
    "lifecycle_config",
    "lifecycle_events",
    "lifecycle_manager",
    "make_lifecycle_manager",
]

SEED = 1234  # every manager the factory builds gets random.Random(SEED): reproducible jitter
FROZEN_START = "2026-01-01 00:00:00"  # where `frozen_lifecycle` freezes time
WAIT = 5.0  # default bound for `EventRecorder.wait_for`: generous for what takes well under a second

_E = TypeVar("_E", bound=LifecycleEvent)


class FrozenLifecycle:
    """Frozen time whose `advance` runs the timers that fell due, as the watchdog thread would."""

    def __init__(self, freezer: Freezer, managers: list[LifecycleManager] | None = None) -> None:
        """Wrap what ``with freezegun.freeze_time(...) as freezer`` gave; `advance` runs `managers` by default."""
        self.freezer = freezer
        self.managers: list[LifecycleManager] = managers if managers is not None else []

    def advance(self, seconds: float, *managers: LifecycleManager) -> int:
        """Tick frozen time, then `run_pending()` on `managers` (default: all known); return how many timers ran."""
        self.freezer.tick(seconds)
        return sum(manager.run_pending() for manager in managers or self.managers)


class EventRecorder:
    """A blinker receiver that records lifecycle events in order; thread-safe, so tests can wait on it."""

    def __init__(self) -> None:
        """Start empty and connected to nothing; `record(manager)` attaches it."""
        # Plain lists, for reading once the threads are done; names(), of() and wait_for() take the lock.
        self.events: list[LifecycleEvent] = []
        self.kwargs: list[dict[str, Any]] = []  # what each signal was sent with, ``event`` included
        self._cond = threading.Condition()
        self._connections: list[Connection] = []

    def __call__(self, sender: object, **kwargs: Any) -> None:
        """Receive one signal: keep its event and keyword arguments, wake any `wait_for`."""
        with self._cond:
            self.events.append(kwargs["event"])
            self.kwargs.append(kwargs)
            self._cond.notify_all()

    def record(self, manager: LifecycleManager) -> EventRecorder:
        """Connect (strongly) to every lifecycle signal for `manager` only; returns self, so calls chain."""
        self._connections.append(connect(self, sender=manager))
        return self

    def close(self) -> None:
        """Disconnect from every signal; blinker then forgets this receiver entirely."""
        for connection in self._connections:
            connection.disconnect()
        self._connections.clear()

    def names(self, service_id: str | None = None) -> list[str]:
        """The signal names recorded so far, optionally for one service only."""
        with self._cond:
            return [e.signal_name for e in self.events if service_id is None or e.service_id == service_id]

    def of(self, cls: type[_E]) -> list[_E]:
        """The recorded events of exactly this class."""
        with self._cond:
            return [e for e in self.events if isinstance(e, cls) and type(e) is cls]

    def for_service(self, service_id: str) -> list[LifecycleEvent]:
        """The recorded events of one service."""
        with self._cond:
            return [e for e in self.events if e.service_id == service_id]

    def clear(self) -> None:
        """Forget everything recorded so far (connections stay)."""
        with self._cond:
            self.events.clear()
            self.kwargs.clear()

    def wait_for(self, predicate: Callable[[list[LifecycleEvent]], object], timeout: float = WAIT) -> bool:
        """Block until `predicate(events)` is true (for real-thread tests); False if `timeout` passed first."""
        with self._cond:
            return bool(self._cond.wait_for(lambda: predicate(self.events), timeout))


@pytest.fixture
def lifecycle_config() -> LifecycleConfig:
    """The config the other fixtures build managers with; override this fixture in a conftest to change it."""
    return LifecycleConfig()


@pytest.fixture
def _lifecycle_managers() -> list[LifecycleManager]:
    """Every manager `make_lifecycle_manager` built in this test (shared with `frozen_lifecycle`)."""
    return []


@pytest.fixture
def frozen_lifecycle(_lifecycle_managers: list[LifecycleManager]) -> Iterator[FrozenLifecycle]:
    """Freeze time at `FROZEN_START`; `advance(seconds)` ticks it and runs the timers that fell due."""
    try:
        import freezegun
    except ImportError:
        pytest.fail(
            "the frozen_lifecycle fixture needs freezegun: pip install 'service-lifecycle[testing]'", pytrace=False
        )
    with freezegun.freeze_time(FROZEN_START) as freezer:
        yield FrozenLifecycle(freezer, _lifecycle_managers)


@pytest.fixture
def make_lifecycle_manager(
    request: pytest.FixtureRequest, lifecycle_config: LifecycleConfig, _lifecycle_managers: list[LifecycleManager]
) -> Iterator[Callable[..., LifecycleManager]]:
    """`make(config=None, **kwargs)`: a manual-mode manager with a seeded RNG; all are shut down after the test."""
    if "frozen_lifecycle" in request.fixturenames:
        # Deadlines read time.monotonic(): a manager built before the freeze would see time jump back.
        request.getfixturevalue("frozen_lifecycle")

    def make(config: LifecycleConfig | None = None, **kwargs: Any) -> LifecycleManager:
        kwargs.setdefault("autostart", False)
        kwargs.setdefault("rng", random.Random(SEED))
        manager = LifecycleManager(config=lifecycle_config if config is None else config, **kwargs)
        _lifecycle_managers.append(manager)
        return manager

    yield make
    for manager in _lifecycle_managers:
        manager.shutdown()


@pytest.fixture
def lifecycle_manager(make_lifecycle_manager: Callable[..., LifecycleManager]) -> LifecycleManager:
    """One manager from `make_lifecycle_manager`: manual mode, `lifecycle_config`, shut down after the test."""
    return make_lifecycle_manager()


@pytest.fixture
def lifecycle_events(request: pytest.FixtureRequest) -> Iterator[EventRecorder]:
    """An `EventRecorder`, recording `lifecycle_manager` if the test uses it; disconnected after the test."""
    recorder = EventRecorder()
    try:
        if "lifecycle_manager" in request.fixturenames:
            recorder.record(request.getfixturevalue("lifecycle_manager"))
        yield recorder
    finally:
        recorder.close()
