"""Which engine a registry gets: chosen once, when the manager is built."""

from __future__ import annotations

import random

from ..config import LifecycleConfig
from ..connector import Hooks
from ..fleet import is_shared
from ..registry import Registry
from ..watchdog import Watchdog
from .base import Engine, Sink
from .fleet import FleetEngine
from .local import LocalEngine
from .runner import Executor


def build_engine(registry: Registry, config: LifecycleConfig, hooks: Hooks | None, watchdog: Watchdog,
                 executor: Executor, sink: Sink, rng: random.Random, host: str | None = None) -> Engine:
    """The fleet engine for a registry shared by a fleet of processes; the in-memory engine otherwise."""
    if is_shared(registry):
        return FleetEngine(registry, config, hooks, watchdog, executor, sink, rng, host)
    return LocalEngine(registry, config, watchdog, executor, sink, rng)
