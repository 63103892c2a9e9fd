"""The API reference is complete: every public name has an entry in the BUILT site's api page.

The site is built once (`mkdocs build --strict`, as the CI does) into a temporary directory;
each public name of the modules below (its module's `__all__`, or, without one, its
non-underscore classes and functions defined there) must be the id of a mkdocstrings heading
(`<h2 id="lifecycle.redis.RedisRegistry" class="doc doc-heading">`): either under the name
it is exported as (`lifecycle.ExtensionService`) or under the module that defines it
(`lifecycle.errors.RegistryRefused`, as `::: lifecycle.errors` documents it).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = (
    "lifecycle",
    "lifecycle.redis",
    "lifecycle.shared_memory",
    "lifecycle.connectors",
    "lifecycle.contrib.prometheus",
    "lifecycle.testing",
)
BUILD_TIMEOUT = 120

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="mkdocs and mkdocstrings are not installed (pip install -e '.[docs]')",
)


def public_names(module_name: str) -> list[str]:
    """The module's `__all__`; without one, its non-underscore classes and functions defined there."""
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is not None:
        return list(names)
    return [name for name, value in vars(module).items()
            if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
            and getattr(value, "__module__", None) == module_name]


def accepted_ids(module_name: str, name: str) -> set[str]:
    """The heading ids that document `module_name.name`: as exported, or where it is defined."""
    value = getattr(importlib.import_module(module_name), name)
    ids = {f"{module_name}.{name}"}
    if inspect.ismodule(value):
        ids.add(value.__name__)
    elif inspect.isclass(value) or inspect.isfunction(value):
        ids.add(f"{value.__module__}.{value.__qualname__}")
    return ids


class _Headings(HTMLParser):
    """The ids of the page's mkdocstrings headings (class "doc-heading")."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if "doc-heading" in (attributes.get("class") or "").split() and attributes.get("id"):
            self.ids.add(str(attributes["id"]))


@pytest.fixture(scope="module")
def api_headings(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    site = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stdout}\n{built.stderr}"
    parser = _Headings()
    parser.feed((site / "api" / "index.html").read_text(encoding="utf-8"))
    return parser.ids


def test_every_public_name_has_an_entry_in_the_built_api_page(api_headings):
    missing = [f"{module}.{name}" for module in MODULES for name in public_names(module)
               if not accepted_ids(module, name) & api_headings]
    assert missing == [], (
        f"{len(missing)} public name(s) without an entry in docs/api.md's built page: {', '.join(missing)}; "
        "add a '::: module.Name' entry")


def test_the_check_sees_the_page_and_names_it_must(api_headings):
    """Guards the guard: the names are found, and a heading id is what mkdocstrings makes of an entry."""
    checked = {f"{module}.{name}" for module in MODULES for name in public_names(module)}
    assert {"lifecycle.LifecycleManager", "lifecycle.redis.RedisRegistry", "lifecycle.connectors.WebSocketConnector",
            "lifecycle.contrib.prometheus.LifecycleCollector", "lifecycle.testing.EventRecorder",
            "lifecycle.shared_memory.SharedMemoryRegistry"} <= checked
    assert len(checked) >= 50
    assert {"lifecycle.LifecycleManager", "lifecycle.errors.RegistryRefused",
            "lifecycle.LifecycleManager.start_service"} <= api_headings
    assert "lifecycle.NoSuchName" not in api_headings
