"""PIN entry in the call flow against a fake ARI: what a caller on a shared
number hears, when they are asked again, and how the call ends."""
from __future__ import annotations

import asyncio
import dataclasses
from types import SimpleNamespace

from bridge.ari import Event, EventRouter
from bridge.ari.events import Channel
from bridge.calls.deps import CallDeps
from bridge.calls.flow import masked_call
from bridge.config import Settings
from bridge.sessions.models import RouteLookup
from bridge.sessions.pin_guard import FailureCount
from bridge.sessions.pins import PinLookup
from tests.unit.test_flow import CALLER, FakeAri, FakeStore, live_session

REQUEST = ("sound:confbridge-pin",)
SHARED = RouteLookup(number_in_pool=True, sessions=(), pin_mode=True)


class PinAri(FakeAri):
    """A caller who answers each PIN request with the next scripted entry:
    digits, None (silence) or 'hangup'."""

    entries: list

    async def play(self, channel_id, media, playback_id):
        if media[-1:] == list(REQUEST) and self.entries:
            entry = self.entries.pop(0)
            if entry == "hangup":
                self.requests.append(("play", channel_id, tuple(media)))
                await self.hangup_by_caller()
                return
            for digit in entry or "":
                self.emit(type="ChannelDtmfReceived", digit=digit, channel=Channel(channel_id, "", "Ring", "", ""))
        await super().play(channel_id, media, playback_id)


class PinStore(FakeStore):
    def __init__(self, *sessions):
        super().__init__(SHARED)
        self.pinned_sessions = sessions
        self.pins_asked: list[str] = []
        self.pins = SimpleNamespace(lookup=self._pin_lookup)
        self.pin_failures = SimpleNamespace(counts=self._no_failures, record=self._count_nothing,
                                            clear_caller=self._forget)

    async def _no_failures(self, caller, number):  # nobody locked out: the guard has tests of its own
        return FailureCount(), FailureCount(), False

    async def _count_nothing(self, caller, number, limits, now):
        return FailureCount(), FailureCount()

    async def _forget(self, caller):
        pass

    async def _pin_lookup(self, virtual_number, pin):
        self.pins_asked.append(pin)
        return PinLookup(tuple(s for s in self.pinned_sessions if s.pin == pin))


async def run_pin_call(store: PinStore, entries: list) -> PinAri:
    router = EventRouter(lambda event: None)
    ari = PinAri(router)
    ari.entries = list(entries)
    deps = CallDeps(ari=ari, store=store, router=router, settings=Settings(dial_timeout=2, pin_digit_timeout=0.05))
    await asyncio.wait_for(masked_call(deps, Event(type="StasisStart", channel=CALLER, args=("+6560000001",))), 10)
    return ari


def plays(ari: FakeAri) -> list[tuple]:
    return [r[2] for r in ari.requests if r[0] == "play" and r[1] == CALLER.id]


def pinned(pin="4821"):
    return dataclasses.replace(live_session(), pin=pin)


async def test_a_silent_caller_is_asked_again_then_released_with_the_closing_prompt():
    store = PinStore(pinned())
    ari = await run_pin_call(store, [None, None, None])

    assert plays(ari) == [REQUEST, REQUEST, REQUEST, ("sound:confbridge-pin-bad", "sound:vm-goodbye")]
    assert ari.requests[0] == ("progress", CALLER.id), "PIN entry must be in early media"
    assert ("answer", CALLER.id) not in ari.requests and not any(r[0] == "create" for r in ari.requests)
    assert ari.hangups_of(CALLER.id) == [("hangup", CALLER.id, 21)]
    assert store.pins_asked == []
    assert store.final()["disposition"] == "rejected" and store.final()["reject_reason"] == "invalid_pin"
    assert store.final()["pin_attempts"] == 3


async def test_a_wrong_pin_is_said_to_be_wrong_and_the_right_one_connects():
    session = pinned()
    store = PinStore(session)
    ari = await run_pin_call(store, ["1111", "4821"])

    assert plays(ari)[:2] == [REQUEST, ("sound:confbridge-pin-bad", *REQUEST)]
    create = next(r for r in ari.requests if r[0] == "create")
    assert create[2] == f"PJSIP/{session.participant_b}@carrier-out"
    assert store.pins_asked == ["1111", "4821"]
    final = store.final()
    assert final["disposition"] == "answered" and final["session_id"] == session.id and final["direction"] == "a_to_b"


async def test_digits_cut_the_prompt_short():
    ari = await run_pin_call(PinStore(pinned()), ["4821"])

    assert ("stop_playback",) == next(r for r in ari.requests if r[0] == "stop_playback")[:1]


async def test_hash_ends_a_short_entry():
    session = pinned("482")  # a PIN from before the length setting grew
    ari = await run_pin_call(PinStore(session), ["482#"])

    assert any(r[0] == "create" for r in ari.requests)


async def test_a_caller_who_hangs_up_while_keying_leaves_a_cancelled_row():
    store = PinStore(pinned())
    ari = await run_pin_call(store, ["hangup"])

    assert store.final()["disposition"] == "cancelled" and store.final()["hangup_by"] == "caller"
    assert not any(r[0] == "create" for r in ari.requests)
