"""The supervision engine: what happens to a service, written once over the two kinds of store.

`build_engine` picks the engine for a registry once, at construction: `LocalEngine` for a
registry that lives in this process, `FleetEngine` for one shared by a fleet of processes.
Both use the same policies (`policy`), detector (`detector`) and attempt runner (`runner`).
"""

from __future__ import annotations

from .base import Engine, Sink
from .build import build_engine

__all__ = ["Engine", "Sink", "build_engine"]
