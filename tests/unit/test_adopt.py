"""What a process adopting a call takes as proof that its dead predecessor
had bridged it, when the row does not say so (`adopt.bridged_at`)."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime

import pytest

from bridge.ari.events import EventRouter
from bridge.calls import ids
from bridge.calls.adopt import bridged_at
from bridge.calls.deps import CallState
from bridge.calls.events import CallEvents
from bridge.calls.recording import ASTERISK_TIME

CALL = uuid.UUID("6f0c1a52-0000-4000-8000-000000000001")
CALLER, CALLEE = "caller-chan", ids.callee_channel(CALL)
MADE = "2026-12-07T17:48:19.200+0000"


class StubAri:
    def __init__(self, bridge: dict | None, recordings: set[str] = frozenset(), up: set[str] | None = None):
        self._bridge, self._recordings = bridge, recordings
        self._up = {CALLER, CALLEE} if up is None else up

    async def channel_exists(self, channel_id: str) -> bool:
        return channel_id in self._up

    async def bridge(self, bridge_id: str) -> dict | None:
        assert bridge_id == ids.bridge(CALL)
        return self._bridge

    async def stored_recording_exists(self, name: str) -> bool:
        return name in self._recordings


def answer(ari: StubAri, gone: tuple[str, ...] = (), events: CallEvents | None = None) -> datetime | None:
    events = events or CallEvents(EventRouter(lambda event: None))
    for leg in gone:
        events.gone[leg] = None
    call = CallState(id=CALL, caller_id=CALLER, callee_id=CALLEE)
    return asyncio.run(bridged_at(ari, call, events))


def test_both_legs_in_the_bridge_are_an_answer_at_its_creation():
    assert answer(StubAri({"channels": [CALLER, CALLEE], "creationtime": MADE})) == datetime.strptime(
        MADE, ASTERISK_TIME)


@pytest.mark.parametrize("gone", [(CALLER,), (CALLEE,)])
def test_the_leg_left_still_in_the_bridge_is_an_answer(gone):
    left = CALLEE if gone == (CALLER,) else CALLER
    assert answer(StubAri({"channels": [left], "creationtime": MADE}), gone) == datetime.strptime(
        MADE, ASTERISK_TIME)


def test_a_bridge_made_but_not_joined_is_no_answer():
    assert answer(StubAri({"channels": [], "creationtime": MADE})) is None
    assert answer(StubAri({"channels": [], "creationtime": MADE}), (CALLER,)) is None


def test_no_bridge_is_no_answer():
    assert answer(StubAri(None)) is None
    assert answer(StubAri(None, {ids.recording(CALL)}), (CALLER, CALLEE)) is None


@pytest.mark.parametrize("name", [ids.recording(CALL), ids.recording_part(CALL, "caller")])
def test_with_no_leg_left_only_the_recording_proves_the_legs_were_joined(name):
    empty = {"channels": [], "creationtime": MADE}
    both = (CALLER, CALLEE)
    assert answer(StubAri(empty, up=set()), both) is None
    assert answer(StubAri(empty, {name}, up=set()), both) == datetime.strptime(MADE, ASTERISK_TIME)


def test_a_leg_gone_since_the_list_of_channels_is_noted_gone_and_the_other_decides():
    events = CallEvents(EventRouter(lambda event: None))
    made = answer(StubAri({"channels": [CALLEE], "creationtime": MADE}, up={CALLEE}), events=events)
    assert made == datetime.strptime(MADE, ASTERISK_TIME)
    assert events.is_gone(CALLER) and not events.is_gone(CALLEE)


def test_a_leg_up_but_not_in_the_bridge_was_never_joined():
    assert answer(StubAri({"channels": [CALLEE], "creationtime": MADE})) is None
