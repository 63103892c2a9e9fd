"""The scripts' texts: what each declares and is sent, checked without a server."""

from __future__ import annotations

import re

import pytest

from lifecycle import _redis_scripts as scripts


@pytest.mark.parametrize("name", sorted(scripts.SHORT))
def test_a_short_script_reads_no_head_item_it_is_not_sent(name: str) -> None:
    text = re.sub(r"--[^\n]*", "", scripts.source(name))
    assert not re.search(r"ARGV\[(?:[5-9]|10)\]", text)  # its own arguments start at ARGV[4]
    assert "ARGV[4]" in text or "for i = 4, #ARGV" in text
    assert not re.search(r"\b(MAX_RESTARTS|WINDOW|PHI|PHI_SCORE)\b", text)


def test_a_short_script_whose_prelude_reads_the_long_head_is_refused() -> None:
    body = "return {restart_times('x')}"  # a prelude function that reads MAX_RESTARTS and WINDOW
    assert "restart_times" in scripts.prelude_for(body)
    with pytest.raises(ValueError, match="SHORT"):
        scripts.prelude_for(body, short=True)


def test_every_other_script_gets_the_whole_head() -> None:
    for name in ("HEARTBEAT_PHI", "BEAT_MANY_PHI", "REGISTER", "SWEEP"):
        assert "local MAX_RESTARTS = tonumber(ARGV[4])" in scripts.source(name)
