"""Whether `finish` collects a fallback call's recording (bridge.agi.recorded)."""
from __future__ import annotations

from bridge.agi import recorded


def test_the_row_decides_when_it_can_be_read():
    assert recorded({"recorded": True}, "") is True
    assert recorded({"recorded": False}, "1") is False  # an opt-out the row knows of wins


def test_with_the_database_down_the_caller_channel_decides():
    assert recorded(None, "1") is True  # both notices heard out, MixMonitor started
    assert recorded(None, "") is False  # no notice finished, or an opt-out: nothing recorded
    assert recorded(None, "0") is False
