"""examples/supervise.py runs as documented: three real children, crashes and hangs handled, none left."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "supervise.py"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the example checks /proc")


def test_the_supervise_example_keeps_its_three_extensions_alive():
    done = subprocess.run([sys.executable, str(EXAMPLE), "--seconds", "5", "--fast"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()

    def of(name: str, signal: str) -> list[str]:
        return [line for line in lines if re.search(rf"\s{name}\s+{signal}\b", line)]

    assert of("crashy", "service_error") and all("exited with code 1" in line for line in of("crashy", "service_error"))
    assert of("crashy", "reconnected")
    assert of("hang", "heartbeat_timeout") and of("hang", "reconnected")
    assert of("steady", "heartbeat_timeout") == [] and of("steady", "service_error") == []
    assert re.search(r"heartbeats: .*steady=\d+", done.stdout)
    assert "children left after shutdown: 0" in lines
