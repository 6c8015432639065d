"""The call flow against a fake ARI: which requests it makes, in which order.

The integration suite proves the flow on a real Asterisk; these pin down
details a real run shows only as a race (a second hangup overwriting the cause).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from bridge.ami import AmiError
from bridge.ari import AriError, AriNotFound, Event, EventRouter
from bridge.ari.events import Channel
from bridge.calls.deps import CallDeps
from bridge.calls.flow import masked_call
from bridge.config import Settings
from bridge.sessions.models import MaskingSession, RouteLookup
from bridge.store.errors import StoreUnavailable

NOTICE = "sound:masking/masking-recording-notice"
CALLER = Channel(id="caller-1", name="PJSIP/carrier-in-1", state="Ring", caller_number="+6591234567",
                 exten="+6560000001")


class FakeAri:
    """Records every request; plays back what a real Asterisk would emit."""

    def __init__(self, router: EventRouter):
        self.router = router
        self.requests: list[tuple] = []
        self.answer_dial_with: str | list[str] = "ANSWER"  # a list: one outcome per leg dialed, in order
        self.hang_up_after_bridge = True  # the first leg in the bridge talks, then hangs up
        self.press_during_notice: dict[str, str] = {}  # 'caller' or 'callee' -> the digit that party presses
        self.notice_fails = False
        self.callee_leaves_during_notice = False
        self.playing: dict[str, str] = {}  # channel -> the endless playback (ringback) on it
        self.queued: dict[str, list] = {}  # channel -> playbacks waiting behind it

    def emit(self, **fields) -> None:
        asyncio.get_running_loop().call_soon(self.router.dispatch, Event(**fields))

    async def progress(self, channel_id):
        self.requests.append(("progress", channel_id))

    async def ring(self, channel_id):
        self.requests.append(("ring", channel_id))

    async def ring_stop(self, channel_id):
        self.requests.append(("ring_stop", channel_id))

    async def answer(self, channel_id):
        self.requests.append(("answer", channel_id))

    async def play(self, channel_id, media, playback_id):
        self.requests.append(("play", channel_id, tuple(media)))
        if channel_id in self.playing:  # as ARI does: queued behind what plays on the channel
            self.queued.setdefault(channel_id, []).append((media, playback_id))
            return
        self.start_playback(channel_id, media, playback_id)

    def start_playback(self, channel_id, media, playback_id):
        if "tone:ring" in media:
            self.playing[channel_id] = playback_id  # rings until stopped
            return
        party = "caller" if channel_id == CALLER.id else "callee"
        if NOTICE in media and party == "callee" and self.callee_leaves_during_notice:
            gone = Channel(id=channel_id, name="", state="Up", caller_number="", exten="")
            self.emit(type="ChannelDestroyed", channel=gone, cause=16)
            return
        if NOTICE in media and party in self.press_during_notice:
            self.emit(type="ChannelDtmfReceived", digit=self.press_during_notice[party],
                      channel=Channel(channel_id, "", "Up", "", ""))
        failed = NOTICE in media and self.notice_fails
        self.emit(type="PlaybackFailed" if failed else "PlaybackFinished", playback_id=playback_id,
                  target_id=channel_id)

    async def stop_playback(self, playback_id):
        self.requests.append(("stop_playback", playback_id))
        for channel_id, playing in list(self.playing.items()):
            if playing == playback_id:
                del self.playing[channel_id]
                for media, queued_id in self.queued.pop(channel_id, []):
                    self.start_playback(channel_id, media, queued_id)

    async def snoop(self, channel_id, snoop_id, spy, app_args):
        self.requests.append(("snoop", channel_id))
        raise AriError(500, "POST", "snoop")  # recording itself is proven on a real Asterisk

    async def download_stored_recording(self, name, dest):
        raise AriError(500, "GET", f"/recordings/stored/{name}/file")  # proven on a real Asterisk

    async def hangup(self, channel_id, cause=None):
        if any(r[:2] == ("hangup", channel_id) for r in self.requests):
            self.requests.append(("hangup", channel_id, cause))
            raise AriNotFound(404, "DELETE", f"/channels/{channel_id}")
        self.requests.append(("hangup", channel_id, cause))
        gone = Channel(id=channel_id, name="", state="Up", caller_number="", exten="")
        self.emit(type="ChannelHangupRequest", channel=gone, cause=cause)
        self.emit(type="ChannelDestroyed", channel=gone, cause=cause or 16)

    async def create_channel(self, endpoint, channel_id, app_args, originator, variables):
        self.requests.append(("create", channel_id, endpoint, dict(variables)))
        self.emit(type="StasisStart", channel=Channel(channel_id, "", "Down", "", ""), args=("callee",))

    async def dial(self, channel_id, caller=None, timeout=None):
        self.requests.append(("dial", channel_id, caller))
        self.emit(type="Dial", peer_id=channel_id, dialstatus="RINGING")
        outcome = self.answer_dial_with if isinstance(self.answer_dial_with, str) else self.answer_dial_with.pop(0)
        self.emit(type="Dial", peer_id=channel_id, dialstatus=outcome)

    async def create_bridge(self, bridge_id, name):
        self.requests.append(("bridge", bridge_id))

    async def add_to_bridge(self, bridge_id, channel_ids):
        self.requests.append(("add", bridge_id, tuple(channel_ids)))
        if self.hang_up_after_bridge:  # the caller talks, then hangs up
            asyncio.get_running_loop().call_later(
                0.05, lambda: asyncio.ensure_future(self.hangup_by_caller(channel_ids[0])))

    async def hangup_by_caller(self, caller_id=CALLER.id):
        gone = Channel(id=caller_id, name="", state="Up", caller_number="", exten="")
        self.router.dispatch(Event(type="StasisEnd", channel=gone))
        self.router.dispatch(Event(type="ChannelDestroyed", channel=gone, cause=16))

    async def destroy_bridge(self, bridge_id):
        self.requests.append(("destroy", bridge_id))

    def hangups_of(self, channel_id):
        return [r for r in self.requests if r[:2] == ("hangup", channel_id)]


class FakeStore:
    """The store's call-path domains (`sessions.route_lookup`, `calls.insert`/`update`), in memory."""

    def __init__(self, lookup: RouteLookup | Exception):
        self.lookup = lookup
        self.writes: list[tuple] = []
        self.keys = None  # recordings are sealed on a real stack (tests/integration)
        self.sessions = SimpleNamespace(route_lookup=self._route_lookup)
        self.calls = SimpleNamespace(insert=self._insert_call, update=self._update_call)

    async def _route_lookup(self, virtual_number, caller):
        if isinstance(self.lookup, Exception):
            raise self.lookup
        return self.lookup

    async def _insert_call(self, call_id, **fields):
        self.writes.append(("insert", fields))

    async def _update_call(self, call_id, **fields):
        self.writes.append(("update", fields))

    def final(self) -> dict:
        merged = {}
        for _, fields in self.writes:
            merged.update(fields)
        return merged


def live_session(record=False, time_limit_seconds=None) -> MaskingSession:
    now = datetime.now(timezone.utc)
    return MaskingSession(uuid.uuid4(), "+6560000001", "+6591234567", "+6598765432", "active", record,
                          now - timedelta(minutes=1), now + timedelta(hours=1),
                          time_limit_seconds=time_limit_seconds)


class FakeAmi:
    """MixMonitor over AMI, as the recording tap uses it; `refuse` when AMI is down."""

    def __init__(self, ari: FakeAri, refuse: bool = False, crash: bool = False):
        self.ari, self.refuse, self.crash, self.tries = ari, refuse, crash, 0

    async def mixmonitor(self, channel_id: str, file: str = "", options: str = "") -> None:
        self.tries += 1
        if self.crash:
            raise RuntimeError("a bug, not AMI's answer")
        if self.refuse:
            raise AmiError("AMI is not connected")
        self.ari.requests.append(("mixmonitor", channel_id, file, options))

    async def stop_mixmonitor(self, channel_id: str) -> bool:
        self.ari.requests.append(("stop_mixmonitor", channel_id))
        return True


async def run_call(lookup, settings: Settings | None = None, ami: str | None = None,
                   **ari_behaviour) -> tuple[FakeAri, FakeStore]:
    router = EventRouter(lambda event: None)
    ari, store = FakeAri(router), FakeStore(lookup)
    for name, value in ari_behaviour.items():
        setattr(ari, name, value)
    deps = CallDeps(ari=ari, store=store, router=router, settings=settings or Settings(dial_timeout=2),
                    ami=FakeAmi(ari, refuse=ami == "down", crash=ami == "crash") if ami else None)
    ari.ami = deps.ami
    await asyncio.wait_for(masked_call(deps, Event(type="StasisStart", channel=CALLER, args=("+6560000001",))), 10)
    return ari, store


async def test_a_rejected_caller_is_hung_up_once_with_the_rejections_cause():
    ari, store = await run_call(RouteLookup(number_in_pool=False, sessions=()))

    assert ari.hangups_of(CALLER.id) == [("hangup", CALLER.id, 1)]
    assert ("progress", CALLER.id) in ari.requests and not any(r[0] == "create" for r in ari.requests)
    assert store.final()["disposition"] == "rejected" and store.final()["reject_reason"] == "unknown_number"


async def test_database_down_releases_the_caller_as_temporarily_unavailable():
    ari, store = await run_call(StoreUnavailable("down"))

    assert ari.hangups_of(CALLER.id) == [("hangup", CALLER.id, 34)]
    assert store.final()["reject_reason"] == "database_unavailable"


async def test_the_counterpart_is_dialed_showing_only_the_virtual_number_and_without_the_callers_identity():
    ari, store = await run_call(RouteLookup(number_in_pool=True, sessions=(live_session(),)))

    create = next(r for r in ari.requests if r[0] == "create")
    assert create[2] == "PJSIP/+6598765432@carrier-out"
    assert set(create[3].values()) == {"+6560000001"}
    assert "CONNECTEDLINE(num)" in create[3]
    dial = next(r for r in ari.requests if r[0] == "dial")
    assert dial[2] is None, "dial?caller= copies the caller's identity onto the outbound leg"
    assert ari.requests.index(("answer", CALLER.id)) > ari.requests.index(dial), "caller answered before B"
    assert store.final()["disposition"] == "answered" and store.final()["hangup_by"] == "caller"
    assert len(ari.hangups_of(CALLER.id)) <= 1


async def test_a_busy_counterpart_gives_the_caller_the_busy_prompt_and_cause():
    router_lookup = RouteLookup(number_in_pool=True, sessions=(live_session(),))
    router = EventRouter(lambda event: None)
    ari, store = FakeAri(router), FakeStore(router_lookup)
    ari.answer_dial_with = "BUSY"
    deps = CallDeps(ari=ari, store=store, router=router, settings=Settings(dial_timeout=2))

    await asyncio.wait_for(masked_call(deps, Event(type="StasisStart", channel=CALLER, args=("+6560000001",))), 10)

    assert ari.hangups_of(CALLER.id) == [("hangup", CALLER.id, 17)]
    play = next(r for r in ari.requests if r[0] == "play")
    assert play[2] == ("sound:vm-nobodyavail", "sound:please-try-call-later")
    assert store.final()["disposition"] == "busy" and store.final()["dial_status"] == "BUSY"


def recorded_call() -> RouteLookup:
    return RouteLookup(number_in_pool=True, sessions=(live_session(record=True),))


def index_of(ari: FakeAri, request: tuple) -> int:
    return next(i for i, r in enumerate(ari.requests) if r[:len(request)] == request)


async def test_both_parties_hear_the_notice_before_they_are_bridged_and_recording_starts_after():
    ari, store = await run_call(recorded_call())

    callee = next(r[1] for r in ari.requests if r[0] == "create")
    caller_notice = index_of(ari, ("play", CALLER.id, (NOTICE,)))
    assert index_of(ari, ("progress", CALLER.id)) < caller_notice < index_of(ari, ("create",)), \
        "the caller must hear the notice, in early media, before anyone is dialed"
    assert index_of(ari, ("play", CALLER.id, ("tone:ring",))) > caller_notice, "dead air while B rings"
    callee_notice = index_of(ari, ("play", callee, (NOTICE,)))
    assert index_of(ari, ("dial",)) < callee_notice < index_of(ari, ("add",)) < index_of(ari, ("snoop",))
    assert index_of(ari, ("stop_playback",)) < index_of(ari, ("answer", CALLER.id)), "ringback into the bridge"
    notices = json.loads(store.final()["notices"])
    assert [(n["party"], n["notice_id"], n["version"], n["completed"], n["opted_out"]) for n in notices] == \
        [("caller", "recording-notice", "1", True, False), ("callee", "recording-notice", "1", True, False)]
    assert store.final()["disposition"] == "answered"


async def test_with_ami_a_bridged_call_is_recorded_by_mixmonitor_on_the_caller_and_stopped_before_hangup():
    ari, store = await run_call(recorded_call(), ami="up")

    start = next(r for r in ari.requests if r[0] == "mixmonitor")
    assert start[1] == CALLER.id and re.fullmatch(r"\.\./recording/call-[-0-9a-f]{36}\.wav", start[2]), start
    assert not any(r[0] == "snoop" for r in ari.requests), "a snoop besides MixMonitor"
    assert index_of(ari, ("add",)) < index_of(ari, ("mixmonitor",)), "recorded before the bridge"
    stop = index_of(ari, ("stop_mixmonitor", CALLER.id))
    callee = next(r[1] for r in ari.requests if r[0] == "create")
    assert stop < index_of(ari, ("hangup", callee)), "the files must be closed before a leg is hung up"
    assert store.final()["recorded"] is True and store.final()["disposition"] == "answered"


async def test_a_two_channel_recording_by_mixmonitor_writes_what_the_caller_says_and_hears():
    session = replace(live_session(record=True), recording_channels=2)
    ari, store = await run_call(RouteLookup(number_in_pool=True, sessions=(session,)), ami="up")

    start = next(r for r in ari.requests if r[0] == "mixmonitor")
    assert start[2] == "" and re.fullmatch(r"r\(\.\./recording/\S+-caller\.wav\)t\(\.\./recording/\S+-callee\.wav\)",
                                          start[3]), start


async def test_with_ami_down_the_call_is_recorded_by_a_snoop_instead():
    ari, store = await run_call(recorded_call(), ami="down")

    assert any(r[0] == "snoop" for r in ari.requests), "not recorded at all"
    assert store.final()["disposition"] == "answered"
    # The answer is told before the snoops' turns, and AMI is not asked twice.
    answered = next(fields for _, fields in store.writes if "answered_at" in fields)
    assert "recorded" not in answered
    assert ari.ami.tries == 1


async def test_with_mixmonitor_the_answer_and_the_recordings_start_are_one_write():
    ari, store = await run_call(recorded_call(), ami="up")

    answered = next(fields for _, fields in store.writes if "answered_at" in fields)
    assert answered["recorded"] is True and answered["dial_status"] == "ANSWER", answered


async def test_a_recording_start_that_fails_unexpectedly_still_leaves_the_answer_written():
    router = EventRouter(lambda event: None)
    ari, store = FakeAri(router), FakeStore(recorded_call())
    deps = CallDeps(ari=ari, store=store, router=router, settings=Settings(dial_timeout=2),
                    ami=FakeAmi(ari, crash=True))
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(masked_call(deps, Event(type="StasisStart", channel=CALLER,
                                                       args=("+6560000001",))), 10)
    answered = next(fields for _, fields in store.writes if "answered_at" in fields)
    assert answered["dial_status"] == "ANSWER" and "recorded" not in answered
    assert ari.hangups_of(CALLER.id), "the call's legs are released all the same"


async def test_the_caller_pressing_the_opt_out_digit_turns_recording_off_and_b_hears_no_notice():
    ari, store = await run_call(recorded_call(), press_during_notice={"caller": "9"})

    callee = next(r[1] for r in ari.requests if r[0] == "create")
    assert not any(r[0] == "snoop" for r in ari.requests), "recorded although the caller opted out"
    assert ("play", callee, (NOTICE,)) not in ari.requests
    assert store.final()["recording_opt_out"] == "caller" and not store.final().get("recorded")
    assert json.loads(store.final()["notices"])[0]["opted_out"] is True
    assert store.final()["disposition"] == "answered", "opting out of recording is not hanging up"


async def test_the_counterpart_pressing_the_opt_out_digit_turns_recording_off():
    ari, store = await run_call(recorded_call(), press_during_notice={"callee": "9"})

    assert not any(r[0] == "snoop" for r in ari.requests)
    assert store.final()["recording_opt_out"] == "callee"


async def test_a_digit_other_than_the_opt_out_digit_changes_nothing():
    ari, store = await run_call(recorded_call(), press_during_notice={"caller": "5"})

    assert store.final().get("recording_opt_out") is None


async def test_a_notice_that_cannot_be_played_means_no_recording():
    ari, store = await run_call(recorded_call(), notice_fails=True)

    assert not any(r[0] == "snoop" for r in ari.requests), "recorded without a notice having been heard"
    assert store.final()["disposition"] == "answered" and store.final().get("recording_opt_out") is None


async def test_an_unrecorded_session_plays_no_notice_and_rings_the_classic_way():
    ari, _ = await run_call(RouteLookup(number_in_pool=True, sessions=(live_session(record=False),)))

    assert not any(r[0] == "play" for r in ari.requests)
    assert ("ring", CALLER.id) in ari.requests


async def test_a_time_limit_beeps_both_legs_then_releases_both_with_normal_clearing():
    router = EventRouter(lambda event: None)
    ari = FakeAri(router)
    ari.hang_up_after_bridge = False  # nobody hangs up: the limit (1 s, warning at 0.5 s) ends the call
    store = FakeStore(RouteLookup(number_in_pool=True, sessions=(live_session(time_limit_seconds=1),)))
    deps = CallDeps(ari=ari, store=store, router=router, settings=Settings(dial_timeout=2))

    await asyncio.wait_for(masked_call(deps, Event(type="StasisStart", channel=CALLER, args=("+6560000001",))), 10)

    callee = next(r[1] for r in ari.requests if r[0] == "create")
    beeps = [r for r in ari.requests if r[0] == "play"]
    assert {r[1] for r in beeps} == {CALLER.id, callee} and all(r[2] == ("sound:beep",) for r in beeps)
    assert ari.hangups_of(CALLER.id) == [("hangup", CALLER.id, 16)] and ari.hangups_of(callee)[0][2] == 16
    assert ari.requests.index(beeps[-1]) < ari.requests.index(ari.hangups_of(CALLER.id)[0])
    assert store.final()["disposition"] == "time_limit" and store.final()["hangup_by"] == "system"


@pytest.mark.parametrize("dialstatus, prompt, cause", [
    ("BUSY", ("sound:vm-nobodyavail", "sound:please-try-call-later"), 17),
    ("NOANSWER", ("sound:number-not-answering", "sound:please-try-call-later"), 19),
    ("CHANUNAVAIL", ("sound:all-circuits-busy-now", "sound:please-try-call-later"), 34),
])
@pytest.mark.parametrize("kind", ["recorded", "wait_audio"])
async def test_the_ringback_or_wait_audio_is_stopped_before_the_ending_prompt_which_plays_at_once(
        kind, dialstatus, prompt, cause):
    session = live_session(record=kind == "recorded")
    if kind == "wait_audio":
        session = dataclasses.replace(session, wait_audio_id=uuid.uuid4())

    ari, store = await run_call(RouteLookup(number_in_pool=True, sessions=(session,)), answer_dial_with=dialstatus)

    ringback = next(i for i, r in enumerate(ari.requests) if r[0] == "play" and "tone:ring" in r[2])
    ending = index_of(ari, ("play", CALLER.id, prompt))
    stopped = next(i for i, r in enumerate(ari.requests) if r[0] == "stop_playback")
    assert ringback < stopped < ending, "the prompt was queued behind the ringback"
    assert ari.hangups_of(CALLER.id) == [("hangup", CALLER.id, cause)]
    assert not ari.playing, "something still plays to the caller"


async def test_a_counterpart_who_hangs_up_during_its_notice_gives_the_caller_the_prompt_at_once():
    ari, store = await run_call(recorded_call(), callee_leaves_during_notice=True)

    ringback = next(i for i, r in enumerate(ari.requests) if r[0] == "play" and "tone:ring" in r[2])
    prompt = index_of(ari, ("play", CALLER.id, ("sound:sorry", "sound:please-try-call-later")))
    assert ringback < next(i for i, r in enumerate(ari.requests) if r[0] == "stop_playback") < prompt
    assert not ari.playing and ("answer", CALLER.id) not in ari.requests
    assert store.final()["disposition"] == "failed" and store.final()["hangup_by"] == "callee"


def test_a_notice_whose_sound_failed_to_play_was_not_heard():
    from bridge.ari import Event
    from bridge.calls.notice import played_to_end

    finished = Event("PlaybackFinished", playback_id="p", playback_state="done")
    failed = Event("PlaybackFinished", playback_id="p", playback_state="failed")
    assert played_to_end(finished) and not played_to_end(failed)
    assert not played_to_end(Event("PlaybackFailed", playback_id="p")) and not played_to_end(None)
