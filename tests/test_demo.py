"""The newcomer demo: every scenario plays out, the table is right, the command line works."""

# The demo runs in real time. With the options below each story is over at least about a second
# before the end of the run (gone gives up near +2.2 s, sleepy is back near +2.7 s, the run ends at
# +4 s), so a loaded machine makes it late, not wrong.

from __future__ import annotations

import re
import subprocess
import sys
import threading

import pytest
from helpers import receiver_ids

from lifecycle import demo

pytestmark = pytest.mark.threaded

FAST = ["--duration", "4", "--timeout", "0.6", "--interval", "0.15", "--seed", "1"]

EVENT_LINE = re.compile(r"^\+\s*\d+\.\d{3}s\s+(?P<name>\S+)\s+(?P<what>\S+)\s*(?P<details>.*)$")


def _events(out: str) -> list[tuple[str, str, str]]:
    """(service name, signal or "(simulation)", details) of every timestamped line."""
    found = []
    for line in out.splitlines():
        match = EVENT_LINE.match(line)
        if match:
            found.append((match["name"], match["what"], match["details"]))
    return found


def _table(out: str) -> dict[str, list[str]]:
    """The status table's rows by service name."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:3] == ["service", "role", "status"])
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells
    return rows


def _signals_of(events: list[tuple[str, str, str]], name: str) -> list[str]:
    return [what for who, what, _ in events if who == name]


def test_demo_plays_every_scenario_then_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    receivers_before = receiver_ids(demo.SIGNALS)
    code = demo.main(FAST)
    out = capsys.readouterr().out
    assert code == 0, out
    assert receiver_ids(demo.SIGNALS) == receivers_before
    _check_scenarios(_events(out))
    _check_table(_table(out))
    _check_shutdown(out)


def _check_scenarios(events: list[tuple[str, str, str]]) -> None:
    flaky = _signals_of(events, "flaky")
    assert ("flaky", "service_error", "error: connection reset") in events
    assert "reconnected" in flaky
    assert flaky.index("service_error") < flaky.index("reconnected")
    refused = [d for who, what, d in events if who == "flaky" and what == "(simulation)" and "refused" in d]
    assert len(refused) == 2

    sleepy = _signals_of(events, "sleepy")
    assert "heartbeat_timeout" in sleepy
    assert "reconnected" in sleepy
    assert sleepy.index("heartbeat_timeout") < sleepy.index("reconnected")

    gone = _signals_of(events, "gone")
    assert "heartbeat_timeout" in gone
    assert sum(what == "reconnecting" for what in gone) == 4
    assert ("gone", "status_changed", "reconnecting -> error") in events
    assert ("gone", "reconnect_failed", "gave up after 4 attempts") in events
    assert "reconnected" not in gone

    for name in ("steady-1", "steady-2"):
        steady = _signals_of(events, name)
        assert steady[:2] == ["service_started", "status_changed"]
        assert "heartbeat_timeout" not in steady
        assert "reconnecting" not in steady
    assert not any(what == "heartbeat_received" for _, what, _ in events)  # counted, not printed


def _check_table(table: dict[str, list[str]]) -> None:
    statuses = {name: cells[2] for name, cells in table.items()}
    assert statuses == {"steady-1": "running", "steady-2": "running", "flaky": "running",
                        "sleepy": "running", "gone": "error"}
    assert int(table["steady-1"][-3]) > 0  # heartbeats seen


def _check_shutdown(out: str) -> None:
    assert sum(what == "service_stopped" for _, what, _ in _events(out)) == 5
    assert out.index("status at") < out.index("service_stopped")
    assert "shutdown complete: stopped 5 of 5 services" in out
    assert "gone (was error)" in out
    assert out.rstrip().endswith("bye")
    assert not any(t.name == "lifecycle-demo-heartbeats" and t.is_alive() for t in threading.enumerate())


def test_bad_options_are_argparse_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--services", "3"], ["--timeout", "0"], ["--timeout", "-1"], ["--duration", "nan"],
                 ["--interval", "1.5", "--timeout", "2"]):
        with pytest.raises(SystemExit) as exc_info:
            demo.main(argv)
        assert exc_info.value.code == 2
        assert "error:" in capsys.readouterr().err


def test_module_help_mentions_the_demo() -> None:
    result = subprocess.run([sys.executable, "-m", "lifecycle", "--help"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert "demo" in result.stdout


def test_demo_help_lists_the_options() -> None:
    result = subprocess.run([sys.executable, "-m", "lifecycle", "demo", "--help"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    for option in ("--duration", "--services", "--timeout", "--interval", "--seed", "--verbose", "--log-level"):
        assert option in result.stdout
