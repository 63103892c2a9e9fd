"""lifecycle uses only blinker's documented API, within the version range it declares.

blinker documents `connect`, `disconnect`, `send`, `receivers_for`, `has_receivers_for`,
`muted`, the `receiver_connected`/`receiver_disconnected` signals and the truth value of
`Signal.receivers` ("the structure and data is not part of the public API, but checking its
boolean value is"). Anything else may change in any release.
"""

from __future__ import annotations

import ast
import gc
import re
import tomllib
import weakref
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

import lifecycle
from lifecycle import ExtensionService, LifecycleManager, signals

ROOT = Path(__file__).resolve().parent.parent
PRIVATE_SIGNAL_ATTRIBUTES = {"_by_receiver", "_by_sender", "_weak_senders", "_disconnect", "_clear_state",
                             "_cleanup_bookkeeping", "_make_cleanup_receiver", "_make_cleanup_sender"}


def _uses_of_blinker_internals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("blinker._"):
            found.append(f"{where} imports {node.module}")
        elif isinstance(node, ast.Import) and any(a.name.startswith("blinker._") for a in node.names):
            found.append(f"{where} imports a private blinker module")
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE_SIGNAL_ATTRIBUTES:
            found.append(f"{where} reads .{node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr == "receivers" and not _truth_test(node, parents):
            found.append(f"{where} reads .receivers beyond its truth value")
    return found


def _truth_test(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    parent = parents.get(node)
    if isinstance(parent, ast.UnaryOp) and isinstance(parent.op, ast.Not):
        return True
    if isinstance(parent, ast.BoolOp):
        return _truth_test(parent, parents) or isinstance(parents.get(parent), (ast.If, ast.While, ast.IfExp))
    if isinstance(parent, (ast.If, ast.While, ast.IfExp)) and parent.test is node:
        return True
    return isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id == "bool"


def test_the_package_uses_no_blinker_internals():
    found = [use for path in sorted((ROOT / "lifecycle").rglob("*.py")) for use in _uses_of_blinker_internals(path)]
    assert found == []


def test_the_scan_does_find_internals(tmp_path):
    """The scan itself can fail: each kind of private use is reported."""
    sample = ROOT / "lifecycle" / "_sample_for_scan.py"
    sample.write_text(
        "from blinker._utilities import make_id\n"
        "def f(signal):\n"
        "    ids = signal._by_receiver\n"
        "    if signal.receivers:\n"
        "        return list(signal.receivers)\n"
    )
    try:
        found = _uses_of_blinker_internals(sample)
    finally:
        sample.unlink()
    assert [re.sub(r"^\S+:(\d+) ", r"\1 ", use) for use in found] == [
        "1 imports blinker._utilities", "3 reads ._by_receiver", "5 reads .receivers beyond its truth value"]


def test_the_declared_blinker_range_is_bounded_and_holds_the_tested_version():
    """The range says what the suite runs against: its lower end is tested, and the next major is excluded."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (spec,) = [d for d in dependencies if d.startswith("blinker")]
    bounds = dict(re.findall(r"(>=|<)\s*([\d.]+)", spec))
    assert set(bounds) == {">=", "<"}, f"{spec!r} must have a lower and an upper bound"
    installed = tuple(int(part) for part in version("blinker").split(".")[:2])
    lower = tuple(int(part) for part in bounds[">="].split(".")[:2])
    upper = tuple(int(part) for part in bounds["<"].split(".")[:2])
    assert lower <= installed < upper
    assert installed[0] == lower[0] and upper == (lower[0] + 1, 0)[: len(upper)]


# -- behaviour that rests on the public API only ---------------------------------------------


@pytest.fixture
def manager(make_manager):
    return make_manager()


def test_blinkers_own_send_respects_a_connections_sender(manager):
    """A third party sending a lifecycle signal itself reaches only the receivers scoped to that sender."""
    got: list[Any] = []
    other = object()
    with lifecycle.connect(lambda sender, **kw: got.append(sender), "service_error", sender=manager):
        signals.service_error.send(other, service_id="x", error="e")
        signals.service_error.send(manager, service_id="x", error="e")
        with signals.service_error.muted():
            signals.service_error.send(manager, service_id="x", error="e")
    assert got == [manager]


def test_a_scoped_connection_keeps_neither_its_manager_alive_nor_hears_a_new_one(make_manager):
    """The connection holds its sender weakly: a collected manager is gone, and one reusing its id is not heard."""
    first = LifecycleManager(autostart=False)
    got: list[Any] = []
    connection = lifecycle.connect(lambda sender, **kw: got.append(sender), "service_started", sender=first)
    try:
        gone = weakref.ref(first)
        connection.sender = None  # only the signal's reference remains
        del first
        gc.collect()
        assert gone() is None, "a connection kept its manager alive"
        second = make_manager()
        second.start_service(ExtensionService("a", "1"))
        assert got == []
    finally:
        connection.disconnect()


def test_a_receiver_connected_twice_for_one_manager_hears_once_per_connection(manager):
    got: list[str] = []

    def receiver(sender: object, **kw: Any) -> None:
        got.append(kw["service_id"])

    with lifecycle.connect(receiver, "service_started", sender=manager):
        with lifecycle.connect(receiver, "service_started", sender=manager):
            manager.start_service(ExtensionService("a", "1", id="a"))
        manager.start_service(ExtensionService("b", "1", id="b"))
    manager.start_service(ExtensionService("c", "1", id="c"))
    assert got == ["a", "a", "b"]

