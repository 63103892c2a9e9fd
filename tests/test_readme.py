"""The README's Flask and pytest examples run as printed (so a config change cannot leave them wrong)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def block(containing: str) -> str:
    found = [b for b in BLOCKS if containing in b]
    assert len(found) == 1, f"expected one README python block containing {containing!r}, found {len(found)}"
    return found[0]


def test_the_flask_factory_example_runs():
    pytest.importorskip("flask")
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(block("lifecycle_ext = Lifecycle()"), namespace)
    app = namespace["create_app"]()  # type: ignore[operator]
    try:
        client = app.test_client()
        assert client.post("/lifecycle/services/search/heartbeat").status_code == 401
        beat = client.post("/lifecycle/services/search/heartbeat", headers={"Authorization": "Bearer s3cret"})
        assert beat.status_code == 204
    finally:
        app.extensions["lifecycle"].shutdown()


@pytest.mark.parametrize("marker", ["def test_a_silent_service_is_reconnected", "def test_the_watchdog_fires"])
def test_the_pytest_plugin_examples_pass(pytester: pytest.Pytester, marker: str):
    pytester.makepyfile(test_example=block(marker))
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_lifecycle_config_override_example_changes_the_managers_config(pytester: pytest.Pytester):
    pytester.makeconftest(block("def lifecycle_config"))
    pytester.makepyfile(test_override="""
def test_override(lifecycle_manager):
    assert lifecycle_manager.config.heartbeat_timeout_secs == 2
""")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
